// "Deflicker/Deblotch": the OpenFX image effect. A thin shim: parameters become the engine's
// params map, the frames t−c…t+7+c (c = 12r + 2, the engine's context; t+1…t+7 are solved
// ahead) become frame views, and the engine's answer becomes the output image. Every failure
// becomes a message through the host's message suite and an OFX error status; nothing thrown
// ever crosses into the host.
#include "engine_link.hpp"
#include "ofx_abi.h"
#include "pixels.hpp"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#ifdef DFDB_STATIC_LIBSTDCXX
namespace __gnu_cxx {
void __freeres();  // libstdc++: frees the runtime's emergency exception pool
}
#endif

namespace dfdb {
namespace plugin {
namespace {

constexpr const char *kPluginId = "org.dfdb.DeflickerDeblotch";
constexpr const char *kMessageId = "org.dfdb.DeflickerDeblotch.engine";

OfxHost *g_host = nullptr;
const OfxPropertySuiteV1 *g_props = nullptr;
const OfxParameterSuiteV1 *g_params = nullptr;
const OfxImageEffectSuiteV1 *g_effects = nullptr;
const OfxMessageSuiteV1 *g_messages = nullptr;

EnginePool &pool() {
  static EnginePool instance;
  return instance;
}

// ------------------------------------------------------------------ parameters

const char *const kStrength = "strength";
const char *const kQuality = "quality";
const char *const kWindow = "window";
const char *const kFlickerMode = "flickerMode";
const char *const kGrid = "flickerGrid";
const char *const kSensitivity = "sensitivity";
const char *const kMotion = "motion";
const char *const kOutput = "output";
const char *const kAddress = "engineAddress";

const char *const kQualityPresets[] = {"fast", "balanced", "best"};
const int kWindows[] = {3, 5, 7};

/** The values a render needs, read at one time. */
struct Settings {
  double strength = 1.0;
  int quality = 1;
  int window = 5;
  bool local_flicker = true;
  int grid = 6;
  double sensitivity = 1.0;
  bool motion = true;
  OutputMode output = OutputMode::Restored;
  std::string address;
  int radius() const { return window / 2; }
  /** Frames fetched on each side of t: the engine's temporal context (12r + 2). The solver
   *  compares a frame with its W = 2r + 1 neighbours and, for the slow part of the flicker,
   *  with frames up to 6r away along chained flows; its fit reaches as far again.
   *  With this context a render equals a whole-clip restore. */
  int context() const { return 12 * radius() + 2; }
};

/** Frames after t that one render asks the engine to restore with t (PROTOCOL.md 3.3.5): a
 *  sequential render then solves 2c + 8 frames for every 8, not 2c + 1 for each; a render out
 *  of order costs (2c + 8) / (2c + 1) of one without, 13 % more at W = 5. */
constexpr int kAhead = 7;

struct Instance {
  OfxImageEffectHandle effect = nullptr;
  OfxImageClipHandle source = nullptr, output = nullptr;
  std::map<std::string, OfxParamHandle> params;
  std::string clip_base;
  std::mutex lock;
  // Per engine clip session: the fingerprint of the frame sent for each time.
  std::map<std::string, std::map<int64_t, uint64_t>> sent;
  std::string last_address;
};

Instance *instance_of(OfxImageEffectHandle effect) {
  OfxPropertySetHandle props = nullptr;
  void *data = nullptr;
  if (g_effects->getPropertySet(effect, &props) != kOfxStatOK ||
      g_props->propGetPointer(props, kOfxPropInstanceData, 0, &data) != kOfxStatOK)
    return nullptr;
  return static_cast<Instance *>(data);
}

int int_at(Instance &inst, const char *name, double time, int fallback) {
  int value = fallback;
  auto it = inst.params.find(name);
  if (it != inst.params.end()) g_params->paramGetValueAtTime(it->second, time, &value);
  return value;
}

double double_at(Instance &inst, const char *name, double time, double fallback) {
  double value = fallback;
  auto it = inst.params.find(name);
  if (it != inst.params.end()) g_params->paramGetValueAtTime(it->second, time, &value);
  return value;
}

Settings settings_at(Instance &inst, double time) {
  Settings s;
  s.strength = std::min(1.0, std::max(0.0, double_at(inst, kStrength, time, 1.0)));
  s.quality = std::min(2, std::max(0, int_at(inst, kQuality, time, 1)));
  s.window = kWindows[std::min(2, std::max(0, int_at(inst, kWindow, time, 1)))];
  s.local_flicker = int_at(inst, kFlickerMode, time, 1) != 0;
  s.grid = std::min(32, std::max(1, int_at(inst, kGrid, time, 6)));
  s.sensitivity = std::min(10.0, std::max(0.05, double_at(inst, kSensitivity, time, 1.0)));
  s.motion = int_at(inst, kMotion, time, 1) != 0;
  s.output = (OutputMode)std::min(2, std::max(0, int_at(inst, kOutput, time, 0)));
  auto it = inst.params.find(kAddress);
  char *address = nullptr;
  if (it != inst.params.end() && g_params->paramGetValueAtTime(it->second, time, &address) == kOfxStatOK && address)
    s.address = address;
  while (!s.address.empty() && std::isspace((unsigned char)s.address.back())) s.address.pop_back();
  while (!s.address.empty() && std::isspace((unsigned char)s.address.front())) s.address.erase(0, 1);
  return s;
}

bridge::Value engine_params(const Settings &s) {
  bridge::Value p = bridge::Value::map();
  int grid = s.local_flicker ? s.grid : 1;
  p.set("preset", bridge::Value::str(kQualityPresets[s.quality]))
      .set("window", bridge::Value::integer(s.window))
      .set("grid", bridge::Value::array({bridge::Value::integer(grid), bridge::Value::integer(grid)}))
      .set("strength", bridge::Value::real(s.strength))
      .set("sensitivity", bridge::Value::real(s.sensitivity))
      .set("motion", bridge::Value::boolean(s.motion));
  return p;
}

// ------------------------------------------------------------------ messages

void post(OfxImageEffectHandle effect, const char *type, const std::string &text) {
  if (g_messages && g_messages->message)
    g_messages->message(effect, type, kMessageId, "%s", ("Deflicker/Deblotch: " + text).c_str());
}

// ------------------------------------------------------------------ describe

void set_string(OfxPropertySetHandle props, const char *name, const char *value) {
  g_props->propSetString(props, name, 0, value);
}

void set_int(OfxPropertySetHandle props, const char *name, int value) {
  g_props->propSetInt(props, name, 0, value);
}

void set_strings(OfxPropertySetHandle props, const char *name, std::initializer_list<const char *> values) {
  int k = 0;
  for (const char *v : values) g_props->propSetString(props, name, k++, v);
}

OfxStatus describe(OfxImageEffectHandle effect) {
  OfxPropertySetHandle props = nullptr;
  if (g_effects->getPropertySet(effect, &props) != kOfxStatOK) return kOfxStatErrBadHandle;
  set_string(props, kOfxPropLabel, "Deflicker/Deblotch");
  set_string(props, kOfxPropShortLabel, "Deflicker/Deblotch");
  set_string(props, kOfxPropLongLabel, "Deflicker/Deblotch");
  set_string(props, kOfxImageEffectPluginPropGrouping, "Restoration");
  set_string(props, kOfxPropPluginDescription,
             "Removes flicker and blotches (dirt, dust) together, from a motion-compensated "
             "window of frames, with the dfdb engine.");
  set_strings(props, kOfxImageEffectPropSupportedContexts,
              {kOfxImageEffectContextFilter, kOfxImageEffectContextGeneral});
  set_strings(props, kOfxImageEffectPropSupportedPixelDepths,
              {kOfxBitDepthByte, kOfxBitDepthShort, kOfxBitDepthFloat});
  set_int(props, kOfxImageEffectPluginPropSingleInstance, 0);
  set_string(props, kOfxImageEffectPluginRenderThreadSafety, kOfxImageEffectRenderFullySafe);
  set_int(props, kOfxImageEffectPluginPropHostFrameThreading, 0);
  set_int(props, kOfxImageEffectPropSupportsMultiResolution, 0);
  set_int(props, kOfxImageEffectPropSupportsTiles, 0);
  set_int(props, kOfxImageEffectPropTemporalClipAccess, 1);
  set_int(props, kOfxImageEffectPropSupportsMultipleClipDepths, 0);
  set_int(props, kOfxImageEffectPluginPropFieldRenderTwiceAlways, 0);
  return kOfxStatOK;
}

OfxPropertySetHandle define_param(OfxParamSetHandle set, const char *type, const char *name,
                                  const char *label, const char *hint) {
  OfxPropertySetHandle props = nullptr;
  if (g_params->paramDefine(set, type, name, &props) != kOfxStatOK || !props) return nullptr;
  set_string(props, kOfxPropLabel, label);
  set_string(props, kOfxParamPropHint, hint);
  set_string(props, kOfxParamPropScriptName, name);
  return props;
}

void define_double(OfxParamSetHandle set, const char *name, const char *label, const char *hint,
                   double def, double min, double max) {
  OfxPropertySetHandle p = define_param(set, kOfxParamTypeDouble, name, label, hint);
  if (!p) return;
  g_props->propSetDouble(p, kOfxParamPropDefault, 0, def);
  g_props->propSetDouble(p, kOfxParamPropMin, 0, min);
  g_props->propSetDouble(p, kOfxParamPropMax, 0, max);
  g_props->propSetDouble(p, kOfxParamPropDisplayMin, 0, min);
  g_props->propSetDouble(p, kOfxParamPropDisplayMax, 0, max);
}

void define_choice(OfxParamSetHandle set, const char *name, const char *label, const char *hint,
                   std::initializer_list<const char *> options, int def) {
  OfxPropertySetHandle p = define_param(set, kOfxParamTypeChoice, name, label, hint);
  if (!p) return;
  set_strings(p, kOfxParamPropChoiceOption, options);
  set_int(p, kOfxParamPropDefault, def);
  set_int(p, kOfxParamPropAnimates, 0);
}

OfxStatus describe_in_context(OfxImageEffectHandle effect) {
  OfxPropertySetHandle clip = nullptr;
  if (g_effects->clipDefine(effect, kOfxImageEffectSimpleSourceClipName, &clip) != kOfxStatOK)
    return kOfxStatFailed;
  set_strings(clip, kOfxImageEffectPropSupportedComponents, {kOfxImageComponentRGBA, kOfxImageComponentRGB});
  set_int(clip, kOfxImageEffectPropTemporalClipAccess, 1);
  set_int(clip, kOfxImageEffectPropSupportsTiles, 0);
  set_int(clip, kOfxImageClipPropOptional, 0);
  if (g_effects->clipDefine(effect, kOfxImageEffectOutputClipName, &clip) != kOfxStatOK)
    return kOfxStatFailed;
  set_strings(clip, kOfxImageEffectPropSupportedComponents, {kOfxImageComponentRGBA, kOfxImageComponentRGB});
  set_int(clip, kOfxImageEffectPropSupportsTiles, 0);

  OfxParamSetHandle set = nullptr;
  if (g_effects->getParamSet(effect, &set) != kOfxStatOK) return kOfxStatFailed;
  define_double(set, kStrength, "Strength", "How much of the correction is applied (0 = none).", 1.0, 0.0, 1.0);
  define_choice(set, kQuality, "Quality", "Speed against quality of the solver.", {"Fast", "Balanced", "Best"}, 1);
  define_choice(set, kWindow, "Window", "Frames compared with each frame (W = 2r + 1).", {"3", "5", "7"}, 1);
  define_choice(set, kFlickerMode, "Flicker", "Global: one gain per frame. Local: a smooth field over a grid.",
                {"Global", "Local"}, 1);
  OfxPropertySetHandle grid = define_param(set, kOfxParamTypeInteger, kGrid, "Flicker grid",
                                           "Control points per side of the local flicker field.");
  if (grid) {
    set_int(grid, kOfxParamPropDefault, 6);
    set_int(grid, kOfxParamPropMin, 1);
    set_int(grid, kOfxParamPropMax, 32);
    set_int(grid, kOfxParamPropDisplayMin, 1);
    set_int(grid, kOfxParamPropDisplayMax, 16);
  }
  define_double(set, kSensitivity, "Blotch sensitivity", "Higher finds fainter blotches.", 1.0, 0.05, 10.0);
  OfxPropertySetHandle motion = define_param(set, kOfxParamTypeBoolean, kMotion, "Motion compensation",
                                             "Align neighbouring frames with optical flow.");
  if (motion) set_int(motion, kOfxParamPropDefault, 1);
  define_choice(set, kOutput, "Output", "What the effect shows.", {"Restored", "Blotch mask", "Flicker map"}, 0);
  OfxPropertySetHandle address = define_param(set, kOfxParamTypeString, kAddress, "Engine address",
                                              "unix:///path or tcp://127.0.0.1:PORT; blank = the per-user engine.");
  if (address) {
    set_string(address, kOfxParamPropDefault, "");
    set_string(address, kOfxParamPropStringMode, kOfxParamStringIsSingleLine);
    set_int(address, kOfxParamPropAnimates, 0);
  }
  return kOfxStatOK;
}

// ------------------------------------------------------------------ instances

OfxStatus create_instance(OfxImageEffectHandle effect) {
  auto inst = std::make_unique<Instance>();
  inst->effect = effect;
  OfxParamSetHandle set = nullptr;
  if (g_effects->clipGetHandle(effect, kOfxImageEffectSimpleSourceClipName, &inst->source, nullptr) != kOfxStatOK ||
      g_effects->clipGetHandle(effect, kOfxImageEffectOutputClipName, &inst->output, nullptr) != kOfxStatOK ||
      g_effects->getParamSet(effect, &set) != kOfxStatOK)
    return kOfxStatFailed;
  for (const char *name : {kStrength, kQuality, kWindow, kFlickerMode, kGrid, kSensitivity, kMotion, kOutput, kAddress}) {
    OfxParamHandle handle = nullptr;
    if (g_params->paramGetHandle(set, name, &handle, nullptr) == kOfxStatOK) inst->params[name] = handle;
  }
  char base[96];
  std::snprintf(base, sizeof base, "ofx-%ld-%p", (long)getpid(), (void *)inst.get());
  inst->clip_base = base;
  OfxPropertySetHandle props = nullptr;
  if (g_effects->getPropertySet(effect, &props) != kOfxStatOK) return kOfxStatFailed;
  g_props->propSetPointer(props, kOfxPropInstanceData, 0, inst.release());
  return kOfxStatOK;
}

OfxStatus destroy_instance(OfxImageEffectHandle effect) {
  std::unique_ptr<Instance> inst(instance_of(effect));
  if (!inst) return kOfxStatOK;
  OfxPropertySetHandle props = nullptr;
  if (g_effects->getPropertySet(effect, &props) == kOfxStatOK)
    g_props->propSetPointer(props, kOfxPropInstanceData, 0, nullptr);
  // Let the engine drop this instance's frames now, on an idle connection only: destroying an
  // effect must never wait for an engine to start.
  if (auto client = pool().take_idle(inst->last_address)) {
    try {
      for (auto &session : inst->sent) client->close_clip(session.first);
      pool().release(inst->last_address, std::move(client));
    } catch (const bridge::Error &) {
    }
  }
  return kOfxStatOK;
}

// ------------------------------------------------------------------ clip-related actions

bool source_range(Instance &inst, double *first, double *last) {
  OfxPropertySetHandle props = nullptr;
  double range[2] = {0, 0};
  if (g_effects->clipGetPropertySet(inst.source, &props) != kOfxStatOK ||
      g_props->propGetDoubleN(props, kOfxImageEffectPropFrameRange, 2, range) != kOfxStatOK)
    return false;
  *first = range[0];
  *last = range[1];
  return true;
}

/** The frames t − c … t + kAhead + c, clipped to the source clip's frame range. */
void window_range(Instance &inst, double time, int context, double *first, double *last) {
  *first = time - context;
  *last = time + kAhead + context;
  double lo = 0, hi = 0;
  if (source_range(inst, &lo, &hi) && lo <= hi) {
    *first = std::max(*first, std::min(time, lo));
    *last = std::min(*last, std::max(time, hi));
  }
}

OfxStatus frames_needed(OfxImageEffectHandle effect, OfxPropertySetHandle in, OfxPropertySetHandle out) {
  Instance *inst = instance_of(effect);
  if (!inst) return kOfxStatErrBadHandle;
  double time = 0;
  g_props->propGetDouble(in, kOfxPropTime, 0, &time);
  double range[2];
  window_range(*inst, time, settings_at(*inst, time).context(), &range[0], &range[1]);
  std::string name = std::string(kOfxImageClipPropFrameRangePrefix) + kOfxImageEffectSimpleSourceClipName;
  return g_props->propSetDoubleN(out, name.c_str(), 2, range);
}

OfxStatus is_identity(OfxImageEffectHandle effect, OfxPropertySetHandle in, OfxPropertySetHandle out) {
  Instance *inst = instance_of(effect);
  if (!inst) return kOfxStatErrBadHandle;
  double time = 0;
  g_props->propGetDouble(in, kOfxPropTime, 0, &time);
  Settings s = settings_at(*inst, time);
  if (s.strength > 0.0 || s.output != OutputMode::Restored) return kOfxStatReplyDefault;
  g_props->propSetString(out, kOfxPropName, 0, kOfxImageEffectSimpleSourceClipName);
  g_props->propSetDouble(out, kOfxPropTime, 0, time);
  return kOfxStatOK;
}

OfxStatus region_of_definition(OfxImageEffectHandle effect, OfxPropertySetHandle in, OfxPropertySetHandle out) {
  Instance *inst = instance_of(effect);
  if (!inst) return kOfxStatErrBadHandle;
  double time = 0;
  g_props->propGetDouble(in, kOfxPropTime, 0, &time);
  OfxRectD rod{0, 0, 0, 0};
  if (g_effects->clipGetRegionOfDefinition(inst->source, time, &rod) != kOfxStatOK) return kOfxStatReplyDefault;
  double values[4] = {rod.x1, rod.y1, rod.x2, rod.y2};
  g_props->propSetDoubleN(out, kOfxImageEffectPropRegionOfDefinition, 4, values);
  return kOfxStatOK;
}

OfxStatus regions_of_interest(OfxImageEffectHandle effect, OfxPropertySetHandle in, OfxPropertySetHandle out) {
  Instance *inst = instance_of(effect);
  if (!inst) return kOfxStatErrBadHandle;
  double time = 0;
  g_props->propGetDouble(in, kOfxPropTime, 0, &time);
  OfxRectD rod{0, 0, 0, 0};
  if (g_effects->clipGetRegionOfDefinition(inst->source, time, &rod) != kOfxStatOK) return kOfxStatReplyDefault;
  // Motion estimation and the flicker field need the whole frame, whatever is rendered.
  double values[4] = {rod.x1, rod.y1, rod.x2, rod.y2};
  std::string name = std::string(kOfxImageClipPropRoIPrefix) + kOfxImageEffectSimpleSourceClipName;
  g_props->propSetDoubleN(out, name.c_str(), 4, values);
  return kOfxStatOK;
}

OfxStatus clip_preferences(OfxImageEffectHandle effect, OfxPropertySetHandle out) {
  Instance *inst = instance_of(effect);
  if (!inst) return kOfxStatErrBadHandle;
  OfxPropertySetHandle props = nullptr;
  char *components = nullptr, *depth = nullptr;
  if (g_effects->clipGetPropertySet(inst->source, &props) != kOfxStatOK) return kOfxStatReplyDefault;
  std::string output_name = kOfxImageEffectOutputClipName;
  if (g_props->propGetString(props, kOfxImageClipPropUnmappedComponents, 0, &components) == kOfxStatOK &&
      components) {
    std::string c = components;
    const char *chosen = c == kOfxImageComponentRGB ? kOfxImageComponentRGB : kOfxImageComponentRGBA;
    g_props->propSetString(out, (kOfxImageClipPropComponentsPrefix + output_name).c_str(), 0, chosen);
    std::string source_name = kOfxImageEffectSimpleSourceClipName;
    g_props->propSetString(out, (kOfxImageClipPropComponentsPrefix + source_name).c_str(), 0, chosen);
  }
  if (g_props->propGetString(props, kOfxImageClipPropUnmappedPixelDepth, 0, &depth) == kOfxStatOK && depth &&
      std::strcmp(depth, kOfxBitDepthNone) != 0)
    g_props->propSetString(out, (kOfxImageClipPropDepthPrefix + output_name).c_str(), 0, depth);
  return kOfxStatOK;
}

// ------------------------------------------------------------------ render

/** Images fetched for one render, released whatever happens. */
class HeldImages {
 public:
  ~HeldImages() {
    for (OfxPropertySetHandle h : handles_) g_effects->clipReleaseImage(h);
  }
  OfxPropertySetHandle fetch(OfxImageClipHandle clip, double time) {
    OfxPropertySetHandle handle = nullptr;
    if (g_effects->clipGetImage(clip, time, nullptr, &handle) != kOfxStatOK || !handle) return nullptr;
    handles_.push_back(handle);
    return handle;
  }

