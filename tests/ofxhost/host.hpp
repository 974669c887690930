// A small OpenFX host for the tests: it loads an image-effect bundle with dlopen and drives it
// the way an editor does (describe, instantiate, clip preferences, frames needed, render),
// implementing the suites a plug-in commonly fetches and refusing the others.
#pragma once

#include "ofx_abi.h"

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

// ------------------------------------------------------------------ property sets

struct Prop {
  char type = 'i';  // 'i' int, 'd' double, 's' string, 'p' pointer
  std::vector<int> i;
  std::vector<double> d;
  std::vector<std::string> s;
  std::vector<void *> p;
  size_t size() const;
};

struct OfxPropertySetStruct {
  virtual ~OfxPropertySetStruct() = default;
  std::recursive_mutex lock;
  std::map<std::string, Prop> props;

  void set_int(const std::string &name, std::vector<int> values);
  void set_double(const std::string &name, std::vector<double> values);
  void set_string(const std::string &name, std::vector<std::string> values);
  void set_pointer(const std::string &name, void *value);
  int get_int(const std::string &name, int index = 0, int fallback = 0);
  double get_double(const std::string &name, int index = 0, double fallback = 0.0);
  std::string get_string(const std::string &name, int index = 0, const std::string &fallback = "");
  std::vector<std::string> get_strings(const std::string &name);
  bool has(const std::string &name);
};

extern const OfxPropertySuiteV1 kHostPropertySuite;

// ------------------------------------------------------------------ parameters

struct OfxParamStruct {
  std::string name;
  std::string type;
  OfxPropertySetStruct props;
  int ivalue[2] = {0, 0};
  double dvalue = 0.0;
  std::string svalue;
};

struct OfxParamSetStruct {
  OfxPropertySetStruct props;
  std::vector<std::unique_ptr<OfxParamStruct>> params;
  OfxParamStruct *find(const std::string &name);
};

extern const OfxParameterSuiteV1 kHostParameterSuite;

/** Copies descriptor params into an instance param set, each value set to its default. */
void instantiate_params(OfxParamSetStruct &from, OfxParamSetStruct &to);
/** Sets an instance parameter from text ("0.5", "1", "label of a choice" or its index). */
bool set_param_from_text(OfxParamStruct &param, const std::string &text);

// ------------------------------------------------------------------ clips, images, effects

/** A clip's pixels: T frames of H×W×C components, top row first, packed. */
struct ClipData {
  int frames = 0, height = 0, width = 0, channels = 0;
  int bytes_per_component = 1;  // 1 u8, 2 u16, 4 f32
  std::vector<std::vector<uint8_t>> pixels;
  std::string depth() const;
  std::string components() const;
};

/** How the host lays out the images it hands out. */
struct Layout {
  bool bottom_up = true;  // true: positive row bytes; false: negative row bytes
  int pad = 0;            // extra bytes at the end of every row
  double scale = 1.0;     // render scale (proxy) on both axes
};

struct OfxImageEffectStruct;

struct OfxImageClipStruct {
  std::string name;
  OfxPropertySetStruct props;
  OfxImageEffectStruct *owner = nullptr;
};

/** An image handed to the plug-in: its property set and the memory behind it. */
struct HostImage : OfxPropertySetStruct {
  std::vector<uint8_t> storage;
  int width = 0, height = 0, channels = 0, bytes_per_component = 1;
  long row_bytes = 0;
  uint8_t *origin = nullptr;  // the pixel at (bounds.x1, bounds.y1)
  std::vector<uint8_t> top_first() const;
};

/** What the render running on the current thread is allowed to fetch. */
struct RenderContext {
  double first_needed = 0, last_needed = 0;
  double render_time = 0;
  std::shared_ptr<HostImage> output;
};

struct OfxImageEffectStruct {
  OfxPropertySetStruct props;
  OfxParamSetStruct params;
  std::vector<std::unique_ptr<OfxImageClipStruct>> clips;
  std::shared_ptr<ClipData> source;
  Layout layout;
  OfxImageClipStruct *clip(const std::string &name);
};

extern const OfxImageEffectSuiteV1 kHostImageEffectSuite;
extern const OfxMemorySuiteV1 kHostMemorySuite;
extern const OfxMultiThreadSuiteV1 kHostMultiThreadSuite;
extern const OfxMessageSuiteV1 kHostMessageSuite;

/** The current thread's render (null outside a render action). */
RenderContext *&current_render();
/** Images handed out and not yet released, across all instances. */
std::atomic<int> &live_images();
/** Builds an image of `data`'s frame `index` laid out as `layout` says. */
std::unique_ptr<HostImage> make_image(const ClipData &data, int index, const Layout &layout,
                                      const std::string &premult);
/** An empty output image of the given size. */
std::unique_ptr<HostImage> make_output(const ClipData &like, int width, int height,
                                       const Layout &layout);
/** Writes a line to stdout under the output lock (messages and answers share stdout). */
void emit(const std::string &line);

// ------------------------------------------------------------------ .npy files

/** Reads a little-endian C-order .npy of uint8/uint16/float32 with shape (T,H,W,C) or
 *  (H,W,C), C in {3, 4}; returns an error text (empty on success). */
std::string read_npy(const std::string &path, ClipData *out);
/** Writes one frame (H,W,C) as .npy, via a temporary name renamed when complete. */
std::string write_npy(const std::string &path, const std::vector<uint8_t> &pixels, int height,
                      int width, int channels, int bytes_per_component);
