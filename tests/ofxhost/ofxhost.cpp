// ofxhost: drives an OpenFX image-effect bundle from commands on stdin, one per line.
//
// Every command answers with exactly one line starting with "= " (its result, or
// "= error TEXT"); lines starting with "! " are messages the plug-in posted through the message
// suite ("! TYPE ID TEXT"), lines starting with "# " are notes, "info"/"param"/"clip" lines
// describe the plug-in, "r " lines are per-frame results of renderpar.
//
//   load BUNDLE_BINARY          dlopen, OfxGetPlugin, load, describe, describeInContext(filter)
//   info                        the descriptor's properties, parameters and clips
//   clip FRAMES.npy             the source clip: (T,H,W,C) uint8/uint16/float32, C = 3 or 4
//   create                      createInstance (filter context), then clip preferences
//   set NAME VALUE              an instance parameter (choices by label or index; "-" = empty)
//   setenv NAME VALUE           the host's environment ("-" unsets)
//   scale S | layout up|down PAD   render scale; image row order (row bytes > 0 or < 0) and padding
//   needed T | rod T            getFramesNeeded / getRegionOfDefinition at time T
//   render T OUT.npy            frames needed, isIdentity, render; writes the output frame
//   renderpar PREFIX T1 T2 ...  renders those frames on one thread each (PREFIX_T.npy)
//   destroy | unload            destroyInstance | unload + dlclose
//   cycle N BUNDLE_BINARY       N × (load, describe, [create, destroy], unload, dlclose)
//   stats                       "= RSS_KB OPEN_FDS"
//   quit
#include "host.hpp"

#include <dirent.h>
#include <dlfcn.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <sstream>
#include <thread>

namespace {

OfxPropertySetStruct host_props;

const void *fetch_suite(OfxPropertySetHandle, const char *name, int version) {
  std::string n = name ? name : "";
  if (version == 1) {
    if (n == kOfxPropertySuite) return &kHostPropertySuite;
    if (n == kOfxParameterSuite) return &kHostParameterSuite;
    if (n == kOfxImageEffectSuite) return &kHostImageEffectSuite;
    if (n == kOfxMemorySuite) return &kHostMemorySuite;
    if (n == kOfxMultiThreadSuite) return &kHostMultiThreadSuite;
    if (n == kOfxMessageSuite) return &kHostMessageSuite;
  }
  emit("# refused suite " + n + " v" + std::to_string(version));
  return nullptr;
}

OfxHost host_struct = {&host_props, fetch_suite};

void init_host_props() {
  host_props.set_string(kOfxPropType, {kOfxTypeImageEffectHost});
  host_props.set_string(kOfxPropName, {"org.dfdb.testhost"});
  host_props.set_string(kOfxPropLabel, {"dfdb test host"});
  host_props.set_int(kOfxPropAPIVersion, {1, 4});
  host_props.set_int(kOfxImageEffectHostPropIsBackground, {1});
  host_props.set_int(kOfxImageEffectPropSupportsMultiResolution, {0});
  host_props.set_int(kOfxImageEffectPropSupportsTiles, {0});
  host_props.set_int(kOfxImageEffectPropTemporalClipAccess, {1});
  host_props.set_int(kOfxImageEffectPropSupportsMultipleClipDepths, {0});
  host_props.set_int(kOfxImageEffectPropSupportsMultipleClipPARs, {0});
  host_props.set_string(kOfxImageEffectPropSupportedComponents,
                        {kOfxImageComponentRGBA, kOfxImageComponentRGB});
  host_props.set_string(kOfxImageEffectPropSupportedContexts,
                        {kOfxImageEffectContextFilter, kOfxImageEffectContextGeneral});
  host_props.set_string(kOfxImageEffectPropSupportedPixelDepths,
                        {kOfxBitDepthByte, kOfxBitDepthShort, kOfxBitDepthFloat});
}

struct Session {
  std::string path;
  void *library = nullptr;
  OfxPlugin *plugin = nullptr;
  std::unique_ptr<OfxImageEffectStruct> descriptor, context, instance;
  std::shared_ptr<ClipData> source;
  Layout layout;
};

Session session;

struct Failure {
  std::string text;
};

void require(bool ok, const std::string &text) {
  if (!ok) throw Failure{text};
}

OfxStatus call(const char *action, const void *handle, OfxPropertySetStruct *in, OfxPropertySetStruct *out) {
  return session.plugin->mainEntry(action, handle, in, out);
}

void expect_ok(const char *action, OfxStatus status) {
  require(status == kOfxStatOK || status == kOfxStatReplyDefault,
          std::string(action) + " returned status " + std::to_string(status));
}

bool contains(const std::vector<std::string> &items, const std::string &item) {
  for (auto &i : items)
    if (i == item) return true;
  return false;
}

// ------------------------------------------------------------------ load / unload

std::string load(const std::string &path) {
  require(!session.library, "a plug-in is already loaded");
  void *library = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!library) throw Failure{std::string("dlopen: ") + dlerror()};
  auto count_fn = reinterpret_cast<OfxGetNumberOfPluginsFn>(dlsym(library, "OfxGetNumberOfPlugins"));
  auto get_fn = reinterpret_cast<OfxGetPluginFn>(dlsym(library, "OfxGetPlugin"));
  if (!count_fn || !get_fn) {
    dlclose(library);
    throw Failure{"the binary does not export OfxGetNumberOfPlugins/OfxGetPlugin"};
  }
  OfxPlugin *plugin = nullptr;
  for (int k = 0; k < count_fn() && !plugin; ++k) {
    OfxPlugin *p = get_fn(k);
    if (p && std::strcmp(p->pluginApi, kOfxImageEffectPluginApi) == 0 && p->apiVersion == 1) plugin = p;
  }
  if (!plugin) {
    dlclose(library);
    throw Failure{"no image-effect plug-in in the binary"};
  }
  session.library = library;
  session.plugin = plugin;
  session.path = path;
  plugin->setHost(&host_struct);
  expect_ok(kOfxActionLoad, call(kOfxActionLoad, nullptr, nullptr, nullptr));

