// Property sets and the property suite. Strict as careful hosts are: reading a property that
// does not exist, at an index past its dimension, or as the wrong type is an error.
#include "host.hpp"

#include <cstring>

size_t Prop::size() const {
  switch (type) {
    case 'i': return i.size();
    case 'd': return d.size();
    case 's': return s.size();
    default: return p.size();
  }
}

void OfxPropertySetStruct::set_int(const std::string &name, std::vector<int> values) {
  std::lock_guard<std::recursive_mutex> guard(lock);
  Prop &prop = props[name];
  prop = Prop{};
  prop.type = 'i';
  prop.i = std::move(values);
}

void OfxPropertySetStruct::set_double(const std::string &name, std::vector<double> values) {
  std::lock_guard<std::recursive_mutex> guard(lock);
  Prop &prop = props[name];
  prop = Prop{};
  prop.type = 'd';
  prop.d = std::move(values);
}

void OfxPropertySetStruct::set_string(const std::string &name, std::vector<std::string> values) {
  std::lock_guard<std::recursive_mutex> guard(lock);
  Prop &prop = props[name];
  prop = Prop{};
  prop.type = 's';
  prop.s = std::move(values);
}

void OfxPropertySetStruct::set_pointer(const std::string &name, void *value) {
  std::lock_guard<std::recursive_mutex> guard(lock);
  Prop &prop = props[name];
  prop = Prop{};
  prop.type = 'p';
  prop.p = {value};
}

int OfxPropertySetStruct::get_int(const std::string &name, int index, int fallback) {
  std::lock_guard<std::recursive_mutex> guard(lock);
  auto it = props.find(name);
  if (it == props.end() || it->second.type != 'i' || index >= (int)it->second.i.size())
    return fallback;
  return it->second.i[index];
}

double OfxPropertySetStruct::get_double(const std::string &name, int index, double fallback) {
  std::lock_guard<std::recursive_mutex> guard(lock);
  auto it = props.find(name);
  if (it == props.end() || it->second.type != 'd' || index >= (int)it->second.d.size())
    return fallback;
  return it->second.d[index];
}

std::string OfxPropertySetStruct::get_string(const std::string &name, int index,
                                             const std::string &fallback) {
  std::lock_guard<std::recursive_mutex> guard(lock);
  auto it = props.find(name);
  if (it == props.end() || it->second.type != 's' || index >= (int)it->second.s.size())
    return fallback;
  return it->second.s[index];
}

std::vector<std::string> OfxPropertySetStruct::get_strings(const std::string &name) {
  std::lock_guard<std::recursive_mutex> guard(lock);
  auto it = props.find(name);
  if (it == props.end() || it->second.type != 's') return {};
  return it->second.s;
}

bool OfxPropertySetStruct::has(const std::string &name) {
  std::lock_guard<std::recursive_mutex> guard(lock);
  return props.count(name) != 0;
}

