// The plug-in's side of the engine: a pool of bridge clients shared by render threads, and
// starting `dfdb serve` when nothing answers.
#pragma once

#include "dfdb_bridge.hpp"

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace dfdb {
namespace plugin {

/** Timeouts in milliseconds, read once from the environment (DFDB_PLUGIN_TIMEOUT and
 *  DFDB_START_TIMEOUT, in seconds) so a site can tune them without a rebuild. */
struct LinkTimeouts {
  int connect_ms = 3000;
  int request_ms = 300000;
  int start_ms = 30000;
  static LinkTimeouts from_environment();
};

/** Idle clients per engine address; a render takes one (or a new one) and gives it back. */
class EnginePool {
 public:
  using Log = std::function<void(const std::string &)>;

  /** A connected client for `address` ("" = the per-user default). Starts the engine when
   *  nothing answers; `log` hears about a start. `*reused` says whether it came from the pool
   *  (a reused client may have lost its engine since). Throws bridge::Error. */
  std::unique_ptr<bridge::Client> acquire(const std::string &address, const Log &log, bool *reused);
  /** Returns a healthy client to the pool (a broken one is dropped). */
  void release(const std::string &address, std::unique_ptr<bridge::Client> client);
  /** Takes an idle client for `address`, never connecting; null when there is none. */
  std::unique_ptr<bridge::Client> take_idle(const std::string &address);
  /** Closes every idle client (on unload). */
  void clear();

 private:
  std::unique_ptr<bridge::Client> connect(const bridge::Address &address);
  std::unique_ptr<bridge::Client> connect_or_start(const bridge::Address &address, const Log &log);

  std::mutex lock_;
  std::mutex start_lock_;  // one engine start at a time
  std::vector<std::pair<std::string, std::unique_ptr<bridge::Client>>> idle_;
  LinkTimeouts timeouts_ = LinkTimeouts::from_environment();
};

/** Runs `<engine> serve --listen ADDRESS` and waits for it to return (it daemonises once its
 *  socket is ready). The engine is $DFDB_ENGINE, else `dfdb` on PATH, else ~/.local/bin/dfdb.
 *  Throws bridge::Error(Connect) with the engine's own one-line reason when it fails. */
void start_engine(const bridge::Address &address, int timeout_ms);

}  // namespace plugin
}  // namespace dfdb