  session.descriptor = std::make_unique<OfxImageEffectStruct>();
  session.descriptor->props.set_string(kOfxPropType, {kOfxTypeImageEffect});
  expect_ok(kOfxActionDescribe, call(kOfxActionDescribe, session.descriptor.get(), nullptr, nullptr));
  std::vector<std::string> contexts = session.descriptor->props.get_strings(kOfxImageEffectPropSupportedContexts);
  require(contains(contexts, kOfxImageEffectContextFilter), "the plug-in does not support the filter context");

  session.context = std::make_unique<OfxImageEffectStruct>();
  session.context->props.props = session.descriptor->props.props;
  session.context->props.set_string(kOfxImageEffectPropContext, {kOfxImageEffectContextFilter});
  OfxPropertySetStruct in;
  in.set_string(kOfxImageEffectPropContext, {kOfxImageEffectContextFilter});
  expect_ok(kOfxImageEffectActionDescribeInContext,
            call(kOfxImageEffectActionDescribeInContext, session.context.get(), &in, nullptr));
  require(session.context->clip(kOfxImageEffectSimpleSourceClipName) &&
              session.context->clip(kOfxImageEffectOutputClipName),
          "a filter must define the Source and Output clips");
  return std::string("ok ") + plugin->pluginIdentifier + " " + std::to_string(plugin->pluginVersionMajor) + "." +
         std::to_string(plugin->pluginVersionMinor);
}

std::string destroy() {
  require(session.instance != nullptr, "no instance");
  expect_ok(kOfxActionDestroyInstance, call(kOfxActionDestroyInstance, session.instance.get(), nullptr, nullptr));
  session.instance.reset();
  return "ok";
}

std::string unload() {
  require(session.library != nullptr, "nothing loaded");
  if (session.instance) destroy();
  OfxStatus status = call(kOfxActionUnload, nullptr, nullptr, nullptr);
  session.context.reset();
  session.descriptor.reset();
  session.plugin = nullptr;
  dlclose(session.library);
  session.library = nullptr;
  expect_ok(kOfxActionUnload, status);
  // Whether the loader really dropped the binary (it cannot when the binary pins itself).
  void *still = dlopen(session.path.c_str(), RTLD_NOW | RTLD_NOLOAD);
  if (still) dlclose(still);
  return still ? "ok resident" : "ok unloaded";
}

