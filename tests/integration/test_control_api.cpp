// The control API as an operator's tools meet it (docs/control-api.md): a real carsyncd, its
// unix socket and its read-only TCP listener, every route, the instance catalog across
// restarts, and the limits that keep a bad client from hurting the node.
#include "support/child_process.hpp"
#include "support/temp_dir.hpp"
#include "support/unix_http.hpp"

#include <boost/asio/write.hpp>
#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <sys/wait.h>

#include <csignal>
#include <map>
#include <regex>
#include <set>
#include <string>

namespace carsync::test {
namespace {

namespace json = boost::json;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

class ControlApi : public ::testing::Test {
 protected:
  json::object instance(const std::string& id, const std::string& role, const std::string& key = "k") {
    const auto root = tmp / "hosts" / id;
    fs::create_directories(root / "sys");
    fs::create_directories(root / "data");
    write_file(root / "data" / "state.txt", "state of " + id);
    return {{"id", id},
            {"system_volume", (root / "sys").string()},
            {"volumes", json::object{{(root / "data").string(), json::object{{"bind", "/app/data"}}}}},
            {"SYNC", json::object{{"ENABLED", true}, {"KEY", key}, {"TYPE", role}}}};
  }

  fs::path socket() const { return tmp / "carsyncd.sock"; }
  fs::path catalog() const { return tmp / "state" / "api_instances.json"; }

  fs::path write_config(json::array instances, const fs::path& control_socket = {}) {
    write_file(tmp / "node.json",
               json::serialize(json::object{
                   {"data_dir", (tmp / "state").string()},
                   {"node_id", "api-node"},
                   {"control_socket", (control_socket.empty() ? socket() : control_socket).string()},
                   {"metrics_listen", "127.0.0.1:0"},
                   {"volume_roots", json::array{(tmp / "hosts/*").string()}},
                   {"limits", json::object{{"progress_interval_ms", 100}}},
                   {"instances", std::move(instances)},
               }));
    return tmp / "node.json";
  }

  std::unique_ptr<ChildProcess> start(const fs::path& config) {
    auto d = std::make_unique<ChildProcess>(std::vector<std::string>{CARSYNCD_PATH, "--config", config.string()});
    EXPECT_TRUE(d->wait_for_output("carsyncd ready", 20s)) << d->output();
    std::smatch m;
    const auto out = d->output();
    if (std::regex_search(out, m, std::regex(R"(\(port (\d+)\))"))) port = static_cast<unsigned short>(std::stoi(m[1]));
    return d;
  }

  json::value get(const std::string& target, unsigned expect = 200) {
    auto r = unix_request(socket(), "GET", target);
    EXPECT_EQ(r.status, expect) << target << ": " << r.error << r.body;
    return r.status ? r.json() : json::value();
  }

