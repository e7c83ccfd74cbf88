#include "runtime/metrics.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <stdexcept>

namespace carsync::runtime::metrics {

namespace {

std::string_view type_name(Type t) {
  switch (t) {
    case Type::counter: return "counter";
    case Type::gauge: return "gauge";
    case Type::histogram: return "histogram";
  }
  return "untyped";
}

void append_labels(std::string& out, const Labels& labels, const std::string* le = nullptr) {
  if (labels.empty() && !le) return;
  out += '{';
  bool first = true;
  for (const auto& [name, value] : labels) {
    if (!first) out += ',';
    first = false;
    out += name;
    out += "=\"";
    out += escape_label_value(value);
    out += '"';
  }
  if (le) {
    if (!first) out += ',';
    out += "le=\"";
    out += *le;
    out += '"';
  }
  out += '}';
}

void append_sample(std::string& out, std::string_view name, const Labels& labels, double value,
                   const std::string* le = nullptr) {
  out += name;
  append_labels(out, labels, le);
  out += ' ';
  out += format_value(value);
  out += '\n';
}

}  // namespace

std::string escape_label_value(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string escape_help(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v);  // shortest round-trip form
  return std::string(buf, r.ptr);
}

Registry::Registry(const Registry& other) {
  std::lock_guard l(other.mu_);
  families_ = other.families_;
}

void Registry::declare(std::string name, Type type, std::string help, std::vector<double> buckets) {
  if (type == Type::histogram && !std::is_sorted(buckets.begin(), buckets.end()))
    throw std::logic_error("metrics: buckets of " + name + " are not ascending");
  std::lock_guard l(mu_);
  auto it = families_.find(name);
  if (it != families_.end()) {
    if (it->second.type != type) throw std::logic_error("metrics: " + name + " declared with two types");
    return;
  }
  Family f;
  f.type = type;
  f.help = std::move(help);
  f.bounds = std::move(buckets);
  families_.emplace(std::move(name), std::move(f));
}

Registry::Series& Registry::series_of(std::string_view name, Type type, const Labels& labels) {
  auto it = families_.find(name);
  if (it == families_.end()) throw std::logic_error("metrics: " + std::string(name) + " is not declared");
  auto& f = it->second;
  if (f.type != type) throw std::logic_error("metrics: " + std::string(name) + " used as another type");
  auto s = f.series.find(labels);
  if (s == f.series.end()) {
    s = f.series.emplace(labels, Series{}).first;
    if (type == Type::histogram) s->second.buckets.assign(f.bounds.size() + 1, 0);
  }
  return s->second;
}

void Registry::inc(std::string_view name, const Labels& labels, double by) {
  if (!(by >= 0)) throw std::logic_error("metrics: counter " + std::string(name) + " decremented");
  std::lock_guard l(mu_);
  series_of(name, Type::counter, labels).value += by;
}

void Registry::set(std::string_view name, const Labels& labels, double value) {
  std::lock_guard l(mu_);
  series_of(name, Type::gauge, labels).value = value;
}

void Registry::observe(std::string_view name, const Labels& labels, double value) {
  std::lock_guard l(mu_);
  auto& s = series_of(name, Type::histogram, labels);
  const auto& bounds = families_.find(name)->second.bounds;
  // The first bound >= value (Prometheus buckets are "less than or equal"); none: +Inf.
  const auto i = static_cast<std::size_t>(std::lower_bound(bounds.begin(), bounds.end(), value) - bounds.begin());
  ++s.buckets[i];
  s.sum += value;
  ++s.count;
}

void Registry::touch(std::string_view name, const Labels& labels) {
  std::lock_guard l(mu_);
  auto it = families_.find(name);
  if (it == families_.end()) throw std::logic_error("metrics: " + std::string(name) + " is not declared");
  series_of(name, it->second.type, labels);
}

void Registry::erase(std::string_view label, std::string_view value) {
  std::lock_guard l(mu_);
  for (auto& [name, f] : families_)
    std::erase_if(f.series, [&](const auto& s) {
      auto it = s.first.find(std::string(label));
      return it != s.first.end() && it->second == value;
    });
}

double Registry::value(std::string_view name, const Labels& labels) const {
  std::lock_guard l(mu_);
  auto it = families_.find(name);
  if (it == families_.end()) return 0;
  auto s = it->second.series.find(labels);
  if (s == it->second.series.end()) return 0;
  return it->second.type == Type::histogram ? static_cast<double>(s->second.count) : s->second.value;
}

std::string Registry::render() const {
  std::lock_guard l(mu_);
  std::string out;
  for (const auto& [name, f] : families_) {
    out += "# HELP " + name + ' ' + escape_help(f.help) + '\n';
    out += "# TYPE " + name + ' ' + std::string(type_name(f.type)) + '\n';
    for (const auto& [labels, s] : f.series) {
      if (f.type != Type::histogram) {
        append_sample(out, name, labels, s.value);
        continue;
      }
      // Buckets are cumulative in the format: each counts every observation <= its bound.
      std::uint64_t cumulative = 0;
      for (std::size_t i = 0; i <= f.bounds.size(); ++i) {
        cumulative += s.buckets[i];
        const std::string le = i < f.bounds.size() ? format_value(f.bounds[i]) : "+Inf";
        append_sample(out, name + "_bucket", labels, static_cast<double>(cumulative), &le);
      }
      append_sample(out, name + "_sum", labels, s.sum);
      append_sample(out, name + "_count", labels, static_cast<double>(s.count));
    }
  }
  return out;
}

}  // namespace carsync::runtime::metrics