std::string join(const Prop &prop) {
  std::ostringstream out;
  for (size_t k = 0; k < prop.size(); ++k) {
    if (k) out << "|";
    switch (prop.type) {
      case 'i': out << prop.i[k]; break;
      case 'd': out << prop.d[k]; break;
      case 's': out << prop.s[k]; break;
      default: out << (prop.p[k] ? "ptr" : "null");
    }
  }
  return out.str();
}

std::string info() {
  require(session.context != nullptr, "nothing loaded");
  emit(std::string("info identifier ") + session.plugin->pluginIdentifier);
  for (auto &kv : session.descriptor->props.props) emit("info " + kv.first + " " + join(kv.second));
  for (auto &param : session.context->params.params) {
    std::string line = "param " + param->name + " " + param->type;
    for (auto &kv : param->props.props) line += " " + kv.first + "=" + join(kv.second);
    emit(line);
  }
  for (auto &clip : session.context->clips) {
    std::string line = "clip " + clip->name;
    for (auto &kv : clip->props.props) line += " " + kv.first + "=" + join(kv.second);
    emit(line);
  }
  return "ok";
}

// ------------------------------------------------------------------ instance

void set_clip_instance_props(OfxImageClipStruct &clip, const ClipData &data) {
  clip.props.set_string(kOfxPropType, {kOfxTypeClip});
  clip.props.set_string(kOfxImageEffectPropPixelDepth, {data.depth()});
  clip.props.set_string(kOfxImageEffectPropComponents, {data.components()});
  clip.props.set_string(kOfxImageClipPropUnmappedPixelDepth, {data.depth()});
  clip.props.set_string(kOfxImageClipPropUnmappedComponents, {data.components()});
  clip.props.set_string(kOfxImageEffectPropPreMultiplication,
                        {data.channels == 4 ? kOfxImageUnPreMultiplied : kOfxImageOpaque});
  clip.props.set_double(kOfxImagePropPixelAspectRatio, {1.0});
  clip.props.set_double(kOfxImageEffectPropFrameRate, {24.0});
  clip.props.set_double(kOfxImageEffectPropFrameRange, {0.0, (double)(data.frames - 1)});
  clip.props.set_int(kOfxImageClipPropConnected, {1});
  clip.props.set_int(kOfxImageClipPropContinuousSamples, {0});
  clip.props.set_string(kOfxImageClipPropFieldOrder, {kOfxImageFieldNone});
}

