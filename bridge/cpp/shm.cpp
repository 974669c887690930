// POSIX shared-memory segments owned by the client (created O_EXCL, mode 0600, unlinked on
// destruction), and the pixel-layout helpers of FrameView.
#include "dfdb_bridge.hpp"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

namespace dfdb {
namespace bridge {

namespace {
std::atomic<unsigned> segment_counter{0};
}

SharedMemory::SharedMemory(size_t size) : size_(size ? size : 1) {
  int fd = -1;
  for (int attempt = 0; attempt < 16 && fd < 0; ++attempt) {
    name_ = "/dfdb-" + std::to_string(getpid()) + "-" + std::to_string(segment_counter++);
    fd = shm_open(name_.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
    if (fd < 0 && errno != EEXIST) break;
  }
  if (fd < 0)
    throw Error(Error::Kind::Resource, "cannot create shared memory: " + std::string(std::strerror(errno)));
  if (ftruncate(fd, (off_t)size_) != 0) {
    int err = errno;
    ::close(fd);
    shm_unlink(name_.c_str());
    throw Error(Error::Kind::Resource, "cannot size shared memory: " + std::string(std::strerror(err)));
  }
  void *mapped = mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  int err = errno;
  ::close(fd);
  if (mapped == MAP_FAILED) {
    shm_unlink(name_.c_str());
    throw Error(Error::Kind::Resource, "cannot map shared memory: " + std::string(std::strerror(err)));
  }
  data_ = static_cast<uint8_t *>(mapped);
}

SharedMemory::~SharedMemory() {
  munmap(data_, size_);
  shm_unlink(name_.c_str());
}

const char *dtype_name(Dtype dtype) {
  switch (dtype) {
    case Dtype::U8: return "u8";
    case Dtype::U16: return "u16";
    default: return "f32";
  }
}

size_t itemsize(Dtype dtype) {
  switch (dtype) {
    case Dtype::U8: return 1;
    case Dtype::U16: return 2;
    default: return 4;
  }
}

Dtype parse_dtype(const std::string &name) {
  if (name == "u8") return Dtype::U8;
  if (name == "u16") return Dtype::U16;
  if (name == "f32") return Dtype::F32;
  throw Error(Error::Kind::Protocol, "engine reply: unknown dtype '" + name + "'");
}

size_t FrameView::span() const {
  if (height <= 0) return 0;
  size_t step = (size_t)(stride < 0 ? -stride : stride);
  return step * (size_t)(height - 1) + row_bytes();
}

const uint8_t *FrameView::row(int y) const {
  size_t step = (size_t)(stride < 0 ? -stride : stride);
  size_t index = stride > 0 ? (size_t)y : (size_t)(height - 1 - y);
  return base + step * index;
}

}  // namespace bridge
}  // namespace dfdb
