// OpenFX images ↔ the bridge's frame views: no pixel conversion happens in the plug-in (the
// engine reads u8/u16/f32 as they are); only addressing (bounds, row bytes of either sign).
#pragma once

#include "dfdb_bridge.hpp"
#include "ofx_abi.h"

#include <cstdint>
#include <string>

namespace dfdb {
namespace plugin {

/** An OpenFX image as the property suite describes it. */
struct OfxImage {
  uint8_t *data = nullptr;  // pixel (bounds.x1, bounds.y1), the bottom-left one
  OfxRectI bounds{0, 0, 0, 0};
  long row_bytes = 0;  // from one row to the one above it; either sign
  int channels = 0;    // 3 or 4
  bridge::Dtype dtype = bridge::Dtype::U8;
  int width() const { return bounds.x2 - bounds.x1; }
  int height() const { return bounds.y2 - bounds.y1; }
  size_t pixel_bytes() const { return (size_t)channels * bridge::itemsize(dtype); }
  /** Address of pixel (x, y) in the image's own coordinates. */
  uint8_t *at(int x, int y) const {
    return data + (long)(y - bounds.y1) * row_bytes + (long)(x - bounds.x1) * (long)pixel_bytes();
  }
};

/** Reads an image's properties; returns an error text (empty when the image is usable). */
std::string describe_image(const OfxPropertySuiteV1 &props, OfxPropertySetHandle image, OfxImage *out);

/** The protocol's view of an OpenFX image: lowest-addressed row first, stride = −rowBytes
 *  (OpenFX rows go bottom-up, protocol rows top-down). */
bridge::FrameView frame_view(const OfxImage &image);

/** 64-bit fingerprint of the pixels (and size and type), to know whether the engine already
 *  holds this exact frame. */
uint64_t fingerprint(const OfxImage &image);

enum class OutputMode { Restored = 0, BlotchMask = 1, FlickerMap = 2 };

/** Writes `result` (the engine's frame for `source`) into `output` over `window`, in the
 *  output's coordinates. Mask and flicker views fill the colour channels; alpha, if any, is
 *  the source's. Pixels of the window outside the source are set to zero. */
void write_result(const bridge::FrameView &result, OutputMode mode, const OfxImage &source,
                  const OfxImage &output, const OfxRectI &window);

/** Copies `source` into `output` over `window` (identity renders and pass-through). */
void copy_image(const OfxImage &source, const OfxImage &output, const OfxRectI &window);

}  // namespace plugin
}  // namespace dfdb
