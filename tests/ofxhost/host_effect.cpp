// The image-effect, memory, multi-thread and message suites, and the images the host hands out.
#include "host.hpp"

#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <thread>

std::string ClipData::depth() const {
  return bytes_per_component == 1   ? kOfxBitDepthByte
         : bytes_per_component == 2 ? kOfxBitDepthShort
                                    : kOfxBitDepthFloat;
}

std::string ClipData::components() const {
  return channels == 4 ? kOfxImageComponentRGBA : kOfxImageComponentRGB;
}

OfxImageClipStruct *OfxImageEffectStruct::clip(const std::string &name) {
  for (auto &c : clips)
    if (c->name == name) return c.get();
  return nullptr;
}

RenderContext *&current_render() {
  thread_local RenderContext *context = nullptr;
  return context;
}

std::atomic<int> &live_images() {
  static std::atomic<int> count{0};
  return count;
}

void emit(const std::string &line) {
  static std::mutex out;
  std::lock_guard<std::mutex> guard(out);
  std::cout << line << std::endl;
}

std::vector<uint8_t> HostImage::top_first() const {
  size_t row = (size_t)width * channels * bytes_per_component;
  std::vector<uint8_t> packed(row * height);
  for (int i = 0; i < height; ++i) {
    const uint8_t *src = origin + (long)(height - 1 - i) * row_bytes;
    std::memcpy(packed.data() + row * i, src, row);
  }
  return packed;
}

namespace {

int scaled(int size, double scale) { return (int)std::ceil(size * scale - 1e-9); }

/** Allocates the storage and sets every image property except the data's content. */
std::unique_ptr<HostImage> blank_image(const ClipData &like, int width, int height,
                                       const Layout &layout, uint8_t fill) {
  auto image = std::make_unique<HostImage>();
  image->width = width;
  image->height = height;
  image->channels = like.channels;
  image->bytes_per_component = like.bytes_per_component;
  long stride = (long)width * like.channels * like.bytes_per_component + layout.pad;
  image->storage.assign((size_t)stride * height, fill);
  if (layout.bottom_up) {
    image->row_bytes = stride;
    image->origin = image->storage.data();
  } else {
    image->row_bytes = -stride;
    image->origin = image->storage.data() + (size_t)stride * (height - 1);
  }
  image->set_string(kOfxPropType, {kOfxTypeImage});
  image->set_string(kOfxImageEffectPropPixelDepth, {like.depth()});
  image->set_string(kOfxImageEffectPropComponents, {like.components()});
  image->set_string(kOfxImageEffectPropPreMultiplication,
                    {like.channels == 4 ? kOfxImageUnPreMultiplied : kOfxImageOpaque});
  image->set_double(kOfxImageEffectPropRenderScale, {layout.scale, layout.scale});
  image->set_double(kOfxImagePropPixelAspectRatio, {1.0});
  image->set_pointer(kOfxImagePropData, image->origin);
  image->set_int(kOfxImagePropBounds, {0, 0, width, height});
  image->set_int(kOfxImagePropRegionOfDefinition, {0, 0, width, height});
  image->set_int(kOfxImagePropRowBytes, {(int)image->row_bytes});
  image->set_string(kOfxImagePropField, {kOfxImageFieldNone});
  return image;
}

/** Picks the nearest source pixel of a proxy-scale pixel, as a simple proxy render does. */
int source_index(int scaled_index, double scale, int size) {
  int index = (int)std::floor((scaled_index + 0.5) / scale);
  return index < size ? index : size - 1;
}

}  // namespace

std::unique_ptr<HostImage> make_image(const ClipData &data, int index, const Layout &layout,
                                      const std::string &premult) {
  int width = scaled(data.width, layout.scale), height = scaled(data.height, layout.scale);
  auto image = blank_image(data, width, height, layout, 0xA5);
  image->set_string(kOfxImageEffectPropPreMultiplication, {premult});
  image->set_string(kOfxImagePropUniqueIdentifier, {"frame-" + std::to_string(index)});
  size_t pixel = (size_t)data.channels * data.bytes_per_component;
  const std::vector<uint8_t> &frame = data.pixels[index];
  for (int i = 0; i < height; ++i) {
    int src_row = source_index(i, layout.scale, data.height);
    uint8_t *dst = image->origin + (long)(height - 1 - i) * image->row_bytes;
    if (layout.scale == 1.0) {
      std::memcpy(dst, frame.data() + pixel * (size_t)src_row * data.width, pixel * width);
      continue;
    }
    for (int x = 0; x < width; ++x) {
      int src_col = source_index(x, layout.scale, data.width);
      std::memcpy(dst + pixel * x, frame.data() + pixel * ((size_t)src_row * data.width + src_col),
                  pixel);
    }
  }
  return image;
}

std::unique_ptr<HostImage> make_output(const ClipData &like, int width, int height,
                                       const Layout &layout) {
  // Filled with a pattern so that pixels the plug-in forgets to write are visible.
  auto image = blank_image(like, width, height, layout, 0xCD);
  image->set_string(kOfxImagePropUniqueIdentifier, {"output"});
  return image;
}

