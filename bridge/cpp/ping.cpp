// dfdb-bridge-ping: says hello to a running engine and pings it.
//
//   dfdb-bridge-ping [--address ADDR] [--count N] [--timeout SECONDS] [--shutdown]
//
// Prints the engine's version, capabilities and devices, then one line per ping with the
// round-trip time and the engine's queue. Exit status: 0 answered, 1 no engine or an engine
// error, 2 bad usage.
#include "dfdb_bridge.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

struct Options {
  std::string address;
  int count = 1;
  double timeout_s = 5.0;
  bool shutdown = false;
};

int usage(const char *problem) {
  std::fprintf(stderr, "dfdb-bridge-ping: %s\n", problem);
  std::fprintf(stderr, "usage: dfdb-bridge-ping [--address ADDR] [--count N] [--timeout SECONDS] [--shutdown]\n");
  return 2;
}

/** Parses argv; returns false (after printing why) on bad usage. */
bool parse(int argc, char **argv, Options *out, int *status) {
  for (int k = 1; k < argc; ++k) {
    std::string arg = argv[k];
    bool has_value = k + 1 < argc;
    char *end = nullptr;
    if (arg == "--address" && has_value) {
      out->address = argv[++k];
    } else if (arg == "--count" && has_value) {
      out->count = (int)std::strtol(argv[++k], &end, 10);
      if (*end || out->count < 1) return (*status = usage("--count must be a positive integer")), false;
    } else if (arg == "--timeout" && has_value) {
      out->timeout_s = std::strtod(argv[++k], &end);
      if (*end || out->timeout_s <= 0) return (*status = usage("--timeout must be a positive number")), false;
    } else if (arg == "--shutdown") {
      out->shutdown = true;
    } else if (arg == "-h" || arg == "--help") {
      *status = usage("help");
      return false;
    } else {
      *status = usage(("unknown or incomplete argument '" + arg + "'").c_str());
      return false;
    }
  }
  return true;
}

std::string join(const std::vector<std::string> &items) {
  std::string out;
  for (const auto &item : items) out += (out.empty() ? "" : ",") + item;
  return out;
}

long long count_of(const dfdb::bridge::Value &reply, const char *key) {
  const dfdb::bridge::Value *v = reply.find(key);
  return v && v->is(dfdb::bridge::Value::Kind::Int) ? v->as_int(key) : -1;
}

}  // namespace

int main(int argc, char **argv) {
  Options options;
  int status = 0;
  if (!parse(argc, argv, &options, &status)) return status;
  using namespace dfdb::bridge;
  try {
    Address address = parse_address(options.address.empty() ? default_address() : options.address);
    ClientOptions client_options;
    client_options.client_name = "dfdb-bridge-ping";
    client_options.connect_timeout_ms = (int)(options.timeout_s * 1000);
    client_options.request_timeout_ms = (int)(options.timeout_s * 1000);
    Client client(address, client_options);
    std::printf("engine %s at %s protocol %d capabilities %s devices %s\n",
                client.info().engine.c_str(), address.text().c_str(), kProtocolVersion,
                join(client.info().capabilities).c_str(), join(client.info().devices).c_str());
    for (int k = 0; k < options.count; ++k) {
      auto start = std::chrono::steady_clock::now();
      Value pong = client.ping();
      double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
      std::printf("pong %.3f ms queued %lld running %lld clips %lld\n", ms, count_of(pong, "queued"),
                  count_of(pong, "running"), count_of(pong, "clips"));
    }
    if (options.shutdown) {
      client.shutdown();
      std::printf("bye\n");
    }
    std::fflush(stdout);
    return 0;
  } catch (const Error &e) {
    std::fprintf(stderr, "dfdb-bridge-ping: %s\n", e.what());
    return 1;
  }
}
