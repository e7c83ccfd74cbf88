#pragma once
// devnode: a local emulator of an edge node's CStore and R1FS manager APIs
// (r1-http-api.md §8), serving the embedded stores under a data directory:
//   <data_dir>/kv          hashes (LocalKv; `carsync kv ...` sees the same data)
//   <data_dir>/cas         blobs (LocalCas; CIDs are CIDv1 raw sha2-256)
//   <data_dir>/devnode/    plain set/get keys, uploaded file names, temporary uploads
//
// Deviations from a real node, all harmless to clients: no encryption (`secret` and
// `nonce` are accepted and ignored, so equal bytes get equal CIDs); hsync merges nothing
// (one replica); delete_file with unpin_remote=false keeps the blob (the emulated node's
// own pin is the only one); add_yaml stores the data as JSON text (valid YAML), and
// get_yaml reads back only such files.
//
// One coroutine per connection, at most max_connections at once (the acceptor waits for a
// free slot), a deadline on every read and write. Store calls run on a small blocking
// pool. Must run on a single-threaded executor (or a strand).
//
// Traffic counters (DevnodeStats), per service, are served by a devnode-only route that a
// real node does not have: `GET /devnode/stats` on each service's port answers that
// service's counters as a plain JSON object (no envelope):
//   {"service": "r1fs", "requests": N, "responses": N, "cut_responses": N,
//    "file_responses": N, "body_bytes_sent": N, "file_bytes_sent": N,
//    "header_bytes_sent": N, "request_body_bytes_received": N}
// The stats route is never counted (neither its request nor its answer) and never matched by
// --faults rules, so two reads with no traffic between them answer the same numbers and a
// benchmark's before/after difference is the traffic it caused, exactly.
#include "core/error.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace carsync::net {

// Fault injection (`carsync-devnode --faults SPEC`), for tests of clients against a
// misbehaving node. SPEC is a comma-separated list of ROUTE:ACTION[:WHEN]:
//   ROUTE   an endpoint name ("hset", "get_file", ...) or "*" for every route, optionally
//           with one query condition: "get_file?cid=CID" or "hget?key=K" fires only for
//           requests carrying that parameter value
//   ACTION  a status code 400..599  answer with it and {"detail": "injected fault"}
//           hang                     read the request, never answer
//           reset                    read the request, then abort the connection (TCP RST)
//           truncate                 get_file: announce the full length, send half, close
//           corrupt                  get_file: flip one byte of the content
//   WHEN    a probability in [0, 1] (default 1), or #N: the first N matching requests
// The first rule whose ROUTE matches and whose WHEN fires applies. Example:
//   "hset:500:0.5,get_file:hang,add_file:reset,hget:503:#2"
class FaultPlan {
 public:
  enum class Action { status, hang, reset, truncate, corrupt };
  struct Fault {
    std::string route;
    Action action = Action::status;
    unsigned status = 500;
    double probability = 1.0;
    std::optional<unsigned> first_n;  // remaining count for #N
  };

  static Result<FaultPlan> parse(std::string_view spec);
  // The fault to inject into this request of `route`, if any.
  std::optional<Fault> pick(std::string_view route);
  bool empty() const noexcept { return faults_.empty(); }

 private:
  std::vector<Fault> faults_;
  std::uint64_t rng_state_ = 0x9e3779b97f4a7c15ull;
};

// One service's traffic since the devnode started, the stats route excluded. Bytes are
// counted as each write completes (what the kernel accepted for the socket, partial writes
// included): a download the client cuts counts what was sent, not the file's size.
struct DevnodeStats {
  std::uint64_t requests = 0;                     // request heads read
  std::uint64_t responses = 0;                    // answers written in full
  std::uint64_t cut_responses = 0;                // answers whose write failed (or truncate faults)
  std::uint64_t file_responses = 0;               // of both: get_file downloads (raw bodies)
  std::uint64_t body_bytes_sent = 0;              // every answer's body bytes, downloads included
  std::uint64_t file_bytes_sent = 0;              // of which download bodies
  std::uint64_t header_bytes_sent = 0;            // status lines and headers (100-continue included)
  std::uint64_t request_body_bytes_received = 0;  // request body bytes as read (chunked framing excluded)
};

struct DevnodeOptions {
  std::filesystem::path data_dir;
  std::string listen = "127.0.0.1";
  std::uint16_t cstore_port = 31234;  // 0: an ephemeral port
  std::uint16_t r1fs_port = 31235;
  std::string faults;  // FaultPlan syntax
  std::size_t max_connections = 128;
  std::chrono::steady_clock::duration io_timeout = std::chrono::seconds(30);
  std::uint64_t max_upload_bytes = std::uint64_t{8} << 30;
  std::uint64_t max_json_bytes = 64 * 1024 * 1024;  // JSON bodies, base64 uploads included
};

class Devnode {
 public:
  // Binds both listeners (bad config, busy ports and bad fault specs fail here).
  static Result<std::unique_ptr<Devnode>> create(boost::asio::any_io_executor ex, DevnodeOptions options);
  ~Devnode();

  std::uint16_t cstore_port() const noexcept;
  std::uint16_t r1fs_port() const noexcept;
  std::string cstore_url() const;
  std::string r1fs_url() const;

  // The counters served at /devnode/stats. Call on the devnode's executor.
  DevnodeStats cstore_stats() const noexcept;
  DevnodeStats r1fs_stats() const noexcept;

  // Serves until stop() and returns once every connection has closed.
  boost::asio::awaitable<void> run();
  // Stops accepting, lets requests in progress finish, closes idle connections. Call on
  // the devnode's executor.
  void stop();

  struct Impl;

 private:
  explicit Devnode(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace carsync::net
