#pragma once
// The "r1" backend: the node's R1FS and CStore APIs over HTTP.
#include "backend/stores.hpp"
#include "carsync/config.hpp"

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <filesystem>
#include <memory>
#include <utility>

namespace carsync::net {

// URLs come from the config, else from the environment the edge node gives containers, in
// this order: CStore CSTORE_API_URL, EE_CHAINSTORE_API_URL, R1EN_CHAINSTORE_API_URL, then
// "localhost:31234"; R1FS R1FS_API_URL, EE_R1FS_API_URL, R1EN_R1FS_API_URL, then
// "localhost:31235". Peers come from EE_CHAINSTORE_PEERS (or R1EN_CHAINSTORE_PEERS), a
// JSON array; one that does not parse counts as [] (as in the SDK). `timeout` bounds each
// network step of a call (see net/http_client.hpp). An unusable URL throws ConfigError.
std::pair<std::unique_ptr<backend::ContentStore>, std::unique_ptr<backend::KvStore>> make_r1_backend(
    const BackendConfig& config, boost::asio::any_io_executor ex, const std::filesystem::path& download_dir,
    std::chrono::seconds timeout);

}  // namespace carsync::net
