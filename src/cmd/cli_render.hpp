#pragma once
// What `carsync status`, `history` and `watch` print, as pure functions of the control API's
// JSON (docs/control-api.md) and the time: no I/O, so every format is unit-tested.
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace carsync::cmd {

// 0 B, 999 B, 1.0 KiB, 12.3 MiB, 4.0 GiB (binary units, one decimal above bytes).
std::string human_bytes(std::uint64_t bytes);
// 1.2 MiB/s; "-" for a rate not known yet (negative).
std::string human_rate(double bytes_per_second);
// An age in seconds: 0s, 59s, 1m05s, 2h03m, 3d04h; "-" for a negative one (clock skew).
std::string human_age(double seconds);
// The first `n` characters of a CID ("-" for none).
std::string cid_prefix(std::string_view cid, std::size_t n = 12);

// One word for an operator: disabled, halted, quarantined, failing (the last attempt failed
// after the last success) or ok; the first that holds, in that order.
std::string instance_state(const boost::json::object& status);

// "[#####-----]" of `width` characters in all (width >= 3). An unknown total (0) shows a
// "<=>" that moves along as bytes are done (nothing before the first byte).
std::string progress_bar(std::uint64_t done, std::uint64_t total, std::size_t width);

// Columns padded to their widest cell; the first row is the header. Lines end in '\n'.
std::string render_table(const std::vector<std::vector<std::string>>& rows);

// `carsync status`: INSTANCE ROLE PHASE LAST-SYNC SIZE CID STATE, one row per instance of
// a GET /v1/instances answer, at time `now` (seconds since the epoch).
std::string render_status(const boost::json::object& node, double now);

// `carsync history`: DIR TIME CID VERSION SIZE (and the outcome when the entry has one) from
// a GET /v1/instances/{id}/history answer. Times are shown in UTC.
std::string render_history(const boost::json::object& history);

// True for the phases that move bytes: archiving, uploading, downloading, scanning, applying
// (and the short steps around them: stopping, publishing, restarting, finishing).
bool in_flight(std::string_view phase);

// What `watch` knows: the newest status of every instance, and per instance where its
// current step started, for the rate.
class WatchModel {
 public:
  // A `snapshot` event's data: replaces everything.
  void snapshot(const boost::json::object& node, double now);
  // An `instance` event's data.
  void update(const boost::json::object& event, double now);
  // One status object (a poll's answer).
  void set(const boost::json::object& status, double now);

  // The screen: a header, then one line per instance (in-flight ones first, with a bar of
  // bytes done/total and the rate), each at most `width` columns; at most `height` lines.
  std::vector<std::string> frame(double now, std::size_t width, std::size_t height) const;
  // The line for a terminal-less `watch`, or "" when the instance's line did not change.
  std::string change_line(std::string_view id, double now);

  bool any_in_flight() const;
  std::string_view node_id() const { return node_id_; }
  std::size_t size() const { return instances_.size(); }

 private:
  struct Tracked {
    boost::json::object status;
    std::string phase;
    double step_start = 0;          // when this phase was first seen
    std::uint64_t step_start_done = 0;
    std::string last_line;          // the change line printed last
  };
  double rate(const Tracked& t, double now) const;
  std::string line(const Tracked& t, double now, std::size_t width) const;

  std::string node_id_;
  std::map<std::string, Tracked> instances_;
};

}  // namespace carsync::cmd
