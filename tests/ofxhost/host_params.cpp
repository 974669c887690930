// Parameter sets and the parameter suite: definition on descriptors, one value per instance
// parameter (no animation curves: every time reads the same value).
#include "host.hpp"

#include <cstdarg>
#include <cstdlib>

OfxParamStruct *OfxParamSetStruct::find(const std::string &name) {
  for (auto &param : params)
    if (param->name == name) return param.get();
  return nullptr;
}

namespace {

bool is_int_like(const std::string &type) {
  return type == kOfxParamTypeInteger || type == kOfxParamTypeBoolean ||
         type == kOfxParamTypeChoice;
}

bool is_known_type(const std::string &type) {
  return is_int_like(type) || type == kOfxParamTypeDouble || type == kOfxParamTypeString ||
         type == kOfxParamTypeInteger2D || type == kOfxParamTypeGroup ||
         type == kOfxParamTypePage;
}

/** Reads the value into the caller's pointers, as paramGetValue's varargs say for the type. */
OfxStatus read_value(OfxParamHandle param, va_list args) {
  if (is_int_like(param->type)) {
    int *out = va_arg(args, int *);
    if (!out) return kOfxStatErrValue;
    *out = param->ivalue[0];
  } else if (param->type == kOfxParamTypeDouble) {
    double *out = va_arg(args, double *);
    if (!out) return kOfxStatErrValue;
    *out = param->dvalue;
  } else if (param->type == kOfxParamTypeString) {
    char **out = va_arg(args, char **);
    if (!out) return kOfxStatErrValue;
    *out = &param->svalue[0];
  } else if (param->type == kOfxParamTypeInteger2D) {
    int *x = va_arg(args, int *);
    int *y = va_arg(args, int *);
    if (!x || !y) return kOfxStatErrValue;
    *x = param->ivalue[0];
    *y = param->ivalue[1];
  } else {
    return kOfxStatErrUnsupported;
  }
  return kOfxStatOK;
}

OfxStatus write_value(OfxParamHandle param, va_list args) {
  if (is_int_like(param->type)) {
    param->ivalue[0] = va_arg(args, int);
  } else if (param->type == kOfxParamTypeDouble) {
    param->dvalue = va_arg(args, double);
  } else if (param->type == kOfxParamTypeString) {
    const char *text = va_arg(args, const char *);
    if (!text) return kOfxStatErrValue;
    param->svalue = text;
  } else if (param->type == kOfxParamTypeInteger2D) {
    param->ivalue[0] = va_arg(args, int);
    param->ivalue[1] = va_arg(args, int);
  } else {
    return kOfxStatErrUnsupported;
  }
  return kOfxStatOK;
}

OfxStatus paramDefine(OfxParamSetHandle set, const char *type, const char *name,
                      OfxPropertySetHandle *props) {
  if (!set) return kOfxStatErrBadHandle;
  if (!type || !name) return kOfxStatErrValue;
  if (!is_known_type(type)) return kOfxStatErrUnknown;
  if (set->find(name)) return kOfxStatErrExists;
  auto param = std::make_unique<OfxParamStruct>();
  param->name = name;
  param->type = type;
  param->props.set_string(kOfxPropType, {kOfxTypeParameter});
  param->props.set_string(kOfxPropName, {name});
  param->props.set_string(kOfxParamPropType, {type});
  param->props.set_string(kOfxPropLabel, {name});
  if (props) *props = &param->props;
  set->params.push_back(std::move(param));
  return kOfxStatOK;
}

OfxStatus paramGetHandle(OfxParamSetHandle set, const char *name, OfxParamHandle *param,
                         OfxPropertySetHandle *props) {
  if (!set) return kOfxStatErrBadHandle;
  if (!name || !param) return kOfxStatErrValue;
  OfxParamStruct *found = set->find(name);
  if (!found) return kOfxStatErrUnknown;
  *param = found;
  if (props) *props = &found->props;
  return kOfxStatOK;
}

OfxStatus paramSetGetPropertySet(OfxParamSetHandle set, OfxPropertySetHandle *props) {
  if (!set) return kOfxStatErrBadHandle;
  if (!props) return kOfxStatErrValue;
  *props = &set->props;
  return kOfxStatOK;
}

OfxStatus paramGetPropertySet(OfxParamHandle param, OfxPropertySetHandle *props) {
  if (!param) return kOfxStatErrBadHandle;
  if (!props) return kOfxStatErrValue;
  *props = &param->props;
  return kOfxStatOK;
}

OfxStatus paramGetValue(OfxParamHandle param, ...) {
  if (!param) return kOfxStatErrBadHandle;
  va_list args;
  va_start(args, param);
  OfxStatus status = read_value(param, args);
  va_end(args);
  return status;
}

OfxStatus paramGetValueAtTime(OfxParamHandle param, OfxTime time, ...) {
  if (!param) return kOfxStatErrBadHandle;
  va_list args;
  va_start(args, time);
  OfxStatus status = read_value(param, args);
  va_end(args);
  return status;
}

OfxStatus paramGetDerivative(OfxParamHandle param, OfxTime, ...) {
  return param ? kOfxStatErrUnsupported : kOfxStatErrBadHandle;
}

OfxStatus paramGetIntegral(OfxParamHandle param, OfxTime, OfxTime, ...) {
  return param ? kOfxStatErrUnsupported : kOfxStatErrBadHandle;
}

OfxStatus paramSetValue(OfxParamHandle param, ...) {
  if (!param) return kOfxStatErrBadHandle;
  va_list args;
  va_start(args, param);
  OfxStatus status = write_value(param, args);
  va_end(args);
  return status;
}

OfxStatus paramSetValueAtTime(OfxParamHandle param, OfxTime time, ...) {
  if (!param) return kOfxStatErrBadHandle;
  va_list args;
  va_start(args, time);
  OfxStatus status = write_value(param, args);
  va_end(args);
  return status;
}

OfxStatus paramGetNumKeys(OfxParamHandle param, unsigned int *count) {
  if (!param) return kOfxStatErrBadHandle;
  if (!count) return kOfxStatErrValue;
  *count = 0;
  return kOfxStatOK;
}

OfxStatus paramGetKeyTime(OfxParamHandle param, unsigned int, OfxTime *) {
  return param ? kOfxStatErrBadIndex : kOfxStatErrBadHandle;
}

OfxStatus paramGetKeyIndex(OfxParamHandle param, OfxTime, int, int *) {
  return param ? kOfxStatFailed : kOfxStatErrBadHandle;
}

OfxStatus paramDeleteKey(OfxParamHandle param, OfxTime) {
  return param ? kOfxStatErrBadIndex : kOfxStatErrBadHandle;
}

OfxStatus paramDeleteAllKeys(OfxParamHandle param) {
  return param ? kOfxStatOK : kOfxStatErrBadHandle;
}

OfxStatus paramCopy(OfxParamHandle to, OfxParamHandle from, OfxTime, const OfxRangeD *) {
  if (!to || !from) return kOfxStatErrBadHandle;
  if (to->type != from->type) return kOfxStatErrValue;
  to->ivalue[0] = from->ivalue[0];
  to->ivalue[1] = from->ivalue[1];
  to->dvalue = from->dvalue;
  to->svalue = from->svalue;
  return kOfxStatOK;
}

OfxStatus paramEditBegin(OfxParamSetHandle set, const char *) {
  return set ? kOfxStatOK : kOfxStatErrBadHandle;
}

OfxStatus paramEditEnd(OfxParamSetHandle set) { return set ? kOfxStatOK : kOfxStatErrBadHandle; }

}  // namespace

