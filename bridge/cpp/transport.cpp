// Addresses, sockets and framing: a 4-byte big-endian length, then one msgpack map.
#include "dfdb_bridge.hpp"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>

#ifndef MSG_NOSIGNAL  // macOS: SIGPIPE is turned off per socket instead (SO_NOSIGPIPE)
#define MSG_NOSIGNAL 0
#endif
#ifndef SOCK_CLOEXEC  // macOS: close-on-exec is set with fcntl after socket()
#define SOCK_CLOEXEC 0
#endif

namespace dfdb {
namespace bridge {

namespace {

long long now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
}

std::string env(const char *name) {
  const char *value = std::getenv(name);
  return value ? std::string(value) : std::string();
}

bool is_loopback_host(const std::string &host) {
  return host == "127.0.0.1" || host == "::1" || host == "localhost";
}

}  // namespace

std::string Address::text() const {
  if (is_unix) return "unix://" + path;
  if (host.find(':') != std::string::npos) return "tcp://[" + host + "]:" + std::to_string(port);
  return "tcp://" + host + ":" + std::to_string(port);
}

Address parse_address(const std::string &text) {
  Address out;
  if (text.rfind("unix://", 0) == 0 || (!text.empty() && text[0] == '/')) {
    out.is_unix = true;
    out.path = text[0] == '/' ? text : text.substr(7);
    if (out.path.empty() || out.path[0] != '/')
      throw Error(Error::Kind::Address, "engine address '" + text + "': the socket path must be absolute");
    if (out.path.size() >= sizeof(sockaddr_un{}.sun_path))
      throw Error(Error::Kind::Address, "engine address '" + text + "': socket path too long");
    return out;
  }
  if (text.rfind("tcp://", 0) == 0) {
    std::string rest = text.substr(6);
    std::string host, port;
    if (!rest.empty() && rest[0] == '[') {
      size_t close = rest.find(']');
      if (close == std::string::npos || close + 1 >= rest.size() || rest[close + 1] != ':')
        throw Error(Error::Kind::Address, "engine address '" + text + "': expected tcp://[HOST]:PORT");
      host = rest.substr(1, close - 1);
      port = rest.substr(close + 2);
    } else {
      size_t colon = rest.rfind(':');
      if (colon == std::string::npos)
        throw Error(Error::Kind::Address, "engine address '" + text + "': expected tcp://HOST:PORT");
      host = rest.substr(0, colon);
      port = rest.substr(colon + 1);
    }
    if (!is_loopback_host(host))
      throw Error(Error::Kind::Address, "engine address '" + text + "': only loopback TCP is allowed");
    char *end = nullptr;
    long number = std::strtol(port.c_str(), &end, 10);
    if (port.empty() || *end || number < 1 || number > 65535)
      throw Error(Error::Kind::Address, "engine address '" + text + "': bad port");
    out.is_unix = false;
    out.host = host;
    out.port = (int)number;
    return out;
  }
  throw Error(Error::Kind::Address,
              "engine address '" + text + "': expected unix:///path or tcp://127.0.0.1:PORT");
}

std::string default_address() {
  std::string explicit_address = env("DFDB_ENGINE_ADDRESS");
  if (!explicit_address.empty()) return explicit_address;
  std::string runtime = env("XDG_RUNTIME_DIR");
  if (!runtime.empty() && runtime[0] == '/') return "unix://" + runtime + "/dfdb/engine.sock";
  return "unix:///tmp/dfdb-" + std::to_string(getuid()) + "/engine.sock";
}

bool Connection::Info::has(const std::string &capability) const {
  for (auto &c : capabilities)
    if (c == capability) return true;
  return false;
}

namespace {

/** Waits until fd is ready for `events`; throws on deadline or cancellation. */
void wait_ready(int fd, short events, long long deadline_ms, const CancelCheck &cancelled,
                const char *what) {
  for (;;) {
    long long left = deadline_ms - now_ms();
    if (left <= 0) throw Error(Error::Kind::Timeout, std::string("timed out ") + what);
    if (cancelled && cancelled()) throw Error(Error::Kind::Aborted, std::string("cancelled ") + what);
    pollfd p{fd, events, 0};
    int slice = (int)(left < 100 ? left : 100);  // wake up to check for cancellation
    int n = ::poll(&p, 1, slice);
    if (n > 0) return;
    if (n < 0 && errno != EINTR)
      throw Error(Error::Kind::Transport, std::string("poll failed ") + what + ": " + std::strerror(errno));
  }
}

/** Non-blocking, close-on-exec (an engine the host spawns must not inherit it), no SIGPIPE. */
int set_nonblocking(int fd) {
  fcntl(fd, F_SETFD, FD_CLOEXEC);
#ifdef SO_NOSIGPIPE
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
#endif
  int flags = fcntl(fd, F_GETFL, 0);
  return flags < 0 ? -1 : fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

/** Starts a non-blocking connect and waits for it to finish within the deadline. */
void connect_within(int fd, const sockaddr *addr, socklen_t len, long long deadline_ms,
                    const std::string &where) {
  if (::connect(fd, addr, len) == 0) return;
  if (errno != EINPROGRESS && errno != EAGAIN)
    throw Error(Error::Kind::Connect, "no engine at " + where + ": " + std::strerror(errno));
  wait_ready(fd, POLLOUT, deadline_ms, {}, ("connecting to " + where).c_str());
  int err = 0;
  socklen_t err_len = sizeof err;
  getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &err_len);
  if (err) throw Error(Error::Kind::Connect, "no engine at " + where + ": " + std::strerror(err));
}

int open_unix(const Address &address, long long deadline_ms) {
  struct stat st;
  if (::stat(address.path.c_str(), &st) != 0)
    throw Error(Error::Kind::Connect, "no engine at " + address.text() + ": " + std::strerror(errno));
  if (st.st_uid != geteuid())
    throw Error(Error::Kind::Connect, "engine socket " + address.path + " belongs to another user");
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw Error(Error::Kind::Resource, std::string("socket: ") + std::strerror(errno));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, address.path.c_str(), address.path.size() + 1);
  try {
    if (set_nonblocking(fd) != 0)
      throw Error(Error::Kind::Resource, std::string("fcntl: ") + std::strerror(errno));
    connect_within(fd, reinterpret_cast<sockaddr *>(&addr), sizeof addr, deadline_ms, address.text());
  } catch (...) {
    ::close(fd);
    throw;
  }
  return fd;
}

int open_tcp(const Address &address, long long deadline_ms) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo *found = nullptr;
  std::string port = std::to_string(address.port);
  if (getaddrinfo(address.host.c_str(), port.c_str(), &hints, &found) != 0 || !found)
    throw Error(Error::Kind::Connect, "cannot resolve " + address.text());
  std::string last_error = "no address";
  for (addrinfo *ai = found; ai; ai = ai->ai_next) {
    int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    try {
      set_nonblocking(fd);
      connect_within(fd, ai->ai_addr, ai->ai_addrlen, deadline_ms, address.text());
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      freeaddrinfo(found);
      return fd;
    } catch (const Error &e) {
      last_error = e.what();
      ::close(fd);
    }
  }
  freeaddrinfo(found);
  throw Error(Error::Kind::Connect, last_error);
}