 private:
  std::vector<OfxPropertySetHandle> handles_;
};

struct RenderFailure {
  OfxStatus status;
  std::string text;
};

/** The engine session for frames of this size and type (proxy and full-size renders, or a
 *  depth change upstream, never share one). */
std::string session_id(const Instance &inst, const OfxImage &target) {
  return inst.clip_base + "-" + std::to_string(target.width()) + "x" + std::to_string(target.height()) + "-" +
         std::to_string(target.channels) + bridge::dtype_name(target.dtype);
}

/** Sends the window to the engine and returns its answer; one retry on a fresh connection when
 *  a pooled one turns out to be dead (the engine restarted since). */
void run_engine(Instance &inst, const Settings &s, bridge::ProcessRequest &request,
                bridge::ProcessResult &result, OfxImageEffectHandle effect) {
  auto log = [&](const std::string &text) { post(effect, kOfxMessageLog, text); };
  auto cancelled = [effect]() { return g_effects->abort(effect) != 0; };
  for (int attempt = 0;; ++attempt) {
    bool reused = false;
    std::unique_ptr<bridge::Client> client = pool().acquire(s.address, log, &reused);
    try {
      client->process(request, result, cancelled);
      pool().release(s.address, std::move(client));
      return;
    } catch (const bridge::Error &e) {
      bool dead_link = e.kind() == bridge::Error::Kind::Transport;
      if (!(dead_link && reused && attempt == 0)) throw;
    }
  }
}

OfxStatus render(OfxImageEffectHandle effect, OfxPropertySetHandle in) {
  Instance *inst = instance_of(effect);
  if (!inst) return kOfxStatErrBadHandle;
  double time = 0;
  int window_values[4] = {0, 0, 0, 0};
  g_props->propGetDouble(in, kOfxPropTime, 0, &time);
  g_props->propGetIntN(in, kOfxImageEffectPropRenderWindow, 4, window_values);
  OfxRectI window{window_values[0], window_values[1], window_values[2], window_values[3]};
  Settings s = settings_at(*inst, time);

  HeldImages held;
  OfxImage output, target;
  OfxPropertySetHandle out_handle = held.fetch(inst->output, time);
  OfxPropertySetHandle target_handle = held.fetch(inst->source, time);
  if (!out_handle || !target_handle) throw RenderFailure{kOfxStatFailed, "the host gave no image for this frame"};
  std::string problem = describe_image(*g_props, out_handle, &output);
  if (problem.empty()) problem = describe_image(*g_props, target_handle, &target);
  if (problem.empty() && (output.dtype != target.dtype || output.channels != target.channels))
    problem = "the output's depth or components differ from the source's";
  if (!problem.empty()) throw RenderFailure{kOfxStatErrImageFormat, problem};
  if (s.strength <= 0.0 && s.output == OutputMode::Restored) {
    copy_image(target, output, window);
    return kOfxStatOK;
  }

  bridge::ProcessRequest request;
  request.clip = session_id(*inst, target);
  request.target = (int64_t)std::llround(time);
  request.params = engine_params(s);
  request.outputs = {s.output == OutputMode::Restored     ? "image"
                     : s.output == OutputMode::BlotchMask ? "mask"
                                                          : "flicker"};
  request.ahead = kAhead;
  double first = time, last = time;
  window_range(*inst, time, s.context(), &first, &last);
  std::vector<std::pair<int64_t, uint64_t>> prints;
  for (double t = std::ceil(first); t <= last; t += 1.0) {
    OfxImage image;
    if (std::llround(t) == request.target) {
      image = target;
    } else {
      OfxPropertySetHandle handle = held.fetch(inst->source, t);
      // A neighbour the host cannot give, or of another size, just narrows the window.
      if (!handle || !describe_image(*g_props, handle, &image).empty() || image.width() != target.width() ||
          image.height() != target.height() || image.channels != target.channels)
        continue;
    }
    bridge::WindowFrame frame;
    frame.time = std::llround(t);
    frame.view = frame_view(image);
    uint64_t print = fingerprint(image);
    {
      std::lock_guard<std::mutex> guard(inst->lock);
      auto &sent = inst->sent[request.clip];
      auto it = sent.find(frame.time);
      frame.held = it != sent.end() && it->second == print;
    }
    prints.emplace_back(frame.time, print);
    request.frames.push_back(frame);
  }

  bridge::ProcessResult result;
  run_engine(*inst, s, request, result, effect);
  {
    std::lock_guard<std::mutex> guard(inst->lock);
    auto &sent = inst->sent[request.clip];
    for (auto &p : prints) sent[p.first] = p.second;
    inst->last_address = s.address;
  }
  const bridge::FrameView &answer = s.output == OutputMode::Restored     ? result.image
                                    : s.output == OutputMode::BlotchMask ? result.mask
                                                                         : result.flicker;
  write_result(answer, s.output, target, output, window);
  return kOfxStatOK;
}

OfxStatus render_action(OfxImageEffectHandle effect, OfxPropertySetHandle in) {
  try {
    return render(effect, in);
  } catch (const RenderFailure &f) {
    post(effect, kOfxMessageError, f.text);
    return f.status;
  } catch (const bridge::Error &e) {
    post(effect, kOfxMessageError, e.what());
    return e.kind() == bridge::Error::Kind::Resource ? kOfxStatErrMemory : kOfxStatFailed;
  } catch (const std::bad_alloc &) {
    post(effect, kOfxMessageError, "out of memory");
    return kOfxStatErrMemory;
  }
}

// ------------------------------------------------------------------ entry points

OfxStatus on_load() {
  if (!g_host || !g_host->fetchSuite) return kOfxStatErrMissingHostFeature;
  g_props = static_cast<const OfxPropertySuiteV1 *>(g_host->fetchSuite(g_host->host, kOfxPropertySuite, 1));
  g_params = static_cast<const OfxParameterSuiteV1 *>(g_host->fetchSuite(g_host->host, kOfxParameterSuite, 1));
  g_effects = static_cast<const OfxImageEffectSuiteV1 *>(g_host->fetchSuite(g_host->host, kOfxImageEffectSuite, 1));
  g_messages = static_cast<const OfxMessageSuiteV1 *>(g_host->fetchSuite(g_host->host, kOfxMessageSuite, 1));
  if (!g_props || !g_params || !g_effects) return kOfxStatErrMissingHostFeature;
  return kOfxStatOK;
}

OfxStatus on_unload() {
  pool().clear();
  return kOfxStatOK;
}

OfxStatus dispatch(const char *action, OfxImageEffectHandle effect, OfxPropertySetHandle in,
                   OfxPropertySetHandle out) {
  std::string a = action;
  if (a == kOfxActionLoad) return on_load();
  if (!g_props || !g_params || !g_effects) return kOfxStatErrMissingHostFeature;
  if (a == kOfxActionUnload) return on_unload();
  if (a == kOfxActionDescribe) return describe(effect);
  if (a == kOfxImageEffectActionDescribeInContext) return describe_in_context(effect);
  if (a == kOfxActionCreateInstance) return create_instance(effect);
  if (a == kOfxActionDestroyInstance) return destroy_instance(effect);
  if (a == kOfxImageEffectActionRender) return render_action(effect, in);
  if (a == kOfxImageEffectActionGetFramesNeeded) return frames_needed(effect, in, out);
  if (a == kOfxImageEffectActionIsIdentity) return is_identity(effect, in, out);
  if (a == kOfxImageEffectActionGetRegionOfDefinition) return region_of_definition(effect, in, out);
  if (a == kOfxImageEffectActionGetRegionsOfInterest) return regions_of_interest(effect, in, out);
  if (a == kOfxImageEffectActionGetClipPreferences) return clip_preferences(effect, out);
  if (a == kOfxActionPurgeCaches) {
    pool().clear();
    return kOfxStatOK;
  }
  return kOfxStatReplyDefault;
}

OfxStatus main_entry(const char *action, const void *handle, OfxPropertySetHandle in, OfxPropertySetHandle out) {
  if (!action) return kOfxStatErrValue;
  try {
    OfxImageEffectHandle effect = static_cast<OfxImageEffectHandle>(const_cast<void *>(handle));
    return dispatch(action, effect, in, out);
  } catch (const std::bad_alloc &) {
    return kOfxStatErrMemory;
  } catch (...) {
    return kOfxStatFailed;
  }
}

void set_host(OfxHost *host) { g_host = host; }

#ifdef DFDB_STATIC_LIBSTDCXX
// The C++ runtime linked into this bundle allocates an emergency exception-memory pool when it
// is loaded and never frees it; hosts that load and unload plug-ins repeatedly would leak it
// each time. Release it when the bundle itself is unloaded, when no code of ours can run.
__attribute__((destructor)) void release_runtime_pool() { __gnu_cxx::__freeres(); }
#endif

OfxPlugin g_plugin = {kOfxImageEffectPluginApi, kOfxImageEffectPluginApiVersion, kPluginId, 0, 1, set_host, main_entry};

}  // namespace
}  // namespace plugin
}  // namespace dfdb

extern "C" {

OfxExport int OfxGetNumberOfPlugins(void) { return 1; }

OfxExport OfxPlugin *OfxGetPlugin(int nth) { return nth == 0 ? &dfdb::plugin::g_plugin : nullptr; }
}
