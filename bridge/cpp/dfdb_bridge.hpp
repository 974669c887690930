// C++ client of the dfdb engine wire protocol (bridge/PROTOCOL.md, protocol 1):
// length-prefixed msgpack maps over a Unix socket (or loopback TCP), pixels inline or through
// POSIX shared memory. Every blocking call has a deadline; no call throws anything but
// dfdb::bridge::Error.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace dfdb {
namespace bridge {

constexpr int kProtocolVersion = 1;
constexpr uint32_t kMaxMessage = 268435456;  // bytes, both directions (PROTOCOL.md §2)

/** Why a call failed; `code` is the engine's error code for kind Remote. */
class Error : public std::runtime_error {
 public:
  enum class Kind { Address, Connect, Timeout, Transport, Protocol, Remote, Aborted, Resource };
  Error(Kind kind, const std::string &message, std::string code = "")
      : std::runtime_error(message), kind_(kind), code_(std::move(code)) {}
  Kind kind() const { return kind_; }
  const std::string &code() const { return code_; }

 private:
  Kind kind_;
  std::string code_;
};

// ------------------------------------------------------------------ msgpack values

/** One msgpack value; maps keep their keys (str only, as the protocol requires) in order. */
class Value {
 public:
  enum class Kind { Nil, Bool, Int, Float, Str, Bin, Array, Map };

  Value() = default;
  static Value boolean(bool v);
  static Value integer(int64_t v);
  static Value real(double v);
  static Value str(std::string v);
  static Value bin(std::string bytes);
  static Value array(std::vector<Value> items = {});
  static Value map();

  Kind kind() const { return kind_; }
  bool is(Kind k) const { return kind_ == k; }

  /** Adds (or replaces) a key of a map; returns *this for chaining. */
  Value &set(const std::string &key, Value value);
  /** Appends to an array. */
  Value &push(Value value);
  /** The value under `key` of a map, or null when absent or not a map. */
  const Value *find(const std::string &key) const;

  // Typed reads; throw Error(Protocol) naming `what` when the kind does not match.
  int64_t as_int(const char *what) const;
  double as_number(const char *what) const;
  bool as_bool(const char *what) const;
  const std::string &as_str(const char *what) const;
  const std::string &as_bin(const char *what) const;
  const std::vector<Value> &as_array(const char *what) const;
  const std::vector<std::pair<std::string, Value>> &as_map(const char *what) const;

  /** Required field of a map: throws Error(Protocol) when missing. */
  const Value &at(const std::string &key) const;

 private:
  Kind kind_ = Kind::Nil;
  bool b_ = false;
  int64_t i_ = 0;
  double f_ = 0.0;
  std::string s_;  // Str and Bin bytes
  std::vector<Value> items_;
  std::vector<std::pair<std::string, Value>> fields_;
};

/** Serialises a value to msgpack bytes. */
std::string pack(const Value &value);
/** Parses exactly one msgpack value filling `size` bytes; throws Error(Protocol) otherwise. */
Value unpack(const uint8_t *data, size_t size);

// ------------------------------------------------------------------ addresses

struct Address {
  bool is_unix = true;
  std::string path;  // Unix socket path
  std::string host;  // loopback host for TCP
  int port = 0;
  std::string text() const;
};

/** Parses "unix:///abs/path", "tcp://127.0.0.1:PORT" (loopback only) or a bare absolute path. */
Address parse_address(const std::string &text);
/** The per-user default address (PROTOCOL.md §1.1): $DFDB_ENGINE_ADDRESS, then the socket in
 *  $XDG_RUNTIME_DIR/dfdb, then /tmp/dfdb-<uid>. */
std::string default_address();

// ------------------------------------------------------------------ connection

/** Returns true when the caller wants to give up waiting (e.g. the host aborted a render). */
using CancelCheck = std::function<bool()>;

/** One socket to the engine, after a successful hello. Not shareable between threads. */
class Connection {
 public:
  struct Info {
    std::string engine;
    std::vector<std::string> capabilities;
    std::vector<std::string> devices;
    uint64_t max_message = kMaxMessage, max_window = 116, max_pixels = 0;
    bool has(const std::string &capability) const;
  };

  /** Connects and says hello; `client` names the program (≤ 256 chars). */
  static std::unique_ptr<Connection> open(const Address &address, const std::string &client,
                                          int timeout_ms);
  ~Connection();
  Connection(const Connection &) = delete;
  Connection &operator=(const Connection &) = delete;

  const Info &info() const { return info_; }
  /** Next request id on this connection. */
  uint64_t next_id() { return ++last_id_; }
  /** Sends one request and waits for the reply with the same id. An `error` reply throws
   *  Error(Remote) carrying the engine's code. After any other failure the connection is
   *  unusable (`broken()` is true). */
  Value call(const Value &request, int timeout_ms, const CancelCheck &cancelled = {});
  bool broken() const { return fd_ < 0; }

