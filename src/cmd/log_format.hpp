#pragma once
// carsyncd's log lines: one line per event on stderr, UTC timestamps, as text for people or
// as one JSON object per line for log shippers, with the syslog priority prefix journald
// reads (`<N>`, sd-daemon.h's SD_ERR..SD_DEBUG) when stderr is the journal.
//
// The product's log calls write "[<instance id>] text ... cid=<cid> ... stage <stage>"; the
// JSON form lifts those into fields by parsing the message, so no log call has to change.
#include <spdlog/common.h>

#include <sys/types.h>

#include <chrono>
#include <string>
#include <string_view>

namespace carsync::cmd {

enum class LogFormat { text, json };

// What a message says about itself. Views into the message; empty when absent.
struct LogFields {
  std::string_view instance;  // the "[id] " prefix's id
  std::string_view message;   // the message without that prefix
  std::string_view stage;     // "stage <name>" / "stage=<name>"
  std::string_view cid;       // "cid=<cid>"
};
LogFields parse_log_message(std::string_view payload);

// 2026-11-30T07:37:59.123Z (milliseconds, always UTC).
std::string utc_timestamp(std::chrono::system_clock::time_point t);

// The syslog priority of a level (sd-daemon.h: 2 critical, 3 error, 4 warning, 6 info,
// 7 debug and trace).
int syslog_priority(spdlog::level::level_enum level);

// `text` with a JSON string's escaping (quotes, backslashes, control characters) and every
// byte that is not part of valid UTF-8 replaced by U+FFFD, so each line stays valid JSON
// whatever a path in a message holds.
void append_json_string(std::string& out, std::string_view text);

// One complete line, '\n' included. Under the journal (`journal` true) the line starts
// with `<N>`, and the text form leaves the timestamp out: journald stamps every line itself.
std::string format_log_line(LogFormat format, bool journal, std::chrono::system_clock::time_point t,
                            spdlog::level::level_enum level, std::string_view payload);

// Whether JOURNAL_STREAM ("<dev>:<inode>", set by systemd for a unit whose stderr is the
// journal) names the file stderr is: only then is stderr read by journald (a child that
// inherited the variable may have had stderr redirected).
bool is_journal_stream(const char* journal_stream, dev_t dev, ino_t ino);

}  // namespace carsync::cmd
