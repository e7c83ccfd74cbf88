#pragma once
// The Docker Engine API over its unix socket: only the calls carsync needs to stop, start and
// read from an app's container (spec §4.2, §7.1, §7.2). Every connect, write and read has its
// own deadline, so a wedged engine turns into errc::timeout instead of a hung instance.
#include "backend/container_runtime.hpp"
#include "core/error.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace carsync::net {

// Where the engine listens: `configured` ("unix:///path" or "/path") when given, else
// DOCKER_HOST, else /var/run/docker.sock. Only unix sockets are supported (errc::bad_config).
Result<std::string> docker_socket_path(const std::optional<std::string>& configured);

struct DockerLimits {
  std::chrono::steady_clock::duration io_timeout = std::chrono::seconds(30);  // one connect/write/read
  std::chrono::seconds stop_grace{5};            // SIGTERM -> SIGKILL (docker stop ?t=)
  std::chrono::steady_clock::duration wait_timeout = std::chrono::seconds(30);  // confirming "not running"
  std::uint64_t max_reply_bytes = 1 << 20;       // JSON replies
  std::uint64_t max_archive_bytes = std::uint64_t{16} << 30;  // one online-capture tar stream
};

enum class Method { get, post, del };

struct DockerReply {
  unsigned status = 0;
  std::string body;
};

class DockerClient {
 public:
  explicit DockerClient(std::string socket_path, DockerLimits limits = {});

  const std::string& socket_path() const noexcept { return socket_; }

  // The API version used as the path prefix: the engine's, capped at the newest one carsync
  // was written against. Asked once, on first use.
  boost::asio::awaitable<Result<std::string>> api_version();

  // One versioned call ("/containers/x/json") on a fresh connection. Any HTTP status is a
  // value; only transport failures, timeouts and oversized replies are errors.
  boost::asio::awaitable<Result<DockerReply>> call(Method method, std::string target,
                                                   std::string json_body,
                                                   std::chrono::steady_clock::duration read_timeout);

  // errc::not_found when the engine does not know the container.
  boost::asio::awaitable<Result<bool>> is_running(std::string container);
  // Stops (stop_grace, then SIGKILL) and confirms the container is no longer running.
  boost::asio::awaitable<Result<void>> stop(std::string container);
  boost::asio::awaitable<Result<void>> start(std::string container);
  // The engine's tar stream of `container_path` written to `out` (created or truncated, 0600;
  // removed again on failure). errc::not_found names the path when the engine answers 404.
  boost::asio::awaitable<Result<void>> export_path(std::string container, std::string container_path,
                                                   std::filesystem::path out);

  // Container management for tools and tests; carsync itself never creates or removes.
  boost::asio::awaitable<Result<std::string>> create_container(std::string name,
                                                               boost::json::object spec);
  boost::asio::awaitable<Result<void>> remove_container(std::string container);  // forced

 private:
  std::string socket_;
  DockerLimits limits_;
  std::optional<std::string> version_;
};

// The runtime of an instance with `container: <name>`.
//
// Deviation from the reference (§4.2): the reference stops *and removes* the container and
// later runs a fresh one from the same image, env and volume map. carsync does not own the
// container's definition, so it stops it and starts the same container again. Nothing is
// lost: the synced volumes are bind mounts of the instance's host directories, which
// outlive the container either way, and offline capture/apply only need it not running.
class DockerRuntime final : public backend::ContainerRuntime {
 public:
  DockerRuntime(std::string container, std::string socket_path, DockerLimits limits = {});

  // Failures are errc::runtime_stop_failed (or errc::timeout) with the engine's reason; the
  // provider lifecycle reports its own fixed text (§5.4 stage runtime_stop).
  boost::asio::awaitable<Result<void>> stop() override;
  boost::asio::awaitable<Result<void>> start() override;
  boost::asio::awaitable<Result<void>> export_path(std::string container_path,
                                                   std::filesystem::path out) override;
  bool has_container() const noexcept override { return true; }

  DockerClient& client() noexcept { return client_; }

 private:
  std::string container_;
  DockerClient client_;
};

}  // namespace carsync::net
