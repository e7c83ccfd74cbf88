#pragma once
// What the control API's routes mean (docs/control-api.md): each request becomes calls on
// carsync::Node, and instance changes are kept in the ApiInstances catalog. The HTTP side
// is net::ControlServer's.
//
// Runs on the node's executor (Node callbacks and its own coroutines alike), so no state
// here is shared across threads; blocking work (the catalog's file, history reads) goes to
// its own one-thread pool, which also keeps catalog writes in the order they were made.
#include "carsync/node.hpp"
#include "net/control_server.hpp"
#include "runtime/api_instances.hpp"
#include "runtime/blocking_pool.hpp"

#include <chrono>
#include <filesystem>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <set>
#include <string>

namespace carsync::runtime {

struct ControlApiOptions {
  std::filesystem::path data_dir;
  std::string version;
  // The node-wide default that instance objects are read with (NodeConfig's).
  std::optional<SystemVolumeImage> system_volume_image;
  // The longest a request waits for the node to act (publish, update and removal may wait
  // for a running request); past it the answer is 504 and the work goes on.
  std::chrono::steady_clock::duration change_timeout = std::chrono::minutes(30);
  std::chrono::steady_clock::duration keep_alive_interval = std::chrono::seconds(15);
  // GET / and GET /metrics.
  std::function<std::string(const NodeStatus&)> render_page;
  std::function<std::string()> metrics_text;
};

class ControlApi {
 public:
  // `file_ids`: the instances the configuration file defines (not changeable here).
  ControlApi(Node& node, ApiInstances& catalog, std::set<std::string> file_ids, ControlApiOptions options);
  ~ControlApi();
  ControlApi(const ControlApi&) = delete;
  ControlApi& operator=(const ControlApi&) = delete;

  net::Task<net::ControlResponse> handle(net::ControlRequest request);
  // After a reload: the file's instances now.
  void set_file_ids(std::set<std::string> ids) { file_ids_ = std::move(ids); }
  // Ends every event stream (shutdown).
  void stop();

  struct EventStream;

 private:
  net::Task<net::ControlResponse> add(std::string body);
  net::Task<net::ControlResponse> update(std::string id, std::string body);
  net::Task<net::ControlResponse> remove(std::string id, bool delete_state);
  net::Task<net::ControlResponse> publish(std::string id, std::string body, bool wait);
  net::Task<net::ControlResponse> unhalt(std::string id);
  net::Task<net::ControlResponse> history(std::string id, std::string dir, std::size_t limit);
  net::ControlResponse events();
  net::ControlResponse health() const;
  net::ControlResponse instance(const std::string& id) const;
  net::Task<Result<void>> save_catalog();
  NodeConfig defaults() const;

  Node& node_;
  ApiInstances& catalog_;
  std::set<std::string> file_ids_;
  ControlApiOptions options_;
  BlockingPool pool_{1};
  std::list<std::weak_ptr<EventStream>> streams_;
};

}  // namespace carsync::runtime