std::string read_token() {
  std::string config = env("XDG_CONFIG_HOME");
  if (config.empty() || config[0] != '/') config = env("HOME") + "/.config";
  std::ifstream in(config + "/dfdb/token");
  std::string token;
  in >> token;
  return token;
}

std::vector<std::string> strings_of(const Value *list) {
  std::vector<std::string> out;
  if (!list || !list->is(Value::Kind::Array)) return out;
  for (const Value &item : list->as_array("list"))
    if (item.is(Value::Kind::Str)) out.push_back(item.as_str("item"));
  return out;
}

uint64_t limit_of(const Value *limits, const char *key, uint64_t fallback) {
  const Value *v = limits ? limits->find(key) : nullptr;
  return v && v->is(Value::Kind::Int) && v->as_int(key) > 0 ? (uint64_t)v->as_int(key) : fallback;
}

}  // namespace

std::unique_ptr<Connection> Connection::open(const Address &address, const std::string &client,
                                             int timeout_ms) {
  long long deadline = now_ms() + timeout_ms;
  int fd = address.is_unix ? open_unix(address, deadline) : open_tcp(address, deadline);
  std::unique_ptr<Connection> conn(new Connection(fd));
  Value hello = Value::map();
  hello.set("op", Value::str("hello"))
      .set("id", Value::integer((int64_t)conn->next_id()))
      .set("protocol", Value::integer(kProtocolVersion))
      .set("client", Value::str(client.substr(0, 256)));
  if (!address.is_unix) hello.set("token", Value::str(read_token()));
  Value reply = conn->call(hello, timeout_ms);
  if (reply.at("op").as_str("op") != "hello")
    throw Error(Error::Kind::Protocol, "engine answered hello with '" + reply.at("op").as_str("op") + "'");
  if (reply.at("protocol").as_int("protocol") != kProtocolVersion)
    throw Error(Error::Kind::Protocol, "engine speaks protocol " +
                                           std::to_string(reply.at("protocol").as_int("protocol")));
  const Value *engine = reply.find("engine");
  conn->info_.engine = engine && engine->is(Value::Kind::Str) ? engine->as_str("engine") : "";
  conn->info_.capabilities = strings_of(reply.find("capabilities"));
  conn->info_.devices = strings_of(reply.find("devices"));
  const Value *limits = reply.find("limits");
  conn->info_.max_message = limit_of(limits, "max_message", kMaxMessage);
  conn->info_.max_window = limit_of(limits, "max_window", 116);
  conn->info_.max_pixels = limit_of(limits, "max_pixels", 0);
  return conn;
}