namespace {

/** Finds (or, for a setter, creates) a property of the given type; null on a type clash. */
Prop *slot(OfxPropertySetHandle set, const char *name, char type, bool create,
           OfxStatus *status) {
  if (!set || !name) {
    *status = kOfxStatErrBadHandle;
    return nullptr;
  }
  auto it = set->props.find(name);
  if (it == set->props.end()) {
    if (!create) {
      *status = kOfxStatErrUnknown;
      return nullptr;
    }
    Prop &prop = set->props[name];
    prop.type = type;
    return &prop;
  }
  if (it->second.type != type) {
    *status = kOfxStatErrValue;
    return nullptr;
  }
  return &it->second;
}

template <typename T>
OfxStatus set_one(OfxPropertySetHandle set, const char *name, int index, char type,
                  std::vector<T> Prop::*member, T value) {
  if (index < 0) return kOfxStatErrBadIndex;
  std::lock_guard<std::recursive_mutex> guard(set->lock);
  OfxStatus status = kOfxStatOK;
  Prop *prop = slot(set, name, type, true, &status);
  if (!prop) return status;
  auto &values = prop->*member;
  if ((size_t)index >= values.size()) values.resize(index + 1);
  values[index] = value;
  return kOfxStatOK;
}

template <typename T, typename In>
OfxStatus set_many(OfxPropertySetHandle set, const char *name, int count, char type,
                   std::vector<T> Prop::*member, const In *values) {
  if (count < 0 || (count > 0 && !values)) return kOfxStatErrValue;
  std::lock_guard<std::recursive_mutex> guard(set->lock);
  OfxStatus status = kOfxStatOK;
  Prop *prop = slot(set, name, type, true, &status);
  if (!prop) return status;
  auto &stored = prop->*member;
  stored.clear();
  for (int k = 0; k < count; ++k) stored.push_back(T(values[k]));
  return kOfxStatOK;
}

template <typename T, typename Out>
OfxStatus get_one(OfxPropertySetHandle set, const char *name, int index, char type,
                  std::vector<T> Prop::*member, Out *value, Out (*convert)(T &)) {
  if (!value) return kOfxStatErrValue;
  if (!set) return kOfxStatErrBadHandle;
  std::lock_guard<std::recursive_mutex> guard(set->lock);
  OfxStatus status = kOfxStatOK;
  Prop *prop = slot(set, name, type, false, &status);
  if (!prop) return status;
  auto &values = prop->*member;
  if (index < 0 || (size_t)index >= values.size()) return kOfxStatErrBadIndex;
  *value = convert(values[index]);
  return kOfxStatOK;
}

template <typename T, typename Out>
OfxStatus get_many(OfxPropertySetHandle set, const char *name, int count, char type,
                   std::vector<T> Prop::*member, Out *value, Out (*convert)(T &)) {
  if (!value || count < 0) return kOfxStatErrValue;
  if (!set) return kOfxStatErrBadHandle;
  std::lock_guard<std::recursive_mutex> guard(set->lock);
  OfxStatus status = kOfxStatOK;
  Prop *prop = slot(set, name, type, false, &status);
  if (!prop) return status;
  auto &values = prop->*member;
  if ((size_t)count > values.size()) return kOfxStatErrBadIndex;
  for (int k = 0; k < count; ++k) value[k] = convert(values[k]);
  return kOfxStatOK;
}

int same_int(int &v) { return v; }
double same_double(double &v) { return v; }
void *same_pointer(void *&v) { return v; }
char *string_pointer(std::string &v) { return &v[0]; }

OfxStatus propSetPointer(OfxPropertySetHandle h, const char *n, int i, void *v) {
  if (!h) return kOfxStatErrBadHandle;
  return set_one(h, n, i, 'p', &Prop::p, v);
}
OfxStatus propSetString(OfxPropertySetHandle h, const char *n, int i, const char *v) {
  if (!h) return kOfxStatErrBadHandle;
  if (!v) return kOfxStatErrValue;
  return set_one(h, n, i, 's', &Prop::s, std::string(v));
}
OfxStatus propSetDouble(OfxPropertySetHandle h, const char *n, int i, double v) {
  if (!h) return kOfxStatErrBadHandle;
  return set_one(h, n, i, 'd', &Prop::d, v);
}
OfxStatus propSetInt(OfxPropertySetHandle h, const char *n, int i, int v) {
  if (!h) return kOfxStatErrBadHandle;
  return set_one(h, n, i, 'i', &Prop::i, v);
}
OfxStatus propSetPointerN(OfxPropertySetHandle h, const char *n, int c, void *const *v) {
  if (!h) return kOfxStatErrBadHandle;
  return set_many(h, n, c, 'p', &Prop::p, v);
}
OfxStatus propSetStringN(OfxPropertySetHandle h, const char *n, int c, const char *const *v) {
  if (!h) return kOfxStatErrBadHandle;
  for (int k = 0; k < c; ++k)
    if (!v || !v[k]) return kOfxStatErrValue;
  return set_many(h, n, c, 's', &Prop::s, v);
}
OfxStatus propSetDoubleN(OfxPropertySetHandle h, const char *n, int c, const double *v) {
  if (!h) return kOfxStatErrBadHandle;
  return set_many(h, n, c, 'd', &Prop::d, v);
}
OfxStatus propSetIntN(OfxPropertySetHandle h, const char *n, int c, const int *v) {
  if (!h) return kOfxStatErrBadHandle;
  return set_many(h, n, c, 'i', &Prop::i, v);
}
OfxStatus propGetPointer(OfxPropertySetHandle h, const char *n, int i, void **v) {
  return get_one(h, n, i, 'p', &Prop::p, v, same_pointer);
}
OfxStatus propGetString(OfxPropertySetHandle h, const char *n, int i, char **v) {
  return get_one(h, n, i, 's', &Prop::s, v, string_pointer);
}
OfxStatus propGetDouble(OfxPropertySetHandle h, const char *n, int i, double *v) {
  return get_one(h, n, i, 'd', &Prop::d, v, same_double);
}
OfxStatus propGetInt(OfxPropertySetHandle h, const char *n, int i, int *v) {
  return get_one(h, n, i, 'i', &Prop::i, v, same_int);
}
OfxStatus propGetPointerN(OfxPropertySetHandle h, const char *n, int c, void **v) {
  return get_many(h, n, c, 'p', &Prop::p, v, same_pointer);
}
OfxStatus propGetStringN(OfxPropertySetHandle h, const char *n, int c, char **v) {
  return get_many(h, n, c, 's', &Prop::s, v, string_pointer);
}
OfxStatus propGetDoubleN(OfxPropertySetHandle h, const char *n, int c, double *v) {
  return get_many(h, n, c, 'd', &Prop::d, v, same_double);
}
OfxStatus propGetIntN(OfxPropertySetHandle h, const char *n, int c, int *v) {
  return get_many(h, n, c, 'i', &Prop::i, v, same_int);
}
OfxStatus propReset(OfxPropertySetHandle h, const char *n) {
  if (!h || !n) return kOfxStatErrBadHandle;
  std::lock_guard<std::recursive_mutex> guard(h->lock);
  auto it = h->props.find(n);
  if (it == h->props.end()) return kOfxStatErrUnknown;
  char type = it->second.type;
  it->second = Prop{};
  it->second.type = type;
  return kOfxStatOK;
}
OfxStatus propGetDimension(OfxPropertySetHandle h, const char *n, int *count) {
  if (!h || !n) return kOfxStatErrBadHandle;
  if (!count) return kOfxStatErrValue;
  std::lock_guard<std::recursive_mutex> guard(h->lock);
  auto it = h->props.find(n);
  if (it == h->props.end()) return kOfxStatErrUnknown;
  *count = (int)it->second.size();
  return kOfxStatOK;
}

}  // namespace

const OfxPropertySuiteV1 kHostPropertySuite = {
    propSetPointer,  propSetString,  propSetDouble,  propSetInt,     propSetPointerN,
    propSetStringN,  propSetDoubleN, propSetIntN,    propGetPointer, propGetString,
    propGetDouble,   propGetInt,     propGetPointerN, propGetStringN, propGetDoubleN,
    propGetIntN,     propReset,      propGetDimension,
};