  TempDir tmp;
  unsigned short port = 0;
};

// An error answer names its code (and field) as the contract says.
void expect_error(const HttpReply& r, unsigned status, std::string_view code, std::string_view field = {}) {
  ASSERT_EQ(r.status, status) << r.error << r.body;
  const auto body = r.json();
  EXPECT_EQ(body.at("error").at("code"), json::value(code)) << r.body;
  if (!field.empty()) {
    EXPECT_EQ(body.at("error").at("field"), json::value(field)) << r.body;
  }
  EXPECT_FALSE(body.at("error").at("message").as_string().empty());
}

TEST_F(ControlApi, AnswersOnAPrivateSocketWithStatusHealthAndErrorsForUnknownRoutes) {
  auto d = start(write_config(json::array{instance("file-p", "provider")}));
  struct stat st {};
  ASSERT_EQ(::stat(socket().c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  const auto health = get("/v1/health");
  EXPECT_EQ(health.at("status"), "ok");
  EXPECT_EQ(health.at("node_id"), "api-node");
  EXPECT_EQ(health.at("instances"), 1);
  const auto list = get("/v1/instances");
  ASSERT_EQ(list.at("instances").as_array().size(), 1u);
  EXPECT_EQ(list.at("instances").as_array()[0].at("id"), "file-p");
  const auto one = get("/v1/instances/file-p");
  EXPECT_EQ(one.at("role"), "provider");
  EXPECT_EQ(one.at("source"), "file");
  EXPECT_EQ(one.at("phase"), "idle");

  expect_error(unix_request(socket(), "GET", "/v1/instances/nope"), 404, "not_found");
  expect_error(unix_request(socket(), "GET", "/v2/anything"), 404, "not_found");
  auto wrong = unix_request(socket(), "DELETE", "/v1/health");
  expect_error(wrong, 405, "method_not_allowed");
}

TEST_F(ControlApi, AnInstanceAddedThroughTheApiRunsAndSurvivesARestart) {
  const auto config = write_config(json::array{instance("file-p", "provider")});
  auto d = start(config);
  auto added = unix_request(socket(), "POST", "/v1/instances", json::serialize(instance("api-c", "consumer")));
  ASSERT_EQ(added.status, 201u) << added.body;
  EXPECT_EQ(added.json().at("source"), "api");
  EXPECT_TRUE(fs::exists(catalog()));
  EXPECT_TRUE(fs::exists(tmp / "hosts/api-c/sys/volume-sync")) << "the new instance was not provisioned";

  // The same id again, from the file or the API: a conflict that changes nothing.
  const auto before = read_file(catalog());
  expect_error(unix_request(socket(), "POST", "/v1/instances", json::serialize(instance("api-c", "provider"))), 409,
               "conflict", "id");
  expect_error(unix_request(socket(), "POST", "/v1/instances", json::serialize(instance("file-p", "consumer"))), 409,
               "conflict", "id");
  EXPECT_EQ(read_file(catalog()), before);

  ASSERT_TRUE(d->terminate(30s).has_value());
  d = start(config);
  const auto again = get("/v1/instances/api-c");
  EXPECT_EQ(again.at("source"), "api");
  EXPECT_EQ(again.at("role"), "consumer");
  EXPECT_EQ(get("/v1/instances").at("instances").as_array().size(), 2u);
}

TEST_F(ControlApi, ABadInstanceIsRefusedNamingTheFieldAndChangesNothing) {
  auto d = start(write_config(json::array{}));
  auto misspelt = instance("x", "provider");
  misspelt["volumse"] = misspelt["volumes"];
  misspelt.erase("volumes");
  expect_error(unix_request(socket(), "POST", "/v1/instances", json::serialize(misspelt)), 400, "bad_request", "volumse");
  auto relative = instance("x", "provider");
  relative["system_volume"] = "relative/dir";
  expect_error(unix_request(socket(), "POST", "/v1/instances", json::serialize(relative)), 400, "bad_config",
               "system_volume");
  auto no_key = instance("x", "provider");
  no_key["SYNC"].as_object().erase("KEY");
  auto r = unix_request(socket(), "POST", "/v1/instances", json::serialize(no_key));
  EXPECT_EQ(r.status, 400u) << r.body;
  expect_error(unix_request(socket(), "POST", "/v1/instances", "{\"id\": \"x\", "), 400, "invalid_request");
  expect_error(unix_request(socket(), "POST", "/v1/instances", "[1, 2]"), 400, "invalid_request");
  EXPECT_EQ(get("/v1/instances").at("instances").as_array().size(), 0u);
  EXPECT_FALSE(fs::exists(catalog()));
}

TEST_F(ControlApi, FileInstancesAreChangedInTheFileOnlyAndApiInstancesThroughTheApi) {
  const auto config = write_config(json::array{instance("file-p", "provider")});
  auto d = start(config);
  expect_error(unix_request(socket(), "PUT", "/v1/instances/file-p", json::serialize(instance("file-p", "consumer"))),
               409, "conflict");
  expect_error(unix_request(socket(), "DELETE", "/v1/instances/file-p"), 409, "conflict");
  EXPECT_EQ(get("/v1/instances/file-p").at("role"), "provider");

  ASSERT_EQ(unix_request(socket(), "POST", "/v1/instances", json::serialize(instance("api-p", "provider"))).status, 201u);
  auto changed = instance("api-p", "provider", "other-key");
  changed.erase("id");  // the path names it
  auto updated = unix_request(socket(), "PUT", "/v1/instances/api-p", json::serialize(changed));
  ASSERT_EQ(updated.status, 200u) << updated.body;
  EXPECT_NE(read_file(catalog()).find("other-key"), std::string::npos);
  expect_error(unix_request(socket(), "PUT", "/v1/instances/api-p", json::serialize(instance("api-q", "provider"))), 400,
               "bad_config", "id");

  auto removed = unix_request(socket(), "DELETE", "/v1/instances/api-p");
  ASSERT_EQ(removed.status, 200u) << removed.body;
  get("/v1/instances/api-p", 404);
  EXPECT_EQ(read_file(catalog()).find("api-p"), std::string::npos);
  expect_error(unix_request(socket(), "DELETE", "/v1/instances/api-p"), 404, "not_found");
  ASSERT_TRUE(d->terminate(30s).has_value());
  d = start(config);
  get("/v1/instances/api-p", 404);
}

TEST_F(ControlApi, PublishAnswersWithTheSnapshotAndHistoryShowsIt) {
  auto d = start(write_config(json::array{instance("file-p", "provider"), instance("file-c", "consumer")}));
  auto published = unix_request(socket(), "POST", "/v1/instances/file-p/publish",
                                R"({"archive_paths": ["/app/data"], "metadata": {"from": "api"}})");
  ASSERT_EQ(published.status, 200u) << published.body;
  const auto cid = published.json().at("cid").as_string();
  EXPECT_FALSE(cid.empty());
  EXPECT_GT(published.json().at("size").to_number<std::int64_t>(), 0);

  const auto history = get("/v1/instances/file-p/history?dir=sent&limit=5");
  ASSERT_EQ(history.at("sent").as_array().size(), 1u);
  EXPECT_EQ(history.at("sent").as_array()[0].at("cid"), json::value(cid));
  EXPECT_FALSE(history.as_object().contains("received"));
  expect_error(unix_request(socket(), "GET", "/v1/instances/file-p/history?limit=0"), 400, "bad_request", "limit");
  expect_error(unix_request(socket(), "GET", "/v1/instances/file-p/history?dir=up"), 400, "bad_request", "dir");

  expect_error(unix_request(socket(), "POST", "/v1/instances/file-c/publish", R"({"archive_paths": ["/app/data"]})"),
               409, "wrong_role");
  expect_error(unix_request(socket(), "POST", "/v1/instances/file-p/publish", R"({"archive_paths": "nope"})"), 400,
               "invalid_request");
  expect_error(unix_request(socket(), "POST", "/v1/instances/ghost/publish", R"({"archive_paths": ["/a"]})"), 404,
               "not_found");
}

TEST_F(ControlApi, EventsStartWithASnapshotThenCarryEveryChange) {
  auto d = start(write_config(json::array{instance("file-p", "provider")}));
  EventReader events(socket());
  EXPECT_NE(events.header().find("text/event-stream"), std::string::npos) << events.header();
  auto first = events.next(10s);
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->name, "snapshot");
  EXPECT_EQ(json::parse(first->data).at("instances").as_array()[0].at("id"), "file-p");

  ASSERT_EQ(unix_request(socket(), "POST", "/v1/instances", json::serialize(instance("api-c", "consumer"))).status, 201u);
  bool seen = false;
  while (!seen) {
    auto e = events.next(10s);
    ASSERT_TRUE(e.has_value()) << "no event for the added instance";
    ASSERT_EQ(e->name, "instance");
    seen = json::parse(e->data).at("instance").at("id") == "api-c";
  }
}

TEST_F(ControlApi, EventsCarryTheProgressOfALongStep) {
  auto p = instance("file-p", "provider");
  p["SYNC"].as_object()["COMPRESSION_LEVEL"] = 9;  // slow enough to be seen moving
  write_file(tmp / "hosts/file-p/data/big.bin", seven_bit_bytes(96u << 20, 7));  // deflate-bound
  auto d = start(write_config(json::array{p}));
  EventReader events(socket());
  ASSERT_TRUE(events.next(10s).has_value());  // the snapshot
  auto accepted = unix_request(socket(), "POST", "/v1/instances/file-p/publish?wait=false",
                               R"({"archive_paths": ["/app/data"]})");
  ASSERT_EQ(accepted.status, 202u) << accepted.body;
  // Two different byte counts within one phase: the stream sampled a step while it ran.
  std::map<std::string, std::set<std::int64_t>> seen;
  bool moved = false, published = false;
  while (!published) {
    auto e = events.next(120s);
    ASSERT_TRUE(e.has_value()) << "the stream went quiet before the publish ended";
    const auto i = json::parse(e->data).at("instance");
    const auto phase = std::string(i.at("phase").as_string());
    const auto done = i.at("progress").at("done").to_number<std::int64_t>();
    if (done > 0) moved = moved || (seen[phase].insert(done).second && seen[phase].size() >= 2);
    published = !i.at("last_publish").is_null();
  }
  EXPECT_TRUE(moved) << "no progress sampled during the publish";
}

TEST_F(ControlApi, TheTcpListenerIsReadOnly) {
  auto d = start(write_config(json::array{instance("file-p", "provider")}));
  ASSERT_NE(port, 0) << d->output();
  auto health = tcp_request(port, "GET", "/v1/health");
  EXPECT_EQ(health.status, 200u) << health.error;
  EXPECT_EQ(tcp_request(port, "GET", "/v1/instances/file-p").status, 200u);
  expect_error(tcp_request(port, "POST", "/v1/instances", json::serialize(instance("x", "provider"))), 403, "read_only");
  expect_error(tcp_request(port, "POST", "/v1/instances/file-p/publish", R"({"archive_paths": ["/app/data"]})"), 403,
               "read_only");
  EXPECT_EQ(get("/v1/instances").at("instances").as_array().size(), 1u);
}

// Raw bytes on a fresh connection; the answer's status (0: none).
unsigned raw_status(const fs::path& socket, const std::string& bytes) {
  const int fd = connect_unix(socket);
  if (fd < 0) return 0;
  DeadlineStream stream(fd, 20s);
  boost::system::error_code ec;
  boost::asio::write(stream, boost::asio::buffer(bytes), ec);
  boost::beast::flat_buffer buffer;
  boost::beast::http::response_parser<boost::beast::http::string_body> parser;
  boost::beast::http::read(stream, buffer, parser, ec);
  return parser.is_header_done() ? parser.get().result_int() : 0;
}

TEST_F(ControlApi, OversizedMalformedAndChunkedRequestsAreRefused) {
  auto d = start(write_config(json::array{}));
  EXPECT_EQ(raw_status(socket(), "POST /v1/instances HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n"), 413u);
  EXPECT_EQ(raw_status(socket(), "GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(9000, 'a') + "\r\n\r\n"),
            413u);
  EXPECT_EQ(raw_status(socket(), "POST /v1/instances HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
            411u);
  EXPECT_EQ(raw_status(socket(), "BLAH\x01 / HTTP/1.1\r\n\r\n"), 400u);
  EXPECT_EQ(get("/v1/instances").at("instances").as_array().size(), 0u);
}

TEST_F(ControlApi, ConnectionsBeyondTheLimitAreAnswered503AndTheNodeKeepsServing) {
  auto d = start(write_config(json::array{}));
  std::vector<std::unique_ptr<DeadlineStream>> held;
  for (int k = 0; k < 64; ++k) {
    const int fd = connect_unix(socket());
    ASSERT_GE(fd, 0);
    held.push_back(std::make_unique<DeadlineStream>(fd, 20s));
  }
  // The held connections are accepted before the next one (one listener, in order): wait
  // until the 65th is refused rather than guess when the daemon has seen them.
  HttpReply over;
  poll_until(Clock::now() + 20s, [&] {
    over = unix_request(socket(), "GET", "/v1/health");
    return over.status == 503;
  });
  expect_error(over, 503, "unavailable");
  held.clear();
  HttpReply fine;
  EXPECT_TRUE(poll_until(Clock::now() + 20s, [&] {
    fine = unix_request(socket(), "GET", "/v1/health");
    return fine.status == 200;
  })) << fine.status << fine.body;
}

TEST_F(ControlApi, ASocketInUseOrAFileInTheWayStopsStartupAndIsLeftAlone) {
  const auto config = write_config(json::array{});
  auto d = start(config);
  // A second daemon (its own data_dir) on the same socket path.
  write_file(tmp / "other.json", json::serialize(json::object{{"data_dir", (tmp / "other").string()},
                                                              {"control_socket", socket().string()},
                                                              {"instances", json::array{}}}));
  ChildProcess second({CARSYNCD_PATH, "--config", (tmp / "other.json").string()});
  auto status = second.wait_exit(20s);
  ASSERT_TRUE(status.has_value()) << second.output();
  EXPECT_EQ(WEXITSTATUS(*status), 2);
  EXPECT_NE(second.output().find("in use"), std::string::npos) << second.output();
  EXPECT_EQ(get("/v1/health").at("status"), "ok");  // the first one still answers

  // A regular file where the socket belongs is never replaced.
  write_file(tmp / "not-a-socket", "keep me");
  write_file(tmp / "third.json", json::serialize(json::object{{"data_dir", (tmp / "third").string()},
                                                              {"control_socket", (tmp / "not-a-socket").string()},
                                                              {"instances", json::array{}}}));
  ChildProcess third({CARSYNCD_PATH, "--config", (tmp / "third.json").string()});
  status = third.wait_exit(20s);
  ASSERT_TRUE(status.has_value()) << third.output();
  EXPECT_EQ(WEXITSTATUS(*status), 2);
  EXPECT_EQ(read_file(tmp / "not-a-socket"), "keep me");

  // A socket left by a killed daemon is stale: the next one replaces it.
  d->signal(SIGKILL);
  ASSERT_TRUE(d->wait_exit(20s).has_value());
  ASSERT_TRUE(fs::exists(socket()));
  d = start(config);
  EXPECT_EQ(get("/v1/health").at("status"), "ok");
}

}  // namespace
}  // namespace carsync::test
