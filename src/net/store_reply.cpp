#include "net/store_reply.hpp"

#include "core/json_text.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

namespace carsync::net {

namespace json = boost::json;

namespace {

Error failure(const std::string& what, std::string_view detail) {
  return make_error(errc::store_failure, what + ": " + std::string(detail));
}

std::string one_line(std::string_view s, std::size_t max) {
  std::string out;
  for (char c : s.substr(0, max)) out.push_back(c == '\n' || c == '\r' || c == '\t' ? ' ' : c);
  return out;
}

}  // namespace

Result<json::value> envelope_result_of(std::string_view body, const std::string& what) {
  // The node is Python: a record a reference provider published may hold NaN/Infinity.
  auto parsed = core::parse_json_python(body);
  if (!parsed && parsed.error().code == errc::invalid_record)  // JSON, but a key repeated
    return failure(what, "response refused: " + parsed.error().message);
  if (!parsed) return failure(what, "response is not JSON: " + one_line(body, 120));
  auto& doc = *parsed;
  auto* obj = doc.if_object();
  if (!obj || !obj->contains("result")) return failure(what, "response has no \"result\": " + one_line(body, 120));
  auto& result = obj->at("result");
  if (auto* r = result.if_object(); r && r->contains("error")) {
    const auto& e = r->at("error");
    return failure(what, e.is_string() ? std::string(e.get_string()) : json::serialize(e));
  }
  return std::move(result);
}

Result<std::string> add_file_cid(const json::value& result, const std::string& what) {
  const auto* obj = result.if_object();
  const auto* cid = obj ? obj->if_contains("cid") : nullptr;
  if (!cid || !cid->is_string() || cid->get_string().empty())
    return make_error(errc::no_cid, what + ": no CID in result " + json::serialize(result));
  return std::string(cid->get_string());
}

Result<void> delete_file_outcome(const json::value& result, const std::string& what) {
  const auto* obj = result.if_object();
  const auto* ok = obj ? obj->if_contains("success") : nullptr;
  if (!ok || !ok->is_bool() || !ok->get_bool()) {
    const auto* msg = obj ? obj->if_contains("message") : nullptr;
    return make_error(errc::store_failure,
                      what + ": " + (msg && msg->is_string() ? std::string(msg->get_string()) : json::serialize(result)));
  }
  return {};
}

Result<bool> hset_outcome(const json::value& result, const std::string& what) {
  if (result.is_null()) return false;
  if (!result.is_bool())
    return make_error(errc::store_failure, what + ": result is not a boolean: " + json::serialize(result));
  return result.get_bool();
}

Result<json::object> hgetall_outcome(json::value result, const std::string& what) {
  if (result.is_null()) return json::object{};  // §5.6: a server may say null for a missing hkey
  if (!result.is_object())
    return make_error(errc::store_failure, what + ": result is not an object: " + json::serialize(result));
  return std::move(result.get_object());
}

Result<void> hsync_outcome(const json::value& result, const std::string& what) {
  if (!result.is_object())
    return make_error(errc::store_failure, what + ": result is not an object: " + json::serialize(result));
  return {};
}

}  // namespace carsync::net