Connection::~Connection() {
  if (fd_ >= 0) ::close(fd_);
}

void Connection::fail_and_close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void Connection::send(const std::string &body, long long deadline_ms, const CancelCheck &cancelled) {
  if (body.size() > info_.max_message)
    throw Error(Error::Kind::Resource, "request of " + std::to_string(body.size()) +
                                           " bytes exceeds the engine's message limit");
  uint32_t length = htonl((uint32_t)body.size());
  std::string frame(reinterpret_cast<const char *>(&length), 4);
  frame += body;
  size_t sent = 0;
  while (sent < frame.size()) {
    ssize_t n = ::send(fd_, frame.data() + sent, frame.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += (size_t)n;
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      wait_ready(fd_, POLLOUT, deadline_ms, cancelled, "sending to the engine");
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    throw Error(Error::Kind::Transport, std::string("engine connection lost while sending: ") +
                                            (n < 0 ? std::strerror(errno) : "closed"));
  }
}

void Connection::read_exact(uint8_t *data, size_t size, long long deadline_ms,
                            const CancelCheck &cancelled) {
  size_t got = 0;
  while (got < size) {
    ssize_t n = ::recv(fd_, data + got, size - got, 0);
    if (n > 0) {
      got += (size_t)n;
      continue;
    }
    if (n == 0) throw Error(Error::Kind::Transport, "the engine closed the connection");
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      wait_ready(fd_, POLLIN, deadline_ms, cancelled, "waiting for the engine");
      continue;
    }
    if (errno == EINTR) continue;
    throw Error(Error::Kind::Transport, std::string("engine connection lost: ") + std::strerror(errno));
  }
}

Value Connection::receive(long long deadline_ms, const CancelCheck &cancelled) {
  uint8_t prefix[4];
  read_exact(prefix, 4, deadline_ms, cancelled);
  uint32_t length = ((uint32_t)prefix[0] << 24) | ((uint32_t)prefix[1] << 16) |
                    ((uint32_t)prefix[2] << 8) | (uint32_t)prefix[3];
  if (length == 0 || length > kMaxMessage)
    throw Error(Error::Kind::Protocol, "engine reply has an invalid length (" + std::to_string(length) + " bytes)");
  std::vector<uint8_t> body(length);
  read_exact(body.data(), length, deadline_ms, cancelled);
  Value reply = unpack(body.data(), body.size());
  if (!reply.is(Value::Kind::Map)) throw Error(Error::Kind::Protocol, "engine reply is not a map");
  return reply;
}

Value Connection::call(const Value &request, int timeout_ms, const CancelCheck &cancelled) {
  if (fd_ < 0) throw Error(Error::Kind::Transport, "engine connection is closed");
  long long deadline = now_ms() + timeout_ms;
  int64_t id = request.at("id").as_int("id");
  try {
    send(pack(request), deadline, cancelled);
    Value reply = receive(deadline, cancelled);
    const Value &reply_id = reply.at("id");
    const std::string &op = reply.at("op").as_str("op");
    if (op == "error") {
      const Value *code = reply.find("code");
      const Value *message = reply.find("message");
      std::string code_text = code && code->is(Value::Kind::Str) ? code->as_str("code") : "unknown";
      std::string text = message && message->is(Value::Kind::Str) ? message->as_str("message") : code_text;
      if (code_text == "too_large" || code_text == "unauthorized") fail_and_close();
      if (!reply_id.is(Value::Kind::Nil) && reply_id.as_int("id") != id)
        throw Error(Error::Kind::Protocol, "engine reply id does not match the request");
      throw Error(Error::Kind::Remote, "engine error (" + code_text + "): " + text, code_text);
    }
    if (reply_id.as_int("id") != id)
      throw Error(Error::Kind::Protocol, "engine reply id does not match the request");
    return reply;
  } catch (const Error &e) {
    // Anything but an error reply leaves the stream in an unknown state.
    if (e.kind() != Error::Kind::Remote) fail_and_close();
    throw;
  }
}

}  // namespace bridge
}  // namespace dfdb
