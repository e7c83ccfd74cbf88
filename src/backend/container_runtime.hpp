#pragma once
// Stopping and starting the app's container around offline capture and apply.
// The Docker Engine implementation lives in src/net; `container: null` uses NoContainer.
#include "core/error.hpp"

#include <boost/asio/awaitable.hpp>

#include <filesystem>
#include <string>

namespace carsync::backend {

class ContainerRuntime {
 public:
  virtual ~ContainerRuntime() = default;
  // Stops (graceful timeout, then kill) and confirms the container is not running.
  virtual boost::asio::awaitable<Result<void>> stop() = 0;
  virtual boost::asio::awaitable<Result<void>> start() = 0;
  // Online capture: the container's tar stream of `container_path` into `out`.
  virtual boost::asio::awaitable<Result<void>> export_path(std::string container_path,
                                                          std::filesystem::path out) = 0;
  virtual bool has_container() const noexcept = 0;
};

// An instance without a container: nothing to stop or start, no online capture.
class NoContainer final : public ContainerRuntime {
 public:
  boost::asio::awaitable<Result<void>> stop() override;
  boost::asio::awaitable<Result<void>> start() override;
  boost::asio::awaitable<Result<void>> export_path(std::string, std::filesystem::path) override;
  bool has_container() const noexcept override { return false; }
};

}  // namespace carsync::backend