 private:
  explicit Connection(int fd) : fd_(fd) {}
  void send(const std::string &body, long long deadline_ms, const CancelCheck &cancelled);
  Value receive(long long deadline_ms, const CancelCheck &cancelled);
  void read_exact(uint8_t *data, size_t size, long long deadline_ms, const CancelCheck &cancelled);
  void fail_and_close();
  int fd_;
  uint64_t last_id_ = 0;
  Info info_;
};

// ------------------------------------------------------------------ shared memory

/** A POSIX shared-memory segment this process created, owns and unlinks (PROTOCOL.md §4). */
class SharedMemory {
 public:
  explicit SharedMemory(size_t size);
  ~SharedMemory();
  SharedMemory(const SharedMemory &) = delete;
  SharedMemory &operator=(const SharedMemory &) = delete;
  const std::string &name() const { return name_; }
  uint8_t *data() const { return data_; }
  size_t size() const { return size_; }

 private:
  std::string name_;
  uint8_t *data_ = nullptr;
  size_t size_ = 0;
};

// ------------------------------------------------------------------ frames and process

enum class Dtype { U8, U16, F32 };
const char *dtype_name(Dtype dtype);
size_t itemsize(Dtype dtype);
/** Parses "u8" / "u16" / "f32"; throws Error(Protocol) otherwise. */
Dtype parse_dtype(const std::string &name);

/** Pixels in memory as the protocol describes them: `base` is the lowest-addressed row;
 *  stride > 0 means that row is the top row, stride < 0 that it is the bottom row. */
struct FrameView {
  const uint8_t *base = nullptr;
  int width = 0, height = 0, channels = 0;
  Dtype dtype = Dtype::U8;
  long stride = 0;
  size_t row_bytes() const { return (size_t)width * channels * itemsize(dtype); }
  /** Bytes from `base` to the end of the last row. */
  size_t span() const;
  /** Start of image row y (0 = top). */
  const uint8_t *row(int y) const;
};

/** A frame of the window: its time, its pixels, and whether the engine is believed to hold it
 *  already (then only a reference is sent unless the engine asks for it). */
struct WindowFrame {
  int64_t time = 0;
  FrameView view;
  bool held = false;
};

struct ProcessRequest {
  std::string clip;
  int64_t target = 0;
  std::vector<WindowFrame> frames;
  Value params = Value::map();
  std::vector<std::string> outputs{"image"};
  /** Frames of the window after the target that the engine restores in the same solve and
   *  keeps for the requests to come (PROTOCOL.md 3.3.5); 0 = the target alone. */
  int ahead = 0;
};

/** The reply of a process call; views point into memory owned by this object or by the
 *  client's output segment, valid until the client's next call and while this object is
 *  neither moved nor destroyed. */
struct ProcessResult {
  Value reply;
  FrameView image, mask, flicker;
  Value stats;
  /** Times the engine asked for again (`need`) while serving this call. */
  std::vector<int64_t> resent;
};

/** Options of a Client; all times in milliseconds. */
struct ClientOptions {
  std::string client_name = "dfdb-bridge-cpp";
  int connect_timeout_ms = 3000;
  int request_timeout_ms = 120000;
  size_t shm_min_bytes = 16384;  // frames at least this large go through shared memory
};

/** A connection plus the shared-memory segments it uses for frames. */
class Client {
 public:
  /** Connects to `address` (throws Error(Connect) when nothing answers). */
  Client(const Address &address, ClientOptions options = {});
  const Connection::Info &info() const { return connection_->info(); }
  bool broken() const { return connection_->broken(); }

  /** ping → {queued, running, clips}. */
  Value ping(const CancelCheck &cancelled = {});
  /** Restores request.target, attaching frames the engine asks for (`need`) until it answers;
   *  the reply lands in `result`. */
  void process(const ProcessRequest &request, ProcessResult &result,
               const CancelCheck &cancelled = {});
  void close_clip(const std::string &clip);
  void shutdown();

 private:
  Value frame_desc(const FrameView &view, size_t *shm_offset);
  Value build_process(const ProcessRequest &request, const std::vector<bool> &attach);
  FrameView read_frame(const Value &desc, const char *what) const;
  void ensure_segments(const ProcessRequest &request);
  Value call(Value request, const CancelCheck &cancelled);

  ClientOptions options_;
  std::unique_ptr<Connection> connection_;
  bool use_shm_ = false;
  std::unique_ptr<SharedMemory> in_, out_;
};

}  // namespace bridge
}  // namespace dfdb
