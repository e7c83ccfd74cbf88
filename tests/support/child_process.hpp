#pragma once
// Child processes for integration tests (carsyncd, `carsync-devnode`), their output kept
// for assertions and failure messages, and small polling helpers.
#include "io/unique_fd.hpp"
#include "support/temp_dir.hpp"
#include "support/time_scale.hpp"

#include <boost/json.hpp>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

extern char** environ;

namespace carsync::test {

using Clock = std::chrono::steady_clock;

inline constexpr auto poll_step = std::chrono::milliseconds(50);

// A child process whose stdout and stderr go to a pipe that a thread drains (so the child
// never blocks on logging). Killed (SIGKILL) and reaped on destruction if still running.
class ChildProcess {
 public:
  explicit ChildProcess(std::vector<std::string> argv) : argv_(std::move(argv)) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
    io::unique_fd read_end(fds[0]), write_end(fds[1]);

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, write_end.get(), STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&actions, write_end.get(), STDERR_FILENO);
    std::vector<char*> args;
    for (auto& a : argv_) args.push_back(a.data());
    args.push_back(nullptr);
    const int rc = ::posix_spawnp(&pid_, args[0], &actions, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) throw std::runtime_error("posix_spawn failed: " + argv_[0]);
    write_end.reset();  // EOF on the read end once the child exits

    reader_ = std::thread([this, fd = std::move(read_end)] {
      char buf[4096];
      for (;;) {
        const ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        std::lock_guard lock(mu_);
        if (n <= 0) {
          eof_ = true;
          changed_.notify_all();
          return;
        }
        log_.append(buf, static_cast<std::size_t>(n));
        changed_.notify_all();
      }
    });
  }

  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  ~ChildProcess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (reader_.joinable()) reader_.join();
  }

  pid_t pid() const noexcept { return pid_; }
  void signal(int sig) const {
    if (pid_ > 0) ::kill(pid_, sig);
  }
  // The exit status once the child has exited by itself within `limit` (nullopt: running).
  std::optional<int> wait_exit(Clock::duration limit) {
    const auto deadline = Clock::now() + scaled(limit);
    int status = 0;
    while (pid_ > 0 && Clock::now() < deadline) {
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        if (reader_.joinable()) reader_.join();
        return status;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return std::nullopt;
  }

  // True once `text` has appeared in the output; false at the deadline or at EOF.
  bool wait_for_output(std::string_view text, Clock::duration limit) {
    std::unique_lock lock(mu_);
    changed_.wait_for(lock, scaled(limit), [&] { return log_.find(text) != std::string::npos || eof_; });
    return log_.find(text) != std::string::npos;
  }

  std::string output() {
    std::lock_guard lock(mu_);
    return log_;
  }

  // SIGTERM, then the wait status within `limit` (nullopt: still running).
  std::optional<int> terminate(Clock::duration limit) {
    if (pid_ <= 0) return std::nullopt;
    signal(SIGTERM);
    return wait_exit(limit);
  }

 private:
  std::vector<std::string> argv_;
  pid_t pid_ = -1;
  std::thread reader_;
  std::mutex mu_;
  std::condition_variable changed_;
  std::string log_;
  bool eof_ = false;
};

// Runs a command to completion, output discarded; its exit code (-1: did not exit).
inline int run_quiet(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  std::vector<std::string> copy = argv;
  for (auto& a : copy) args.push_back(a.data());
  args.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
  pid_t pid = -1;
  const int rc = ::posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return -1;
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// Polls `ready` every poll_step until it holds or the deadline passes.
inline bool poll_until(Clock::time_point deadline, const std::function<bool()>& ready) {
  for (;;) {
    if (ready()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(poll_step);
  }
}

// A JSON object file written atomically by carsyncd; nullopt while absent.
inline std::optional<boost::json::object> read_json_object(const std::filesystem::path& file) {
  std::error_code ec;
  if (!std::filesystem::exists(file, ec)) return std::nullopt;
  auto v = boost::json::parse(read_file(file));
  if (!v.is_object()) return std::nullopt;
  return v.as_object();
}

// As an app would: write elsewhere in the control directory, then rename into place.
inline void drop_request(const std::filesystem::path& control_dir, std::string_view body) {
  const auto tmp_name = control_dir / ".request.json.app-tmp";
  write_file(tmp_name, std::string(body));
  std::filesystem::rename(tmp_name, control_dir / "request.json");
}

// Deterministic bytes with every value present.
inline std::string pattern_bytes(std::size_t size, std::uint32_t seed) {
  std::string s;
  s.reserve(size);
  for (std::size_t k = 0; k < size; ++k) {
    seed = seed * 1664525u + 1013904223u;
    s.push_back(static_cast<char>(seed >> 24));
  }
  return s;
}

// Random bytes below 0x80: deflate must Huffman-code them (about 7/8 of their size), so a
// build takes real time; random bytes of every value are stored at once (looks_incompressible).
inline std::string seven_bit_bytes(std::size_t size, std::uint32_t seed) {
  std::string s = pattern_bytes(size, seed);
  for (auto& c : s) c = static_cast<char>(c & 0x7f);
  return s;
}

// "http://HOST:PORT" urls from devnode's "devnode ready: cstore=URL r1fs=URL" line.
struct DevnodeUrls {
  std::string cstore, r1fs;
};
inline std::optional<DevnodeUrls> parse_devnode_ready(const std::string& log) {
  auto word_after = [&](std::string_view tag) -> std::string {
    auto pos = log.find(tag);
    if (pos == std::string::npos) return {};
    pos += tag.size();
    auto end = log.find_first_of(" \r\n", pos);
    return log.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
  };
  DevnodeUrls urls{word_after("cstore="), word_after("r1fs=")};
  if (urls.cstore.empty() || urls.r1fs.empty()) return std::nullopt;
  return urls;
}

}  // namespace carsync::test