namespace {

std::mutex registry_lock;
std::map<OfxPropertySetStruct *, std::shared_ptr<HostImage>> registry;

OfxPropertySetHandle hand_out(std::shared_ptr<HostImage> image) {
  std::lock_guard<std::mutex> guard(registry_lock);
  OfxPropertySetHandle handle = image.get();
  registry[handle] = std::move(image);
  ++live_images();
  return handle;
}

OfxStatus getPropertySet(OfxImageEffectHandle effect, OfxPropertySetHandle *props) {
  if (!effect) return kOfxStatErrBadHandle;
  if (!props) return kOfxStatErrValue;
  *props = &effect->props;
  return kOfxStatOK;
}

OfxStatus getParamSet(OfxImageEffectHandle effect, OfxParamSetHandle *params) {
  if (!effect) return kOfxStatErrBadHandle;
  if (!params) return kOfxStatErrValue;
  *params = &effect->params;
  return kOfxStatOK;
}

OfxStatus clipDefine(OfxImageEffectHandle effect, const char *name, OfxPropertySetHandle *props) {
  if (!effect) return kOfxStatErrBadHandle;
  if (!name) return kOfxStatErrValue;
  if (effect->clip(name)) return kOfxStatErrExists;
  auto clip = std::make_unique<OfxImageClipStruct>();
  clip->name = name;
  clip->owner = effect;
  clip->props.set_string(kOfxPropType, {kOfxTypeClip});
  clip->props.set_string(kOfxPropName, {name});
  clip->props.set_int(kOfxImageEffectPropTemporalClipAccess, {0});
  clip->props.set_int(kOfxImageClipPropOptional, {0});
  clip->props.set_int(kOfxImageEffectPropSupportsTiles, {1});
  if (props) *props = &clip->props;
  effect->clips.push_back(std::move(clip));
  return kOfxStatOK;
}

OfxStatus clipGetHandle(OfxImageEffectHandle effect, const char *name, OfxImageClipHandle *clip,
                        OfxPropertySetHandle *props) {
  if (!effect) return kOfxStatErrBadHandle;
  if (!name || !clip) return kOfxStatErrValue;
  OfxImageClipStruct *found = effect->clip(name);
  if (!found) return kOfxStatErrUnknown;
  *clip = found;
  if (props) *props = &found->props;
  return kOfxStatOK;
}

OfxStatus clipGetPropertySet(OfxImageClipHandle clip, OfxPropertySetHandle *props) {
  if (!clip) return kOfxStatErrBadHandle;
  if (!props) return kOfxStatErrValue;
  *props = &clip->props;
  return kOfxStatOK;
}

OfxStatus clipGetImage(OfxImageClipHandle clip, OfxTime time, const OfxRectD *,
                       OfxPropertySetHandle *image) {
  if (!clip || !clip->owner) return kOfxStatErrBadHandle;
  if (!image) return kOfxStatErrValue;
  RenderContext *render = current_render();
  OfxImageEffectStruct *effect = clip->owner;
  if (!render || !effect->source) return kOfxStatFailed;
  if (clip->name == kOfxImageEffectOutputClipName) {
    if (time != render->render_time || !render->output) return kOfxStatFailed;
    *image = hand_out(render->output);
    return kOfxStatOK;
  }
  // Temporal access is granted only for the frames the plug-in said it needs.
  if (time < render->first_needed || time > render->last_needed) {
    emit("# refused image at t=" + std::to_string(time) + " outside the frames needed");
    return kOfxStatFailed;
  }
  int index = (int)std::lround(time);
  if (std::fabs(time - index) > 1e-9 || index < 0 || index >= effect->source->frames)
    return kOfxStatFailed;
  std::string premult = clip->props.get_string(kOfxImageEffectPropPreMultiplication, 0,
                                               kOfxImageOpaque);
  *image = hand_out(make_image(*effect->source, index, effect->layout, premult));
  return kOfxStatOK;
}

OfxStatus clipReleaseImage(OfxPropertySetHandle image) {
  std::lock_guard<std::mutex> guard(registry_lock);
  auto it = registry.find(image);
  if (it == registry.end()) return kOfxStatErrBadHandle;
  registry.erase(it);
  --live_images();
  return kOfxStatOK;
}

OfxStatus clipGetRegionOfDefinition(OfxImageClipHandle clip, OfxTime, OfxRectD *bounds) {
  if (!clip || !clip->owner) return kOfxStatErrBadHandle;
  if (!bounds) return kOfxStatErrValue;
  const ClipData *data = clip->owner->source.get();
  if (!data) return kOfxStatFailed;
  *bounds = OfxRectD{0.0, 0.0, (double)data->width, (double)data->height};
  return kOfxStatOK;
}

int abortRender(OfxImageEffectHandle) { return 0; }

}  // namespace

struct OfxImageMemoryStruct {
  std::vector<uint8_t> bytes;
  int locks = 0;
};