std::string create() {
  require(session.context != nullptr, "nothing loaded");
  require(session.source != nullptr, "no source clip");
  require(!session.instance, "an instance exists already");
  const ClipData &data = *session.source;
  require(contains(session.descriptor->props.get_strings(kOfxImageEffectPropSupportedPixelDepths), data.depth()),
          "the plug-in does not support depth " + data.depth());
  auto inst = std::make_unique<OfxImageEffectStruct>();
  inst->props.props = session.context->props.props;
  inst->props.set_string(kOfxPropType, {kOfxTypeImageEffectInstance});
  inst->props.set_string(kOfxImageEffectPropContext, {kOfxImageEffectContextFilter});
  inst->props.set_pointer(kOfxPropInstanceData, nullptr);
  inst->props.set_int(kOfxPropIsInteractive, {0});
  inst->props.set_double(kOfxImageEffectPropProjectSize, {(double)data.width, (double)data.height});
  inst->props.set_double(kOfxImageEffectPropProjectExtent, {(double)data.width, (double)data.height});
  inst->props.set_double(kOfxImageEffectPropProjectOffset, {0.0, 0.0});
  inst->props.set_double(kOfxImageEffectPropProjectPixelAspectRatio, {1.0});
  inst->props.set_double(kOfxImageEffectInstancePropEffectDuration, {(double)data.frames});
  inst->props.set_double(kOfxImageEffectPropFrameRate, {24.0});
  instantiate_params(session.context->params, inst->params);
  for (auto &desc : session.context->clips) {
    auto clip = std::make_unique<OfxImageClipStruct>();
    clip->name = desc->name;
    clip->owner = inst.get();
    clip->props.props = desc->props.props;
    require(contains(desc->props.get_strings(kOfxImageEffectPropSupportedComponents), data.components()),
            "clip " + desc->name + " does not accept " + data.components());
    set_clip_instance_props(*clip, data);
    inst->clips.push_back(std::move(clip));
  }
  inst->source = session.source;
  inst->layout = session.layout;
  session.instance = std::move(inst);
  OfxStatus status = call(kOfxActionCreateInstance, session.instance.get(), nullptr, nullptr);
  if (status != kOfxStatOK && status != kOfxStatReplyDefault) {
    session.instance.reset();
    throw Failure{"createInstance returned status " + std::to_string(status)};
  }

  OfxPropertySetStruct out;
  for (const char *clip : {kOfxImageEffectSimpleSourceClipName, kOfxImageEffectOutputClipName}) {
    out.set_string(std::string(kOfxImageClipPropComponentsPrefix) + clip, {data.components()});
    out.set_string(std::string(kOfxImageClipPropDepthPrefix) + clip, {data.depth()});
    out.set_double(std::string(kOfxImageClipPropPARPrefix) + clip, {1.0});
  }
  out.set_double(kOfxImageEffectPropFrameRate, {24.0});
  out.set_string(kOfxImageClipPropFieldOrder, {kOfxImageFieldNone});
  out.set_string(kOfxImageEffectPropPreMultiplication,
                 {data.channels == 4 ? kOfxImageUnPreMultiplied : kOfxImageOpaque});
  out.set_int(kOfxImageClipPropContinuousSamples, {0});
  out.set_int(kOfxImageEffectFrameVarying, {0});
  expect_ok(kOfxImageEffectActionGetClipPreferences,
            call(kOfxImageEffectActionGetClipPreferences, session.instance.get(), nullptr, &out));
  std::string output = kOfxImageEffectOutputClipName;
  // This host converts nothing: the plug-in must keep the source's components and depth.
  require(out.get_string(kOfxImageClipPropComponentsPrefix + output) == data.components() &&
              out.get_string(kOfxImageClipPropDepthPrefix + output) == data.depth(),
          "clip preferences ask for a conversion this host does not do");
  return "ok";
}

// ------------------------------------------------------------------ actions at a time

void render_args(double time, const Layout &layout, const ClipData &data, OfxPropertySetStruct &in) {
  int width = (int)std::ceil(data.width * layout.scale - 1e-9), height = (int)std::ceil(data.height * layout.scale - 1e-9);
  in.set_double(kOfxPropTime, {time});
  in.set_string(kOfxImageEffectPropFieldToRender, {kOfxImageFieldNone});
  in.set_int(kOfxImageEffectPropRenderWindow, {0, 0, width, height});
  in.set_double(kOfxImageEffectPropRenderScale, {layout.scale, layout.scale});
  in.set_int(kOfxImageEffectPropSequentialRenderStatus, {0});
  in.set_int(kOfxImageEffectPropInteractiveRenderStatus, {0});
}

std::pair<double, double> frames_needed(double time) {
  OfxPropertySetStruct in, out;
  in.set_double(kOfxPropTime, {time});
  std::string name = std::string(kOfxImageClipPropFrameRangePrefix) + kOfxImageEffectSimpleSourceClipName;
  out.set_double(name, {time, time});
  expect_ok(kOfxImageEffectActionGetFramesNeeded,
            call(kOfxImageEffectActionGetFramesNeeded, session.instance.get(), &in, &out));
  return {out.get_double(name, 0, time), out.get_double(name, 1, time)};
}

std::string region_of_definition(double time) {
  OfxPropertySetStruct in, out;
  in.set_double(kOfxPropTime, {time});
  in.set_double(kOfxImageEffectPropRenderScale, {session.layout.scale, session.layout.scale});
  const ClipData &data = *session.source;
  out.set_double(kOfxImageEffectPropRegionOfDefinition, {0, 0, (double)data.width, (double)data.height});
  OfxStatus status = call(kOfxImageEffectActionGetRegionOfDefinition, session.instance.get(), &in, &out);
  expect_ok(kOfxImageEffectActionGetRegionOfDefinition, status);
  std::ostringstream text;
  for (int k = 0; k < 4; ++k) text << (k ? " " : "") << out.get_double(kOfxImageEffectPropRegionOfDefinition, k, -1);
  return text.str();
}

