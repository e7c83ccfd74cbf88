#include "net/r1_backend.hpp"

#include "net/cstore_client.hpp"
#include "net/r1fs_client.hpp"

#include <boost/json/parse.hpp>

#include <cstdlib>
#include <initializer_list>

namespace carsync::net {

namespace {

std::string first_of(const std::string& configured, std::initializer_list<const char*> vars, const char* fallback) {
  if (!configured.empty()) return configured;
  for (const char* var : vars)
    if (const char* v = std::getenv(var); v && *v) return v;
  return fallback;
}

boost::json::array peers_from_env() {
  for (const char* var : {"EE_CHAINSTORE_PEERS", "R1EN_CHAINSTORE_PEERS"}) {
    const char* v = std::getenv(var);
    if (!v || !*v) continue;
    boost::system::error_code ec;
    auto parsed = boost::json::parse(v, ec);
    if (!ec && parsed.is_array()) return parsed.get_array();
    return {};
  }
  return {};
}

Endpoint endpoint_or_throw(const std::string& url, const char* service) {
  auto ep = parse_base_url(url);
  if (!ep) throw ConfigError(std::string(service) + ": " + ep.error().message);
  return *ep;
}

}  // namespace

std::pair<std::unique_ptr<backend::ContentStore>, std::unique_ptr<backend::KvStore>> make_r1_backend(
    const BackendConfig& config, boost::asio::any_io_executor ex, const std::filesystem::path& download_dir,
    std::chrono::seconds timeout) {
  auto cstore = endpoint_or_throw(
      first_of(config.cstore_url, {"CSTORE_API_URL", "EE_CHAINSTORE_API_URL", "R1EN_CHAINSTORE_API_URL"},
               "localhost:31234"),
      "cstore_url");
  auto r1fs = endpoint_or_throw(
      first_of(config.r1fs_url, {"R1FS_API_URL", "EE_R1FS_API_URL", "R1EN_R1FS_API_URL"}, "localhost:31235"),
      "r1fs_url");
  HttpOptions options;
  options.io_timeout = timeout;
  auto content = std::make_unique<R1fsClient>(ex, std::move(r1fs), download_dir, options);
  auto kv = std::make_unique<CStoreClient>(ex, std::move(cstore), options, peers_from_env());
  return {std::move(content), std::move(kv)};
}

}  // namespace carsync::net
