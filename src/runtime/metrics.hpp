#pragma once
// A small thread-safe registry of Prometheus metrics (counters, gauges, histograms with fixed
// buckets, each family with its label sets) and its rendering in the text exposition format
// 0.0.4. Small on purpose: Debian ships no C++ Prometheus client, and carsync needs a few
// dozen series, not a framework. What carsync exposes is in runtime/node_metrics.
//
// The output is stable: families sorted by name, series by their labels (label names sorted,
// `le` last), so two renders of the same state are byte-identical and diffs read well.
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace carsync::runtime::metrics {

enum class Type { counter, gauge, histogram };

// Label name -> value. Ordered, so one set of labels has one key and one rendering.
using Labels = std::map<std::string, std::string>;

class Registry {
 public:
  Registry() = default;
  // A snapshot of another registry (taken under its lock): render-time series are set on
  // the copy, the live registry never sees them.
  Registry(const Registry& other);
  Registry& operator=(const Registry&) = delete;

  // Declares a family; using an undeclared name throws std::logic_error (a programming
  // error, not an input). `buckets`: a histogram's upper bounds, ascending; +Inf is implied.
  // Declaring a name again with the same type keeps the family as it is.
  void declare(std::string name, Type type, std::string help, std::vector<double> buckets = {});

  void inc(std::string_view name, const Labels& labels, double by = 1);      // counter; by >= 0
  void set(std::string_view name, const Labels& labels, double value);       // gauge
  void observe(std::string_view name, const Labels& labels, double value);   // histogram
  // Creates the series at zero if it does not exist: a counter that appears only at its
  // first increment hides that increment from rate().
  void touch(std::string_view name, const Labels& labels);
  // Drops every series, in every family, whose label `label` is `value` (a removed instance).
  void erase(std::string_view label, std::string_view value);

  // For tests and callers that check a value: a counter's or gauge's value, a histogram's
  // count; 0 for a series that does not exist.
  double value(std::string_view name, const Labels& labels) const;

  std::string render() const;

 private:
  struct Series {
    double value = 0;                    // counter, gauge
    std::vector<std::uint64_t> buckets;  // histogram: per bucket (not cumulative), +Inf last
    double sum = 0;
    std::uint64_t count = 0;
  };
  struct Family {
    Type type = Type::gauge;
    std::string help;
    std::vector<double> bounds;
    std::map<Labels, Series> series;
  };
  Series& series_of(std::string_view name, Type type, const Labels& labels);  // mu_ held

  mutable std::mutex mu_;
  std::map<std::string, Family, std::less<>> families_;
};

// The text format's escapes: label values escape backslash, double quote and newline; HELP
// text escapes backslash and newline.
std::string escape_label_value(std::string_view v);
std::string escape_help(std::string_view v);
// A sample value or bucket bound as Prometheus parses it: the shortest decimal that reads
// back as the same double, "+Inf", "-Inf" or "NaN".
std::string format_value(double v);

}  // namespace carsync::runtime::metrics
