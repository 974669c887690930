// msgpack encoding and decoding of Value, on the msgpack-c C library.
#include "dfdb_bridge.hpp"

#include <msgpack.h>

#include <limits>

namespace dfdb {
namespace bridge {

Value Value::boolean(bool v) {
  Value out;
  out.kind_ = Kind::Bool;
  out.b_ = v;
  return out;
}

Value Value::integer(int64_t v) {
  Value out;
  out.kind_ = Kind::Int;
  out.i_ = v;
  return out;
}

Value Value::real(double v) {
  Value out;
  out.kind_ = Kind::Float;
  out.f_ = v;
  return out;
}

Value Value::str(std::string v) {
  Value out;
  out.kind_ = Kind::Str;
  out.s_ = std::move(v);
  return out;
}

Value Value::bin(std::string bytes) {
  Value out;
  out.kind_ = Kind::Bin;
  out.s_ = std::move(bytes);
  return out;
}

Value Value::array(std::vector<Value> items) {
  Value out;
  out.kind_ = Kind::Array;
  out.items_ = std::move(items);
  return out;
}

Value Value::map() {
  Value out;
  out.kind_ = Kind::Map;
  return out;
}

Value &Value::set(const std::string &key, Value value) {
  for (auto &field : fields_)
    if (field.first == key) {
      field.second = std::move(value);
      return *this;
    }
  fields_.emplace_back(key, std::move(value));
  return *this;
}

Value &Value::push(Value value) {
  items_.push_back(std::move(value));
  return *this;
}

const Value *Value::find(const std::string &key) const {
  if (kind_ != Kind::Map) return nullptr;
  for (auto &field : fields_)
    if (field.first == key) return &field.second;
  return nullptr;
}

namespace {

[[noreturn]] void wrong_kind(const char *what, const char *expected) {
  throw Error(Error::Kind::Protocol, std::string("engine reply: '") + what + "' is not " + expected);
}

}  // namespace

int64_t Value::as_int(const char *what) const {
  if (kind_ != Kind::Int) wrong_kind(what, "an integer");
  return i_;
}

double Value::as_number(const char *what) const {
  if (kind_ == Kind::Int) return (double)i_;
  if (kind_ != Kind::Float) wrong_kind(what, "a number");
  return f_;
}

bool Value::as_bool(const char *what) const {
  if (kind_ != Kind::Bool) wrong_kind(what, "a boolean");
  return b_;
}

const std::string &Value::as_str(const char *what) const {
  if (kind_ != Kind::Str) wrong_kind(what, "a string");
  return s_;
}

const std::string &Value::as_bin(const char *what) const {
  if (kind_ != Kind::Bin) wrong_kind(what, "binary data");
  return s_;
}

const std::vector<Value> &Value::as_array(const char *what) const {
  if (kind_ != Kind::Array) wrong_kind(what, "an array");
  return items_;
}

const std::vector<std::pair<std::string, Value>> &Value::as_map(const char *what) const {
  if (kind_ != Kind::Map) wrong_kind(what, "a map");
  return fields_;
}

const Value &Value::at(const std::string &key) const {
  const Value *found = find(key);
  if (!found) throw Error(Error::Kind::Protocol, "engine reply: field '" + key + "' is missing");
  return *found;
}

// ------------------------------------------------------------------ encoding

namespace {

int append_to_string(void *data, const char *buf, size_t len) {
  static_cast<std::string *>(data)->append(buf, len);
  return 0;
}

void pack_into(msgpack_packer *pk, const Value &value) {
  switch (value.kind()) {
    case Value::Kind::Nil: msgpack_pack_nil(pk); break;
    case Value::Kind::Bool:
      if (value.as_bool("value")) msgpack_pack_true(pk);
      else msgpack_pack_false(pk);
      break;
    case Value::Kind::Int: msgpack_pack_int64(pk, value.as_int("value")); break;
    case Value::Kind::Float: msgpack_pack_double(pk, value.as_number("value")); break;
    case Value::Kind::Str: {
      const std::string &s = value.as_str("value");
      msgpack_pack_str(pk, s.size());
      msgpack_pack_str_body(pk, s.data(), s.size());
      break;
    }
    case Value::Kind::Bin: {
      const std::string &s = value.as_bin("value");
      msgpack_pack_bin(pk, s.size());
      msgpack_pack_bin_body(pk, s.data(), s.size());
      break;
    }
    case Value::Kind::Array: {
      const auto &items = value.as_array("value");
      msgpack_pack_array(pk, items.size());
      for (const Value &item : items) pack_into(pk, item);
      break;
    }
    case Value::Kind::Map: {
      const auto &fields = value.as_map("value");
      msgpack_pack_map(pk, fields.size());
      for (const auto &field : fields) {
        msgpack_pack_str(pk, field.first.size());
        msgpack_pack_str_body(pk, field.first.data(), field.first.size());
        pack_into(pk, field.second);
      }
      break;
    }
  }
}

Value from_object(const msgpack_object &obj) {
  switch (obj.type) {
    case MSGPACK_OBJECT_NIL: return Value();
    case MSGPACK_OBJECT_BOOLEAN: return Value::boolean(obj.via.boolean);
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
      if (obj.via.u64 > (uint64_t)std::numeric_limits<int64_t>::max())
        throw Error(Error::Kind::Protocol, "engine reply: integer out of range");
      return Value::integer((int64_t)obj.via.u64);
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: return Value::integer(obj.via.i64);
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: return Value::real(obj.via.f64);
    case MSGPACK_OBJECT_STR: return Value::str(std::string(obj.via.str.ptr, obj.via.str.size));
    case MSGPACK_OBJECT_BIN: return Value::bin(std::string(obj.via.bin.ptr, obj.via.bin.size));
    case MSGPACK_OBJECT_ARRAY: {
      std::vector<Value> items;
      items.reserve(obj.via.array.size);
      for (uint32_t k = 0; k < obj.via.array.size; ++k)
        items.push_back(from_object(obj.via.array.ptr[k]));
      return Value::array(std::move(items));
    }
    case MSGPACK_OBJECT_MAP: {
      Value out = Value::map();
      for (uint32_t k = 0; k < obj.via.map.size; ++k) {
        const msgpack_object_kv &kv = obj.via.map.ptr[k];
        if (kv.key.type != MSGPACK_OBJECT_STR)
          throw Error(Error::Kind::Protocol, "engine reply: a map key is not a string");
        out.set(std::string(kv.key.via.str.ptr, kv.key.via.str.size), from_object(kv.val));
      }
      return out;
    }
    default: throw Error(Error::Kind::Protocol, "engine reply: unsupported msgpack type");
  }
}

}  // namespace

std::string pack(const Value &value) {
  std::string out;
  msgpack_packer pk;
  msgpack_packer_init(&pk, &out, append_to_string);
  pack_into(&pk, value);
  return out;
}

Value unpack(const uint8_t *data, size_t size) {
  msgpack_unpacked result;
  msgpack_unpacked_init(&result);
  size_t offset = 0;
  msgpack_unpack_return ret =
      msgpack_unpack_next(&result, reinterpret_cast<const char *>(data), size, &offset);
  if (ret != MSGPACK_UNPACK_SUCCESS || offset != size) {
    msgpack_unpacked_destroy(&result);
    throw Error(Error::Kind::Protocol, ret == MSGPACK_UNPACK_SUCCESS
                                           ? "engine reply: trailing bytes after the message"
                                           : "engine reply: not valid msgpack");
  }
  try {
    Value value = from_object(result.data);
    msgpack_unpacked_destroy(&result);
    return value;
  } catch (...) {
    msgpack_unpacked_destroy(&result);
    throw;
  }
}

}  // namespace bridge
}  // namespace dfdb