namespace {

OfxStatus imageMemoryAlloc(OfxImageEffectHandle, size_t size, OfxImageMemoryHandle *memory) {
  if (!memory) return kOfxStatErrValue;
  auto *block = new OfxImageMemoryStruct;
  block->bytes.resize(size);
  *memory = block;
  return kOfxStatOK;
}

OfxStatus imageMemoryFree(OfxImageMemoryHandle memory) {
  if (!memory) return kOfxStatErrBadHandle;
  delete memory;
  return kOfxStatOK;
}

OfxStatus imageMemoryLock(OfxImageMemoryHandle memory, void **pointer) {
  if (!memory) return kOfxStatErrBadHandle;
  if (!pointer) return kOfxStatErrValue;
  ++memory->locks;
  *pointer = memory->bytes.data();
  return kOfxStatOK;
}

OfxStatus imageMemoryUnlock(OfxImageMemoryHandle memory) {
  if (!memory) return kOfxStatErrBadHandle;
  if (memory->locks > 0) --memory->locks;
  return kOfxStatOK;
}

// ---------------------------------------------------------------- memory suite

OfxStatus memoryAlloc(void *, size_t size, void **data) {
  if (!data) return kOfxStatErrValue;
  *data = std::malloc(size ? size : 1);
  return *data ? kOfxStatOK : kOfxStatErrMemory;
}

OfxStatus memoryFree(void *data) {
  std::free(data);
  return kOfxStatOK;
}

// ---------------------------------------------------------------- multi-thread suite

thread_local unsigned int thread_index = 0;
thread_local bool spawned = false;

OfxStatus multiThread(OfxThreadFunctionV1 func, unsigned int count, void *arg) {
  if (!func) return kOfxStatErrValue;
  if (spawned) return kOfxStatErrExists;
  std::vector<std::thread> threads;
  for (unsigned int k = 0; k < count; ++k)
    threads.emplace_back([=] {
      thread_index = k;
      spawned = true;
      func(k, count, arg);
    });
  for (auto &t : threads) t.join();
  return kOfxStatOK;
}

OfxStatus multiThreadNumCPUs(unsigned int *count) {
  if (!count) return kOfxStatErrValue;
  unsigned int n = std::thread::hardware_concurrency();
  *count = n ? n : 1;
  return kOfxStatOK;
}

OfxStatus multiThreadIndex(unsigned int *index) {
  if (!index) return kOfxStatErrValue;
  *index = thread_index;
  return kOfxStatOK;
}

int multiThreadIsSpawnedThread() { return spawned ? 1 : 0; }

}  // namespace

struct OfxMutex {
  std::recursive_mutex m;
};

namespace {

OfxStatus mutexCreate(OfxMutexHandle *mutex, int lock_count) {
  if (!mutex) return kOfxStatErrValue;
  auto *created = new OfxMutex;
  for (int k = 0; k < lock_count; ++k) created->m.lock();
  *mutex = created;
  return kOfxStatOK;
}

OfxStatus mutexDestroy(const OfxMutexHandle mutex) {
  if (!mutex) return kOfxStatErrBadHandle;
  delete mutex;
  return kOfxStatOK;
}

OfxStatus mutexLock(const OfxMutexHandle mutex) {
  if (!mutex) return kOfxStatErrBadHandle;
  mutex->m.lock();
  return kOfxStatOK;
}

OfxStatus mutexUnLock(const OfxMutexHandle mutex) {
  if (!mutex) return kOfxStatErrBadHandle;
  mutex->m.unlock();
  return kOfxStatOK;
}

OfxStatus mutexTryLock(const OfxMutexHandle mutex) {
  if (!mutex) return kOfxStatErrBadHandle;
  return mutex->m.try_lock() ? kOfxStatOK : kOfxStatFailed;
}

// ---------------------------------------------------------------- message suite

OfxStatus message(void *, const char *type, const char *id, const char *format, ...) {
  if (!type || !format) return kOfxStatErrValue;
  char text[2048];
  va_list args;
  va_start(args, format);
  std::vsnprintf(text, sizeof text, format, args);
  va_end(args);
  for (char *c = text; *c; ++c)
    if (*c == '\n') *c = ' ';
  emit(std::string("! ") + type + " " + (id && *id ? id : "-") + " " + text);
  return kOfxStatOK;
}

}  // namespace

const OfxImageEffectSuiteV1 kHostImageEffectSuite = {
    getPropertySet,   getParamSet,     clipDefine,      clipGetHandle,
    clipGetPropertySet, clipGetImage,  clipReleaseImage, clipGetRegionOfDefinition,
    abortRender,      imageMemoryAlloc, imageMemoryFree, imageMemoryLock,
    imageMemoryUnlock,
};

const OfxMemorySuiteV1 kHostMemorySuite = {memoryAlloc, memoryFree};

const OfxMultiThreadSuiteV1 kHostMultiThreadSuite = {
    multiThread, multiThreadNumCPUs, multiThreadIndex, multiThreadIsSpawnedThread,
    mutexCreate, mutexDestroy,       mutexLock,        mutexUnLock,
    mutexTryLock,
};

const OfxMessageSuiteV1 kHostMessageSuite = {message};