/** One frame as an editor renders it; returns "ok MS", "identity" or "fail STATUS". */
std::string render_one(double time, const std::string &path) {
  OfxImageEffectStruct *inst = session.instance.get();
  const ClipData &data = *inst->source;
  Layout layout = inst->layout;
  auto needed = frames_needed(time);
  OfxPropertySetStruct in;
  render_args(time, layout, data, in);

  OfxPropertySetStruct identity_out;
  identity_out.set_string(kOfxPropName, {""});
  identity_out.set_double(kOfxPropTime, {time});
  OfxStatus identity = call(kOfxImageEffectActionIsIdentity, inst, &in, &identity_out);
  if (identity == kOfxStatOK) {
    require(identity_out.get_string(kOfxPropName) == kOfxImageEffectSimpleSourceClipName,
            "isIdentity named an unknown clip");
    int index = (int)std::lround(identity_out.get_double(kOfxPropTime, 0, time));
    auto image = make_image(data, index, layout, kOfxImageOpaque);
    std::string err = write_npy(path, image->top_first(), image->height, image->width, image->channels,
                                image->bytes_per_component);
    require(err.empty(), err);
    return "identity";
  }

  RenderContext context;
  context.first_needed = needed.first;
  context.last_needed = needed.second;
  context.render_time = time;
  context.output = make_output(data, (int)std::ceil(data.width * layout.scale - 1e-9),
                               (int)std::ceil(data.height * layout.scale - 1e-9), layout);
  OfxPropertySetStruct seq;
  seq.set_double(kOfxImageEffectPropFrameRange, {time, time});
  seq.set_double("OfxImageEffectPropFrameStep", {1.0});
  seq.set_int(kOfxPropIsInteractive, {0});
  seq.set_double(kOfxImageEffectPropRenderScale, {layout.scale, layout.scale});
  seq.set_int(kOfxImageEffectPropSequentialRenderStatus, {0});
  seq.set_int(kOfxImageEffectPropInteractiveRenderStatus, {0});
  call(kOfxImageEffectActionBeginSequenceRender, inst, &seq, nullptr);
  current_render() = &context;
  auto start = std::chrono::steady_clock::now();
  OfxStatus status = call(kOfxImageEffectActionRender, inst, &in, nullptr);
  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  current_render() = nullptr;
  call(kOfxImageEffectActionEndSequenceRender, inst, &seq, nullptr);
  if (status != kOfxStatOK) return "fail " + std::to_string(status);
  std::string err = write_npy(path, context.output->top_first(), context.output->height, context.output->width,
                              context.output->channels, context.output->bytes_per_component);
  require(err.empty(), err);
  char text[64];
  std::snprintf(text, sizeof text, "ok %.3f", ms);
  return text;
}

std::string render_parallel(const std::string &prefix, const std::vector<double> &times) {
  std::vector<std::string> results(times.size());
  std::vector<std::thread> threads;
  for (size_t k = 0; k < times.size(); ++k)
    threads.emplace_back([&, k] {
      try {
        results[k] = render_one(times[k], prefix + "_" + std::to_string((int)times[k]) + ".npy");
      } catch (const Failure &f) {
        results[k] = "error " + f.text;
      }
    });
  for (auto &t : threads) t.join();
  for (size_t k = 0; k < times.size(); ++k) emit("r " + std::to_string((int)times[k]) + " " + results[k]);
  return "done";
}

// ------------------------------------------------------------------ process statistics

std::string stats() {
  long pages_total = 0, pages_resident = 0;
  FILE *statm = std::fopen("/proc/self/statm", "r");
  if (statm) {
    if (std::fscanf(statm, "%ld %ld", &pages_total, &pages_resident) != 2) pages_resident = 0;
    std::fclose(statm);
  }
  int fds = 0;
  if (DIR *dir = opendir("/proc/self/fd")) {
    while (dirent *entry = readdir(dir))
      if (entry->d_name[0] != '.') ++fds;
    closedir(dir);
    --fds;  // the directory stream itself
  }
  return std::to_string(pages_resident * (sysconf(_SC_PAGESIZE) / 1024)) + " " + std::to_string(fds);
}

