#pragma once
// Installs carsyncd's log sink as spdlog's default logger: every line on stderr in the
// chosen format (cmd/log_format.hpp), with journald priorities when stderr is the journal.
#include "cmd/log_format.hpp"

#include <spdlog/common.h>
#include <spdlog/sinks/sink.h>

#include <memory>

namespace carsync::cmd {

// A sink writing format_log_line() lines to `fd`, each with a single write(2) so lines from
// several threads never interleave (and a pipe reader sees whole lines).
std::shared_ptr<spdlog::sinks::sink> make_log_sink(int fd, LogFormat format, bool journal);

// Whether stderr is journald's stream (JOURNAL_STREAM names it).
bool stderr_is_journal();

// The default logger: stderr, `format`, `level`, journald priorities when stderr_is_journal().
void setup_logging(LogFormat format, spdlog::level::level_enum level);

}  // namespace carsync::cmd
