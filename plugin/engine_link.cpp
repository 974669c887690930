#include "engine_link.hpp"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

extern char **environ;

namespace dfdb {
namespace plugin {

namespace {

long long now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
}

int seconds_from_env(const char *name, int fallback_ms) {
  const char *text = std::getenv(name);
  if (!text || !*text) return fallback_ms;
  char *end = nullptr;
  double seconds = std::strtod(text, &end);
  return (*end || seconds <= 0) ? fallback_ms : (int)(seconds * 1000);
}

bool is_executable(const std::string &path) { return ::access(path.c_str(), X_OK) == 0; }

/** The engine program: $DFDB_ENGINE, `dfdb` on PATH, or the user's ~/.local/bin/dfdb. */
std::string engine_program() {
  const char *configured = std::getenv("DFDB_ENGINE");
  if (configured && *configured) return configured;
  const char *path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/local/bin:/usr/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t end = dirs.find(':', start);
    std::string dir = dirs.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (!dir.empty() && is_executable(dir + "/dfdb")) return dir + "/dfdb";
    if (end == std::string::npos) break;
    start = end + 1;
  }
  const char *home = std::getenv("HOME");
  if (home && is_executable(std::string(home) + "/.local/bin/dfdb")) return std::string(home) + "/.local/bin/dfdb";
  return "dfdb";
}

/** The last non-empty line of what the engine wrote to stderr, for the host's message. */
std::string last_line(FILE *capture) {
  std::fflush(capture);
  std::rewind(capture);
  char buffer[512];
  std::string line, last;
  while (std::fgets(buffer, sizeof buffer, capture)) {
    line = buffer;
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
    if (!line.empty()) last = line;
  }
  return last;
}

/** Waits for the child to exit within the deadline; kills it past the deadline. Returns the
 *  exit status, or -1 when it could not be collected (e.g. the host ignores SIGCHLD). */
int wait_child(pid_t pid, long long deadline_ms, bool *timed_out) {
  *timed_out = false;
  for (;;) {
    int status = 0;
    pid_t done = waitpid(pid, &status, WNOHANG);
    if (done == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
    if (done < 0 && errno != EINTR) return -1;
    if (now_ms() >= deadline_ms) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      *timed_out = true;
      return 128;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace

LinkTimeouts LinkTimeouts::from_environment() {
  LinkTimeouts t;
  t.request_ms = seconds_from_env("DFDB_PLUGIN_TIMEOUT", t.request_ms);
  t.start_ms = seconds_from_env("DFDB_START_TIMEOUT", t.start_ms);
  return t;
}

void start_engine(const bridge::Address &address, int timeout_ms) {
  std::string program = engine_program();
  std::string listen = address.text();
  const char *argv[] = {program.c_str(), "serve", "--listen", listen.c_str(), nullptr};
  FILE *capture = std::tmpfile();
  if (!capture) throw bridge::Error(bridge::Error::Kind::Resource, "cannot capture the engine's output");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, fileno(capture), 2);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);  // the host's descriptors stay its own
#endif
  pid_t pid = 0;
  int err = posix_spawnp(&pid, program.c_str(), &actions, nullptr, const_cast<char *const *>(argv), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (err != 0) {
    std::fclose(capture);
    throw bridge::Error(bridge::Error::Kind::Connect,
                        "no engine answers and '" + program + " serve' could not be run: " + std::strerror(err));
  }
  bool timed_out = false;
  int status = wait_child(pid, now_ms() + timeout_ms, &timed_out);
  std::string reason = last_line(capture);
  std::fclose(capture);
  if (timed_out)
    throw bridge::Error(bridge::Error::Kind::Timeout, "'" + program + " serve' did not get ready in time");
  if (status > 0)
    throw bridge::Error(bridge::Error::Kind::Connect,
                        "'" + program + " serve' failed" + (reason.empty() ? "" : ": " + reason));
}

std::unique_ptr<bridge::Client> EnginePool::connect(const bridge::Address &address) {
  bridge::ClientOptions options;
  options.client_name = "dfdb-ofx/0.1.0";
  options.connect_timeout_ms = timeouts_.connect_ms;
  options.request_timeout_ms = timeouts_.request_ms;
  return std::make_unique<bridge::Client>(address, options);
}

std::unique_ptr<bridge::Client> EnginePool::connect_or_start(const bridge::Address &address,
                                                            const Log &log) {
  try {
    return connect(address);
  } catch (const bridge::Error &e) {
    if (e.kind() != bridge::Error::Kind::Connect) throw;
  }
  std::lock_guard<std::mutex> guard(start_lock_);
  try {
    return connect(address);  // another render thread may have started it meanwhile
  } catch (const bridge::Error &e) {
    if (e.kind() != bridge::Error::Kind::Connect) throw;
  }
  long long deadline = now_ms() + timeouts_.start_ms;
  try {
    start_engine(address, timeouts_.start_ms);
  } catch (const bridge::Error &) {
    // Another process (a second host) may have started an engine first, so ours gave up.
    try {
      return connect(address);
    } catch (const bridge::Error &) {
    }
    throw;
  }
  if (log) log("started the dfdb engine at " + address.text());
  for (;;) {
    try {
      return connect(address);
    } catch (const bridge::Error &e) {
      if (e.kind() != bridge::Error::Kind::Connect || now_ms() >= deadline)
        throw bridge::Error(bridge::Error::Kind::Connect,
                            std::string("the dfdb engine was started but does not answer: ") + e.what());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

std::unique_ptr<bridge::Client> EnginePool::acquire(const std::string &address_text, const Log &log,
                                                   bool *reused) {
  std::string resolved = address_text.empty() ? bridge::default_address() : address_text;
  if (auto idle = take_idle(resolved)) {
    *reused = true;
    return idle;
  }
  *reused = false;
  return connect_or_start(bridge::parse_address(resolved), log);
}

std::unique_ptr<bridge::Client> EnginePool::take_idle(const std::string &address_text) {
  std::string resolved = address_text.empty() ? bridge::default_address() : address_text;
  std::lock_guard<std::mutex> guard(lock_);
  for (auto it = idle_.begin(); it != idle_.end(); ++it)
    if (it->first == resolved) {
      std::unique_ptr<bridge::Client> client = std::move(it->second);
      idle_.erase(it);
      return client;
    }
  return nullptr;
}

void EnginePool::release(const std::string &address_text, std::unique_ptr<bridge::Client> client) {
  if (!client || client->broken()) return;
  std::string resolved = address_text.empty() ? bridge::default_address() : address_text;
  std::lock_guard<std::mutex> guard(lock_);
  idle_.emplace_back(resolved, std::move(client));
}

void EnginePool::clear() {
  std::lock_guard<std::mutex> guard(lock_);
  idle_.clear();
}

}  // namespace plugin
}  // namespace dfdb