std::string cycle(int count, const std::string &path) {
  int resident = 0;
  for (int k = 0; k < count; ++k) {
    load(path);
    if (session.source) {
      create();
      destroy();
    }
    resident += unload() == "ok resident";
  }
  return "ok " + std::to_string(resident) + " resident";
}

// ------------------------------------------------------------------ command loop

double number(const std::string &text) {
  char *end = nullptr;
  double value = std::strtod(text.c_str(), &end);
  require(!text.empty() && !*end, "not a number: " + text);
  return value;
}

std::string run(const std::vector<std::string> &args) {
  const std::string &cmd = args[0];
  auto need = [&](size_t n) { require(args.size() >= n + 1, cmd + " needs " + std::to_string(n) + " argument(s)"); };
  if (cmd == "load") return need(1), load(args[1]);
  if (cmd == "info") return info();
  if (cmd == "clip") {
    need(1);
    auto data = std::make_shared<ClipData>();
    std::string err = read_npy(args[1], data.get());
    require(err.empty(), err);
    session.source = data;
    return "ok " + std::to_string(data->frames) + " " + std::to_string(data->height) + " " +
           std::to_string(data->width) + " " + std::to_string(data->channels);
  }
  if (cmd == "create") return create();
  if (cmd == "set") {
    need(2);
    require(session.instance != nullptr, "no instance");
    OfxParamStruct *param = session.instance->params.find(args[1]);
    require(param != nullptr, "no parameter " + args[1]);
    require(set_param_from_text(*param, args[2]), "bad value for " + args[1] + ": " + args[2]);
    return "ok";
  }
  if (cmd == "setenv") {
    need(2);
    if (args[2] == "-") unsetenv(args[1].c_str());
    else setenv(args[1].c_str(), args[2].c_str(), 1);
    return "ok";
  }
  if (cmd == "scale") {
    need(1);
    double s = number(args[1]);
    require(s > 0 && s <= 1, "scale must be in (0, 1]");
    session.layout.scale = s;
    if (session.instance) session.instance->layout = session.layout;
    return "ok";
  }
  if (cmd == "layout") {
    need(2);
    require(args[1] == "up" || args[1] == "down", "layout is up or down");
    session.layout.bottom_up = args[1] == "up";
    session.layout.pad = (int)number(args[2]);
    if (session.instance) session.instance->layout = session.layout;
    return "ok";
  }
  if (cmd == "needed") {
    need(1);
    require(session.instance != nullptr, "no instance");
    auto range = frames_needed(number(args[1]));
    std::ostringstream out;
    out << range.first << " " << range.second;
    return out.str();
  }
  if (cmd == "rod") {
    need(1);
    require(session.instance != nullptr, "no instance");
    return region_of_definition(number(args[1]));
  }
  if (cmd == "render") {
    need(2);
    require(session.instance != nullptr, "no instance");
    std::string result = render_one(number(args[1]), args[2]);
    if (live_images() != 0) result += " leaked " + std::to_string(live_images().load());
    return result;
  }
  if (cmd == "renderpar") {
    need(2);
    require(session.instance != nullptr, "no instance");
    std::vector<double> times;
    for (size_t k = 2; k < args.size(); ++k) times.push_back(number(args[k]));
    std::string result = render_parallel(args[1], times);
    if (live_images() != 0) result += " leaked " + std::to_string(live_images().load());
    return result;
  }
  if (cmd == "destroy") return destroy();
  if (cmd == "unload") return unload();
  if (cmd == "cycle") return need(2), cycle((int)number(args[1]), args[2]);
  if (cmd == "stats") return stats();
  throw Failure{"unknown command " + cmd};
}

}  // namespace

int main() {
  init_host_props();
  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream words(line);
    std::vector<std::string> args;
    for (std::string w; words >> w;) args.push_back(w);
    if (args.empty() || args[0][0] == '#') continue;
    if (args[0] == "quit") break;
    try {
      emit("= " + run(args));
    } catch (const Failure &f) {
      emit("= error " + f.text);
    }
  }
  if (session.library) {
    try {
      unload();
    } catch (const Failure &f) {
      emit("# " + f.text);
    }
  }
  emit("= bye");
  return 0;
}