const OfxParameterSuiteV1 kHostParameterSuite = {
    paramDefine,      paramGetHandle,      paramSetGetPropertySet, paramGetPropertySet,
    paramGetValue,    paramGetValueAtTime, paramGetDerivative,     paramGetIntegral,
    paramSetValue,    paramSetValueAtTime, paramGetNumKeys,        paramGetKeyTime,
    paramGetKeyIndex, paramDeleteKey,      paramDeleteAllKeys,     paramCopy,
    paramEditBegin,   paramEditEnd,
};

void instantiate_params(OfxParamSetStruct &from, OfxParamSetStruct &to) {
  to.params.clear();
  to.props.props = from.props.props;
  for (auto &desc : from.params) {
    auto param = std::make_unique<OfxParamStruct>();
    param->name = desc->name;
    param->type = desc->type;
    param->props.props = desc->props.props;
    param->props.set_string(kOfxPropType, {kOfxTypeParameterInstance});
    if (is_int_like(desc->type) || desc->type == kOfxParamTypeInteger2D) {
      param->ivalue[0] = desc->props.get_int(kOfxParamPropDefault, 0, 0);
      param->ivalue[1] = desc->props.get_int(kOfxParamPropDefault, 1, 0);
    } else if (desc->type == kOfxParamTypeDouble) {
      param->dvalue = desc->props.get_double(kOfxParamPropDefault, 0, 0.0);
    } else if (desc->type == kOfxParamTypeString) {
      param->svalue = desc->props.get_string(kOfxParamPropDefault, 0, "");
    }
    to.params.push_back(std::move(param));
  }
}

bool set_param_from_text(OfxParamStruct &param, const std::string &text) {
  char *end = nullptr;
  if (param.type == kOfxParamTypeChoice) {
    std::vector<std::string> options = param.props.get_strings(kOfxParamPropChoiceOption);
    for (size_t k = 0; k < options.size(); ++k)
      if (options[k] == text) {
        param.ivalue[0] = (int)k;
        return true;
      }
    long index = std::strtol(text.c_str(), &end, 10);
    if (*end || index < 0 || index >= (long)options.size()) return false;
    param.ivalue[0] = (int)index;
  } else if (is_int_like(param.type)) {
    long value = std::strtol(text.c_str(), &end, 10);
    if (*end) return false;
    param.ivalue[0] = (int)value;
  } else if (param.type == kOfxParamTypeDouble) {
    double value = std::strtod(text.c_str(), &end);
    if (*end) return false;
    param.dvalue = value;
  } else if (param.type == kOfxParamTypeString) {
    param.svalue = text == "-" ? "" : text;
  } else if (param.type == kOfxParamTypeInteger2D) {
    long x = std::strtol(text.c_str(), &end, 10);
    if (*end != 'x') return false;
    long y = std::strtol(end + 1, &end, 10);
    if (*end) return false;
    param.ivalue[0] = (int)x;
    param.ivalue[1] = (int)y;
  } else {
    return false;
  }
  return true;
}
