// The protocol's requests: ping, process (with the `need` loop and shared memory), close_clip,
// shutdown.
#include "dfdb_bridge.hpp"

#include <algorithm>
#include <cstring>

namespace dfdb {
namespace bridge {

namespace {

constexpr size_t kAlign = 64;  // segment regions start on cache lines
constexpr int kMaxRounds = 6;  // `need` rounds before the engine is declared inconsistent

size_t aligned(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

/** A packed, top-down copy, for the rare view whose stride the protocol cannot express. */
std::string packed_copy(const FrameView &view) {
  std::string out;
  out.reserve(view.row_bytes() * view.height);
  for (int y = 0; y < view.height; ++y)
    out.append(reinterpret_cast<const char *>(view.row(y)), view.row_bytes());
  return out;
}

Value desc_header(const FrameView &view, long stride) {
  Value desc = Value::map();
  desc.set("width", Value::integer(view.width))
      .set("height", Value::integer(view.height))
      .set("channels", Value::integer(view.channels))
      .set("dtype", Value::str(dtype_name(view.dtype)))
      .set("stride", Value::integer(stride));
  return desc;
}

bool stride_is_valid(const FrameView &view) {
  size_t step = (size_t)(view.stride < 0 ? -view.stride : view.stride);
  return view.stride != 0 && step >= view.row_bytes() && step % itemsize(view.dtype) == 0;
}

}  // namespace

Client::Client(const Address &address, ClientOptions options)
    : options_(std::move(options)),
      connection_(Connection::open(address, options_.client_name, options_.connect_timeout_ms)) {
  use_shm_ = connection_->info().has("shm");
}

Value Client::call(Value request, const CancelCheck &cancelled) {
  request.set("id", Value::integer((int64_t)connection_->next_id()));
  return connection_->call(request, options_.request_timeout_ms, cancelled);
}

Value Client::ping(const CancelCheck &cancelled) {
  Value request = Value::map();
  request.set("op", Value::str("ping"));
  Value reply = call(std::move(request), cancelled);
  if (reply.at("op").as_str("op") != "pong")
    throw Error(Error::Kind::Protocol, "engine answered ping with '" + reply.at("op").as_str("op") + "'");
  return reply;
}

void Client::close_clip(const std::string &clip) {
  Value request = Value::map();
  request.set("op", Value::str("close_clip")).set("clip", Value::str(clip));
  Value reply = call(std::move(request), {});
  if (reply.at("op").as_str("op") != "closed")
    throw Error(Error::Kind::Protocol, "engine answered close_clip with '" + reply.at("op").as_str("op") + "'");
}

void Client::shutdown() {
  Value request = Value::map();
  request.set("op", Value::str("shutdown"));
  Value reply = call(std::move(request), {});
  if (reply.at("op").as_str("op") != "bye")
    throw Error(Error::Kind::Protocol, "engine answered shutdown with '" + reply.at("op").as_str("op") + "'");
}

void Client::ensure_segments(const ProcessRequest &request) {
  if (!use_shm_) return;
  size_t in_bytes = 0, out_bytes = 0;
  for (const WindowFrame &f : request.frames) {
    if (f.view.span() >= options_.shm_min_bytes) in_bytes += aligned(f.view.span());
    if (f.time == request.target) out_bytes = f.view.row_bytes() * f.view.height;
  }
  if (in_bytes && (!in_ || in_->size() < in_bytes)) {
    in_.reset();
    in_ = std::make_unique<SharedMemory>(in_bytes);
  }
  if (out_bytes >= options_.shm_min_bytes && (!out_ || out_->size() < out_bytes)) {
    out_.reset();
    out_ = std::make_unique<SharedMemory>(out_bytes);
  }
}

Value Client::frame_desc(const FrameView &view, size_t *shm_offset) {
  if (!stride_is_valid(view)) {
    Value desc = desc_header(view, (long)view.row_bytes());
    desc.set("data", Value::bin(packed_copy(view)));
    return desc;
  }
  Value desc = desc_header(view, view.stride);
  size_t span = view.span();
  if (use_shm_ && in_ && span >= options_.shm_min_bytes && *shm_offset + span <= in_->size()) {
    std::memcpy(in_->data() + *shm_offset, view.base, span);
    desc.set("shm", Value::str(in_->name()))
        .set("offset", Value::integer((int64_t)*shm_offset))
        .set("size", Value::integer((int64_t)span));
    *shm_offset += aligned(span);
  } else {
    desc.set("data", Value::bin(std::string(reinterpret_cast<const char *>(view.base), span)));
  }
  return desc;
}

Value Client::build_process(const ProcessRequest &request, const std::vector<bool> &attach) {
  Value frames = Value::array();
  size_t shm_offset = 0;
  for (size_t k = 0; k < request.frames.size(); ++k) {
    Value ref = Value::map();
    ref.set("time", Value::integer(request.frames[k].time));
    if (attach[k]) ref.set("frame", frame_desc(request.frames[k].view, &shm_offset));
    frames.push(std::move(ref));
  }
  Value outputs = Value::array();
  bool wants_image = false;
  for (const std::string &o : request.outputs) {
    outputs.push(Value::str(o));
    wants_image = wants_image || o == "image";
  }
  Value msg = Value::map();
  msg.set("op", Value::str("process"))
      .set("clip", Value::str(request.clip))
      .set("target", Value::integer(request.target))
      .set("frames", std::move(frames))
      .set("params", request.params)
      .set("outputs", std::move(outputs));
  if (request.ahead > 0) msg.set("ahead", Value::integer(request.ahead));
  if (wants_image && use_shm_ && out_) {
    for (const WindowFrame &f : request.frames)
      if (f.time == request.target && f.view.row_bytes() * f.view.height >= options_.shm_min_bytes &&
          f.view.row_bytes() * f.view.height <= out_->size()) {
        Value out = Value::map();
        out.set("shm", Value::str(out_->name()))
            .set("offset", Value::integer(0))
            .set("size", Value::integer((int64_t)out_->size()));
        msg.set("out", std::move(out));
      }
  }
  return msg;
}

FrameView Client::read_frame(const Value &desc, const char *what) const {
  std::string prefix = std::string("engine reply: ") + what + " ";
  desc.as_map(what);
  FrameView view;
  int64_t width = desc.at("width").as_int("width"), height = desc.at("height").as_int("height");
  int64_t channels = desc.at("channels").as_int("channels");
  if (width < 1 || height < 1 || width > 65536 || height > 65536 || channels < 1 || channels > 4)
    throw Error(Error::Kind::Protocol, prefix + "has an impossible size");
  view.width = (int)width;
  view.height = (int)height;
  view.channels = (int)channels;
  view.dtype = parse_dtype(desc.at("dtype").as_str("dtype"));
  view.stride = (long)desc.at("stride").as_int("stride");
  if (!stride_is_valid(view)) throw Error(Error::Kind::Protocol, prefix + "has an invalid stride");
  if (const Value *data = desc.find("data")) {
    const std::string &bytes = data->as_bin("data");
    if (bytes.size() < view.span())
      throw Error(Error::Kind::Protocol, prefix + "carries fewer bytes than its size needs");
    view.base = reinterpret_cast<const uint8_t *>(bytes.data());
    return view;
  }
  const std::string &name = desc.at("shm").as_str("shm");
  int64_t offset = desc.at("offset").as_int("offset"), size = desc.at("size").as_int("size");
  if (!out_ || name != out_->name() || offset < 0 || size < 0 ||
      (uint64_t)offset + (uint64_t)size > out_->size() || (uint64_t)size < view.span())
    throw Error(Error::Kind::Protocol, prefix + "points outside the output segment");
  view.base = out_->data() + offset;
  return view;
}

void Client::process(const ProcessRequest &request, ProcessResult &result,
                     const CancelCheck &cancelled) {
  const WindowFrame *target = nullptr;
  for (const WindowFrame &f : request.frames)
    if (f.time == request.target) target = &f;
  if (!target) throw Error(Error::Kind::Protocol, "the target frame is not in the window");
  ensure_segments(request);
  std::vector<bool> attach(request.frames.size());
  for (size_t k = 0; k < attach.size(); ++k) attach[k] = !request.frames[k].held;
  result = ProcessResult{};
  for (int round = 0;; ++round) {
    Value reply;
    try {
      reply = call(build_process(request, attach), cancelled);
    } catch (const Error &e) {
      if (e.kind() != Error::Kind::Remote || e.code() != "shm_unavailable" || !use_shm_) throw;
      use_shm_ = false;  // the engine cannot open our segments: go inline from now on
      reply = call(build_process(request, attach), cancelled);
    }
    const std::string &op = reply.at("op").as_str("op");
    if (op == "need") {
      if (round + 1 >= kMaxRounds)
        throw Error(Error::Kind::Protocol, "engine keeps asking for frames it was sent");
      bool added = false;
      for (const Value &t : reply.at("times").as_array("times")) {
        int64_t time = t.as_int("times");
        auto it = std::find_if(request.frames.begin(), request.frames.end(),
                               [&](const WindowFrame &f) { return f.time == time; });
        if (it == request.frames.end())
          throw Error(Error::Kind::Protocol, "engine asked for a frame outside the window");
        size_t k = (size_t)(it - request.frames.begin());
        added = added || !attach[k];
        attach[k] = true;
        result.resent.push_back(time);
      }
      if (round >= 2) std::fill(attach.begin(), attach.end(), true);
      if (!added && round < 2) std::fill(attach.begin(), attach.end(), true);
      continue;
    }
    if (op != "result") throw Error(Error::Kind::Protocol, "engine answered process with '" + op + "'");
    if (reply.at("target").as_int("target") != request.target)
      throw Error(Error::Kind::Protocol, "engine reply is for another frame");
    result.reply = std::move(reply);
    break;
  }
  const Value &reply = result.reply;
  auto expect_like_target = [&](const FrameView &v, int channels, const char *what) {
    if (v.width != target->view.width || v.height != target->view.height ||
        v.channels != channels || v.dtype != target->view.dtype)
      throw Error(Error::Kind::Protocol, std::string("engine reply: ") + what +
                                             " does not match the target frame's size or type");
  };
  for (const std::string &o : request.outputs) {
    if (o == "image") {
      result.image = read_frame(reply.at("image"), "image");
      expect_like_target(result.image, target->view.channels, "image");
    } else if (o == "mask") {
      result.mask = read_frame(reply.at("mask"), "mask");
      expect_like_target(result.mask, 1, "mask");
    } else if (o == "flicker") {
      result.flicker = read_frame(reply.at("flicker"), "flicker");
      expect_like_target(result.flicker, 3, "flicker");
    }
  }
  if (const Value *stats = reply.find("stats")) result.stats = *stats;
}

}  // namespace bridge
}  // namespace dfdb
