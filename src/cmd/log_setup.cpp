#include "cmd/log_setup.hpp"

#include <spdlog/logger.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <mutex>

namespace carsync::cmd {
namespace {

class LineSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  LineSink(int fd, LogFormat format, bool journal) : fd_(fd), format_(format), journal_(journal) {}

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    const auto line = format_log_line(format_, journal_, msg.time, msg.level,
                                      std::string_view(msg.payload.data(), msg.payload.size()));
    std::size_t off = 0;
    while (off < line.size()) {
      const ssize_t n = ::write(fd_, line.data() + off, line.size() - off);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;  // nowhere to report a failing stderr
      off += static_cast<std::size_t>(n);
    }
  }
  void flush_() override {}  // unbuffered: every line is written at once

 private:
  int fd_;
  LogFormat format_;
  bool journal_;
};

}  // namespace

std::shared_ptr<spdlog::sinks::sink> make_log_sink(int fd, LogFormat format, bool journal) {
  return std::make_shared<LineSink>(fd, format, journal);
}

bool stderr_is_journal() {
  struct stat st{};
  if (::fstat(STDERR_FILENO, &st) != 0) return false;
  return is_journal_stream(std::getenv("JOURNAL_STREAM"), st.st_dev, st.st_ino);
}

void setup_logging(LogFormat format, spdlog::level::level_enum level) {
  auto logger = std::make_shared<spdlog::logger>("carsyncd", make_log_sink(STDERR_FILENO, format, stderr_is_journal()));
  logger->set_level(level);
  spdlog::set_default_logger(std::move(logger));
}

}  // namespace carsync::cmd
