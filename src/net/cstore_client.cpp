#include "net/cstore_client.hpp"

#include "net/store_reply.hpp"

#include <boost/json/serialize.hpp>

namespace carsync::net {

namespace json = boost::json;

CStoreClient::CStoreClient(boost::asio::any_io_executor ex, Endpoint endpoint, HttpOptions options,
                           json::array peers)
    : http_(std::move(ex), std::move(endpoint), options), peers_(std::move(peers)) {}

backend::Task<Result<bool>> CStoreClient::hset(std::string hkey, std::string key, json::value value) {
  const std::string what = "cstore hset";
  json::object body{{"hkey", hkey}, {"key", key}, {"value", std::move(value)}, {"chainstore_peers", peers_}};
  auto response = co_await http_.post_json("/hset", json::serialize(body), false, what);
  if (!response) co_return response.error();
  auto result = envelope_result(*response, what);
  if (!result) co_return result.error();
  co_return hset_outcome(*result, what);
}

backend::Task<Result<std::optional<json::value>>> CStoreClient::hget(std::string hkey, std::string key) {
  const std::string what = "cstore hget";
  // Built outside the co_await: g++ 12 rejects an initializer list inside one.
  const std::string route = "/hget" + form_query({{"hkey", hkey}, {"key", key}});
  auto response = co_await http_.get(route, what);
  if (!response) co_return response.error();
  auto result = envelope_result(*response, what);
  if (!result) co_return result.error();
  if (result->is_null()) co_return std::optional<json::value>{};
  co_return std::optional<json::value>{std::move(*result)};
}

backend::Task<Result<json::object>> CStoreClient::hgetall(std::string hkey) {
  const std::string what = "cstore hgetall";
  const std::string route = "/hgetall" + form_query({{"hkey", hkey}});
  auto response = co_await http_.get(route, what);
  if (!response) co_return response.error();
  auto result = envelope_result(*response, what);
  if (!result) co_return result.error();
  co_return hgetall_outcome(std::move(*result), what);
}

backend::Task<Result<void>> CStoreClient::hsync(std::string hkey) {
  const std::string what = "cstore hsync";
  json::object body{{"hkey", hkey}};
  if (!peers_.empty()) body["chainstore_peers"] = peers_;
  auto response = co_await http_.post_json("/hsync", json::serialize(body), true, what);
  if (!response) co_return response.error();
  auto result = envelope_result(*response, what);
  if (!result) co_return result.error();
  co_return hsync_outcome(*result, what);
}

}  // namespace carsync::net
