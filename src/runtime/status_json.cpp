#include "runtime/status_json.hpp"

#include <boost/json/array.hpp>
#include <boost/json/value.hpp>

namespace carsync::runtime {

namespace json = boost::json;

namespace {

template <class T, class F>
json::value or_null(const std::optional<T>& v, F&& f) {
  return v ? json::value(f(*v)) : json::value(nullptr);
}

json::value text(std::string_view s) { return json::value(json::string(s)); }

json::object to_json(const SyncPoint& p) {
  return {{"cid", p.cid}, {"version", p.version}, {"time", p.time}, {"size", p.size}};
}

}  // namespace

json::object to_json(const InstanceStatus& s) {
  return {
      {"id", s.id},
      {"role", text(to_string(s.role))},
      {"enabled", s.enabled},
      {"config_error", or_null(s.config_error, [](const std::string& e) { return text(e); })},
      {"phase", text(to_string(s.phase))},
      {"progress", json::object{{"done", s.progress.done}, {"total", s.progress.total}}},
      {"requests_ok", s.requests_ok},
      {"requests_failed", s.requests_failed},
      {"last_cid", or_null(s.last_cid, [](const std::string& c) { return text(c); })},
      {"last_error", or_null(s.last_error, [](const std::string& e) { return text(e); })},
      {"error", or_null(s.error,
                        [](const LastError& e) {
                          return json::object{{"stage", text(to_string(e.stage))}, {"message", e.message},
                                              {"time", e.time}};
                        })},
      {"last_publish", or_null(s.last_publish, [](const SyncPoint& p) { return to_json(p); })},
      {"last_apply", or_null(s.last_apply, [](const SyncPoint& p) { return to_json(p); })},
      {"quarantine", or_null(s.quarantine,
                             [](const QuarantineInfo& q) {
                               return json::object{{"cid", q.cid}, {"stage", text(to_string(q.stage))},
                                                   {"failure_count", q.failure_count}, {"until", q.until}};
                             })},
      {"halted", s.halted},
      {"signature_failures", s.signature_failures},
      {"last_duration_s", s.last_duration_s},
      {"generation", s.generation},
  };
}

json::object to_json(const NodeStatus& s) {
  json::array instances;
  instances.reserve(s.instances.size());
  for (const auto& i : s.instances) instances.emplace_back(to_json(i));
  return {{"node_id", s.node_id},
          {"file_engine", s.file_engine},
          {"running", s.running},
          {"generation", s.generation},
          {"instances", std::move(instances)}};
}

json::object to_json(const StatusEvent& e) {
  return {{"generation", e.generation},
          {"removed", e.removed},
          {"progress", e.progress},
          {"instance", to_json(e.instance)}};
}

}  // namespace carsync::runtime
