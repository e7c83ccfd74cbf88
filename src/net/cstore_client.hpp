#pragma once
// backend::KvStore over the node's CStore manager API (r1-http-api.md §5).
//
// Values travel as the JSON value itself, never re-encoded: hset sends
// {"hkey", "key", "value": <value>, "chainstore_peers": [...]} and hget returns the stored
// `result` as it came. In particular the sync record is published as a JSON *object*,
// exactly as the Python reference does (it hands its dict to chainstore_hset in-process),
// so a Python consumer reading our record sees a dict and we read a Python provider's
// record as an object. A string value (what SDK users store, JSON.stringify'd) stays a
// string both ways; interpreting it is the caller's business (the record validator rejects
// a non-object record, as the reference does).
#include "backend/stores.hpp"
#include "net/http_client.hpp"

#include <boost/json/array.hpp>

#include <optional>

namespace carsync::net {

class CStoreClient final : public backend::KvStore {
 public:
  // `peers`: the node's EE_CHAINSTORE_PEERS. hset always sends it (as the SDK does, [] when
  // unset); hsync sends it only when non-empty, because an omitted list means "use the
  // server's default peer selection" while a sent one adds extra peers (§5.7).
  CStoreClient(boost::asio::any_io_executor ex, Endpoint endpoint, HttpOptions options = {},
               boost::json::array peers = {});

  backend::Task<Result<bool>> hset(std::string hkey, std::string key, boost::json::value value) override;
  backend::Task<Result<std::optional<boost::json::value>>> hget(std::string hkey, std::string key) override;
  backend::Task<Result<boost::json::object>> hgetall(std::string hkey) override;
  // Retried like a GET: the merge only adds fields, so repeating it is harmless.
  backend::Task<Result<void>> hsync(std::string hkey) override;

 private:
  HttpClient http_;
  boost::json::array peers_;
};

}  // namespace carsync::net
