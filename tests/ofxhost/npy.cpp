// The .npy format (version 1.0/2.0): magic, header length, a Python-literal dict, raw data.
#include "host.hpp"

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

namespace {

std::string dict_value(const std::string &header, const std::string &key) {
  size_t at = header.find("'" + key + "'");
  if (at == std::string::npos) return "";
  size_t colon = header.find(':', at);
  if (colon == std::string::npos) return "";
  size_t start = header.find_first_not_of(' ', colon + 1);
  if (start == std::string::npos) return "";
  char open = header[start];
  size_t end = open == '(' ? header.find(')', start) + 1
               : open == '\'' ? header.find('\'', start + 1) + 1
                              : header.find_first_of(",}", start);
  return header.substr(start, end - start);
}

std::vector<long> shape_of(const std::string &text) {
  std::vector<long> dims;
  std::string inner = text.size() >= 2 ? text.substr(1, text.size() - 2) : "";
  std::stringstream in(inner);
  std::string part;
  while (std::getline(in, part, ','))
    if (part.find_first_not_of(' ') != std::string::npos) dims.push_back(std::stol(part));
  return dims;
}

}  // namespace

std::string read_npy(const std::string &path, ClipData *out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "cannot open " + path;
  char magic[8];
  in.read(magic, 8);
  if (!in || std::memcmp(magic, "\x93NUMPY", 6) != 0) return path + " is not a .npy file";
  uint32_t header_len = 0;
  if (magic[6] == 1) {
    unsigned char b[2];
    in.read(reinterpret_cast<char *>(b), 2);
    header_len = b[0] | (b[1] << 8);
  } else {
    unsigned char b[4];
    in.read(reinterpret_cast<char *>(b), 4);
    header_len = b[0] | (b[1] << 8) | (b[2] << 16) | ((uint32_t)b[3] << 24);
  }
  std::string header(header_len, '\0');
  in.read(&header[0], header_len);
  std::string descr = dict_value(header, "descr");
  if (dict_value(header, "fortran_order") != "False") return path + ": Fortran order is not supported";
  if (descr == "'|u1'") out->bytes_per_component = 1;
  else if (descr == "'<u2'") out->bytes_per_component = 2;
  else if (descr == "'<f4'") out->bytes_per_component = 4;
  else return path + ": dtype " + descr + " is not uint8, uint16 or float32";
  std::vector<long> dims = shape_of(dict_value(header, "shape"));
  if (dims.size() == 3) dims.insert(dims.begin(), 1);
  if (dims.size() != 4 || (dims[3] != 3 && dims[3] != 4)) return path + ": shape must be (T,H,W,3|4)";
  out->frames = (int)dims[0];
  out->height = (int)dims[1];
  out->width = (int)dims[2];
  out->channels = (int)dims[3];
  size_t frame_bytes = (size_t)out->height * out->width * out->channels * out->bytes_per_component;
  out->pixels.assign(out->frames, std::vector<uint8_t>(frame_bytes));
  for (auto &frame : out->pixels) {
    in.read(reinterpret_cast<char *>(frame.data()), (std::streamsize)frame_bytes);
    if (!in) return path + ": truncated data";
  }
  return "";
}

std::string write_npy(const std::string &path, const std::vector<uint8_t> &pixels, int height,
                      int width, int channels, int bytes_per_component) {
  const char *descr = bytes_per_component == 1 ? "|u1" : bytes_per_component == 2 ? "<u2" : "<f4";
  char dict[160];
  std::snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (%d, %d, %d), }",
                descr, height, width, channels);
  std::string header = dict;
  size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::string tmp = path + ".part";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return "cannot write " + tmp;
    out.write("\x93NUMPY\x01\x00", 8);
    unsigned char len[2] = {(unsigned char)(header.size() & 0xFF), (unsigned char)(header.size() >> 8)};
    out.write(reinterpret_cast<char *>(len), 2);
    out << header;
    out.write(reinterpret_cast<const char *>(pixels.data()), (std::streamsize)pixels.size());
    if (!out) return "cannot write " + tmp;
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) return "cannot rename " + tmp;
  return "";
}
