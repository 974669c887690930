#include "pixels.hpp"

#include <algorithm>
#include <cstring>

namespace dfdb {
namespace plugin {

std::string describe_image(const OfxPropertySuiteV1 &props, OfxPropertySetHandle image, OfxImage *out) {
  void *data = nullptr;
  int bounds[4] = {0, 0, 0, 0};
  int row_bytes = 0;
  char *depth = nullptr, *components = nullptr;
  if (props.propGetPointer(image, kOfxImagePropData, 0, &data) != kOfxStatOK || !data)
    return "the host gave an image without data";
  if (props.propGetIntN(image, kOfxImagePropBounds, 4, bounds) != kOfxStatOK ||
      props.propGetInt(image, kOfxImagePropRowBytes, 0, &row_bytes) != kOfxStatOK ||
      props.propGetString(image, kOfxImageEffectPropPixelDepth, 0, &depth) != kOfxStatOK ||
      props.propGetString(image, kOfxImageEffectPropComponents, 0, &components) != kOfxStatOK)
    return "the host gave an image without bounds, row bytes, depth or components";
  std::string d = depth, c = components;
  if (d == kOfxBitDepthByte) out->dtype = bridge::Dtype::U8;
  else if (d == kOfxBitDepthShort) out->dtype = bridge::Dtype::U16;
  else if (d == kOfxBitDepthFloat) out->dtype = bridge::Dtype::F32;
  else return "unsupported pixel depth " + d;
  if (c == kOfxImageComponentRGBA) out->channels = 4;
  else if (c == kOfxImageComponentRGB) out->channels = 3;
  else return "unsupported components " + c + " (RGB or RGBA only)";
  out->data = static_cast<uint8_t *>(data);
  out->bounds = OfxRectI{bounds[0], bounds[1], bounds[2], bounds[3]};
  out->row_bytes = row_bytes;
  if (out->width() <= 0 || out->height() <= 0) return "the host gave an empty image";
  long magnitude = row_bytes < 0 ? -(long)row_bytes : (long)row_bytes;
  if ((size_t)magnitude < (size_t)out->width() * out->pixel_bytes())
    return "the host gave an image whose row bytes are smaller than a row";
  return "";
}

bridge::FrameView frame_view(const OfxImage &image) {
  bridge::FrameView view;
  view.width = image.width();
  view.height = image.height();
  view.channels = image.channels;
  view.dtype = image.dtype;
  view.stride = -image.row_bytes;
  view.base = image.row_bytes > 0 ? image.data : image.data + (long)(image.height() - 1) * image.row_bytes;
  return view;
}

namespace {

/** One round of a multiply-xorshift mixer: cheap, and every input bit reaches every output bit. */
inline uint64_t mix(uint64_t h, uint64_t v) {
  h ^= v;
  h *= 0xFF51AFD7ED558CCDull;
  return h ^ (h >> 29);
}

}  // namespace

uint64_t fingerprint(const OfxImage &image) {
  // Four independent lanes over 32-byte blocks keep the multiplier busy (several GB/s).
  uint64_t lane[4] = {0x9E3779B97F4A7C15ull, 0xC2B2AE3D27D4EB4Full, 0x165667B19E3779F9ull,
                      0x27D4EB2F165667C5ull};
  lane[0] = mix(lane[0], (uint64_t)image.width() << 32 | (uint32_t)image.height());
  lane[1] = mix(lane[1], (uint64_t)image.channels << 8 | (uint64_t)image.dtype);
  size_t row = (size_t)image.width() * image.pixel_bytes();
  for (int y = image.bounds.y1; y < image.bounds.y2; ++y) {
    const uint8_t *p = image.at(image.bounds.x1, y);
    size_t n = 0;
    for (; n + 32 <= row; n += 32) {
      uint64_t w[4];
      std::memcpy(w, p + n, 32);
      for (int k = 0; k < 4; ++k) lane[k] = mix(lane[k], w[k]);
    }
    uint64_t tail[4] = {0, 0, 0, 0};
    std::memcpy(tail, p + n, row - n);
    for (int k = 0; k < 4; ++k) lane[k] = mix(lane[k], tail[k] ^ (uint64_t)y);
  }
  uint64_t h = lane[0];
  for (int k = 1; k < 4; ++k) h = mix(h, lane[k]);
  return h;
}

namespace {

OfxRectI intersect(const OfxRectI &a, const OfxRectI &b) {
  OfxRectI r{std::max(a.x1, b.x1), std::max(a.y1, b.y1), std::min(a.x2, b.x2), std::min(a.y2, b.y2)};
  if (r.x2 < r.x1) r.x2 = r.x1;
  if (r.y2 < r.y1) r.y2 = r.y1;
  return r;
}

/** Zeroes the window's pixels that `covered` does not reach. */
void clear_outside(const OfxImage &output, const OfxRectI &window, const OfxRectI &covered) {
  OfxRectI area = intersect(window, output.bounds);
  for (int y = area.y1; y < area.y2; ++y)
    for (int x = area.x1; x < area.x2; ++x)
      if (x < covered.x1 || x >= covered.x2 || y < covered.y1 || y >= covered.y2)
        std::memset(output.at(x, y), 0, output.pixel_bytes());
}

}  // namespace

void copy_image(const OfxImage &source, const OfxImage &output, const OfxRectI &window) {
  OfxRectI area = intersect(intersect(window, output.bounds), source.bounds);
  clear_outside(output, window, area);
  size_t bytes = (size_t)(area.x2 - area.x1) * output.pixel_bytes();
  for (int y = area.y1; y < area.y2; ++y) std::memcpy(output.at(area.x1, y), source.at(area.x1, y), bytes);
}

void write_result(const bridge::FrameView &result, OutputMode mode, const OfxImage &source,
                  const OfxImage &output, const OfxRectI &window) {
  OfxRectI area = intersect(intersect(window, output.bounds), source.bounds);
  clear_outside(output, window, area);
  size_t item = bridge::itemsize(output.dtype);
  size_t pixel = output.pixel_bytes();
  for (int y = area.y1; y < area.y2; ++y) {
    // Result row 0 is the top row of the source image.
    const uint8_t *row = result.row(source.bounds.y2 - 1 - y);
    uint8_t *dst = output.at(area.x1, y);
    const uint8_t *src = source.at(area.x1, y);
    int first = area.x1 - source.bounds.x1;
    if (mode == OutputMode::Restored) {
      std::memcpy(dst, row + (size_t)first * pixel, (size_t)(area.x2 - area.x1) * pixel);
      continue;
    }
    for (int x = 0; x < area.x2 - area.x1; ++x) {
      uint8_t *d = dst + (size_t)x * pixel;
      if (mode == OutputMode::BlotchMask) {
        const uint8_t *m = row + (size_t)(first + x) * item;
        for (int c = 0; c < 3; ++c) std::memcpy(d + c * item, m, item);
      } else {
        std::memcpy(d, row + (size_t)(first + x) * 3 * item, 3 * item);
      }
      if (output.channels == 4) std::memcpy(d + 3 * item, src + (size_t)x * pixel + 3 * item, item);
    }
  }
}

}  // namespace plugin
}  // namespace dfdb
