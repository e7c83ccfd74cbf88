// DockerRuntime against a real, private Docker Engine (tests/fixtures/dockerd.sh). Where
// dockerd cannot run, the engine tests skip and say why; the transport tests always run.
#include "net/docker_client.hpp"
#include "support/shell.hpp"
#include "support/temp_dir.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/use_future.hpp>
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdlib>
#include <map>
#include <memory>
#include <optional>

namespace {

using namespace carsync;
using test::shell;
using test::shell_quote;
using namespace std::chrono_literals;
namespace asio = boost::asio;
namespace fs = std::filesystem;

template <class T>
T run(asio::awaitable<T> op) {
  asio::io_context ioc;
  auto result = asio::co_spawn(ioc, std::move(op), asio::use_future);
  ioc.run();
  return result.get();
}

// Member name -> content of every regular file in a tar archive.
std::map<std::string, std::string> tar_files(const fs::path& tar) {
  std::unique_ptr<archive, decltype(&archive_read_free)> a(archive_read_new(), archive_read_free);
  archive_read_support_format_tar(a.get());
  if (archive_read_open_filename(a.get(), tar.c_str(), 64 * 1024) != ARCHIVE_OK)
    throw std::runtime_error(archive_error_string(a.get()));
  std::map<std::string, std::string> files;
  archive_entry* entry = nullptr;
  while (archive_read_next_header(a.get(), &entry) == ARCHIVE_OK) {
    if (archive_entry_filetype(entry) != AE_IFREG) continue;
    std::string data(static_cast<std::size_t>(archive_entry_size(entry)), '\0');
    if (archive_read_data(a.get(), data.data(), data.size()) != static_cast<la_ssize_t>(data.size()))
      throw std::runtime_error("short tar member " + std::string(archive_entry_pathname(entry)));
    files[archive_entry_pathname(entry)] = std::move(data);
  }
  return files;
}

// The private engine: started by the first test that needs it, stopped (by pidfile) when the
// test program ends, so test processes without Docker tests never pay for it.
class Dockerd : public ::testing::Environment {
 public:
  static Dockerd& get();

  // The socket, or nullopt with reason() saying why the engine is unavailable.
  const std::optional<std::string>& socket() {
    if (!tried_) start();
    return socket_;
  }
  const std::string& reason() const { return reason_; }
  bool broken() const { return broken_; }  // the fixture failed for another reason than 77

  void TearDown() override {
    if (dir_) script("stop");
    dir_.reset();
  }

 private:
  static fs::path script_path() { return fs::path(__FILE__).parent_path().parent_path() / "fixtures/dockerd.sh"; }

  int script(const char* verb, std::string* out = nullptr) {
    auto r = shell("bash " + shell_quote(script_path().string()) + " " + verb + " " + shell_quote(dir_->path().string()) +
                   " 2>" + shell_quote((dir_->path() / "fixture.err").string()));
    if (out) *out += r.out;
    return r.exit_code;
  }

  void start() {
    tried_ = true;
    // An engine started once for a whole ctest run (dockerd.sh start DIR) instead of one per
    // test process; it must already have the carsync-busybox image.
    if (const char* shared = std::getenv("CARSYNC_TEST_DOCKER_SOCKET"); shared && *shared) {
      socket_ = shared;
      return;
    }
    dir_.emplace();
    std::string out;
    int rc = script("start", &out);
    while (!out.empty() && out.back() == '\n') out.pop_back();
    if (rc == 0 && !out.empty()) {
      socket_ = out;
      return;
    }
    reason_ = test::read_file(dir_->path() / "fixture.err");
    broken_ = rc != 77;
    if (broken_) reason_ = "tests/fixtures/dockerd.sh start failed (exit " + std::to_string(rc) + "): " + reason_;
  }

  bool tried_ = false;
  bool broken_ = false;
  std::optional<test::TempDir> dir_;
  std::optional<std::string> socket_;
  std::string reason_;
};

// Registered before main() so that gtest tears it down after the last test.
Dockerd* const kDockerd = static_cast<Dockerd*>(::testing::AddGlobalTestEnvironment(new Dockerd));
Dockerd& Dockerd::get() { return *kDockerd; }

class DockerRuntimeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto& engine = Dockerd::get();
    if (!engine.socket()) {
      if (engine.broken()) FAIL() << engine.reason();
      GTEST_SKIP() << engine.reason();
    }
    socket_ = *engine.socket();
    limits_.stop_grace = 1s;  // `sleep` as PID 1 ignores SIGTERM: keep the kill fallback short
    client_.emplace(socket_, limits_);

    name_ = "carsync-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name();
    boost::json::object spec{
        {"Image", "carsync-busybox:latest"},
        {"Cmd", boost::json::array{"sh", "-c", "sleep 3600"}},
        {"HostConfig", {{"Binds", boost::json::array{volume_.path().string() + ":/data"}}, {"NetworkMode", "none"}}},
    };
    auto id = run(client_->create_container(name_, spec));
    ASSERT_TRUE(id) << id.error().message;
    created_ = true;
    auto started = run(client_->start(name_));
    ASSERT_TRUE(started) << started.error().message;
    ASSERT_TRUE(running());
  }

  void TearDown() override {
    if (created_) {
      auto removed = run(client_->remove_container(name_));
      EXPECT_TRUE(removed) << removed.error().message;
    }
  }

  bool running() {
    auto r = run(client_->is_running(name_));
    if (!r) throw std::runtime_error(r.error().message);
    return *r;
  }

  net::DockerRuntime runtime() { return net::DockerRuntime(name_, socket_, limits_); }

  test::TempDir volume_;  // bind-mounted at /data
  test::TempDir scratch_;
  std::string socket_;
  std::string name_;
  net::DockerLimits limits_;
  std::optional<net::DockerClient> client_;
  bool created_ = false;
};

TEST_F(DockerRuntimeTest, StopConfirmsTheContainerIsNotRunning) {
  auto rt = runtime();
  EXPECT_TRUE(rt.has_container());
  auto stopped = run(rt.stop());
  ASSERT_TRUE(stopped) << stopped.error().message;
  EXPECT_FALSE(running());
}

TEST_F(DockerRuntimeTest, StopOfAStoppedContainerSucceeds) {
  auto rt = runtime();
  ASSERT_TRUE(run(rt.stop()));
  auto again = run(rt.stop());  // the engine answers 304
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_FALSE(running());
}

TEST_F(DockerRuntimeTest, StartRunsTheStoppedContainerAgainWithItsVolume) {
  auto rt = runtime();
  ASSERT_TRUE(run(rt.stop()));
  test::write_file(volume_ / "written-while-stopped.txt", "offline apply");
  auto started = run(rt.start());
  ASSERT_TRUE(started) << started.error().message;
  EXPECT_TRUE(running());

  auto out = scratch_ / "archive.tar";
  auto exported = run(rt.export_path("/data/written-while-stopped.txt", out));
  ASSERT_TRUE(exported) << exported.error().message;
  EXPECT_EQ(tar_files(out).at("written-while-stopped.txt"), "offline apply");
}

TEST_F(DockerRuntimeTest, StartOfARunningContainerSucceeds) {
  auto rt = runtime();
  auto started = run(rt.start());  // the engine answers 304
  ASSERT_TRUE(started) << started.error().message;
  EXPECT_TRUE(running());
}

TEST_F(DockerRuntimeTest, ExportStreamsTheTarOfAVolumePath) {
  test::write_file(volume_ / "app/state.json", R"({"n": 1})");
  test::write_file(volume_ / "app/sub/blob.bin", std::string(3000, 'x'));
  auto out = scratch_ / "archive.tar";
  auto rt = runtime();
  auto exported = run(rt.export_path("/data/app", out));
  ASSERT_TRUE(exported) << exported.error().message;
  auto files = tar_files(out);
  ASSERT_EQ(files.size(), 2u);
  EXPECT_EQ(files.at("app/state.json"), R"({"n": 1})");
  EXPECT_EQ(files.at("app/sub/blob.bin"), std::string(3000, 'x'));
}

TEST_F(DockerRuntimeTest, ExportStreamsALargeNonVolumePathInChunks) {
  // /bin/busybox (about 2 MB) lives in the image, not on a volume: only online capture sees it.
  auto out = scratch_ / "busybox.tar";
  auto rt = runtime();
  auto exported = run(rt.export_path("/bin/busybox", out));
  ASSERT_TRUE(exported) << exported.error().message;
  auto files = tar_files(out);
  ASSERT_EQ(files.count("busybox"), 1u);
  EXPECT_EQ(files.at("busybox"), test::read_file("/bin/busybox"));
}

TEST_F(DockerRuntimeTest, ExportOfAMissingPathNamesThePath) {
  auto out = scratch_ / "archive.tar";
  auto rt = runtime();
  auto exported = run(rt.export_path("/data/no-such-file", out));
  ASSERT_FALSE(exported);
  EXPECT_EQ(exported.error().code, errc::not_found);
  EXPECT_NE(exported.error().message.find("/data/no-such-file"), std::string::npos) << exported.error().message;
  EXPECT_FALSE(fs::exists(out));
}

TEST_F(DockerRuntimeTest, ExportOverTheSizeCapFailsAndLeavesNoFile) {
  limits_.max_archive_bytes = 256 * 1024;
  auto out = scratch_ / "busybox.tar";
  auto rt = runtime();
  auto exported = run(rt.export_path("/bin/busybox", out));
  ASSERT_FALSE(exported);
  EXPECT_EQ(exported.error().code, errc::limit_exceeded) << exported.error().message;
  EXPECT_FALSE(fs::exists(out));
}

TEST_F(DockerRuntimeTest, StopOfAMissingContainerIsNotConfirmed) {
  std::string missing = name_ + "-missing";
  net::DockerRuntime rt(missing, socket_, limits_);
  auto stopped = run(rt.stop());
  ASSERT_FALSE(stopped);
  EXPECT_EQ(stopped.error().code, errc::runtime_stop_failed);
  EXPECT_NE(stopped.error().message.find(missing), std::string::npos) << stopped.error().message;
  EXPECT_TRUE(running());  // the real container was not touched
}

// --- Transport, without an engine ---------------------------------------------------------

class EnvVar {
 public:
  EnvVar(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value) ::setenv(name, value, 1);
    else ::unsetenv(name);
  }
  ~EnvVar() {
    if (old_) ::setenv(name_, old_->c_str(), 1);
    else ::unsetenv(name_);
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

TEST(DockerSocket, ConfiguredValueWinsOverDockerHost) {
  EnvVar host("DOCKER_HOST", "unix:///from/env.sock");
  EXPECT_EQ(net::docker_socket_path(std::string("unix:///run/app/docker.sock")).value(), "/run/app/docker.sock");
  EXPECT_EQ(net::docker_socket_path(std::string("/run/plain.sock")).value(), "/run/plain.sock");
  EXPECT_EQ(net::docker_socket_path(std::nullopt).value(), "/from/env.sock");
}

TEST(DockerSocket, DefaultsToTheStandardSocket) {
  EnvVar host("DOCKER_HOST", nullptr);
  EXPECT_EQ(net::docker_socket_path(std::nullopt).value(), "/var/run/docker.sock");
}

TEST(DockerSocket, RejectsNonUnixEndpoints) {
  EnvVar host("DOCKER_HOST", "tcp://10.0.0.1:2375");
  auto r = net::docker_socket_path(std::nullopt);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::bad_config);
  EXPECT_NE(r.error().message.find("tcp://10.0.0.1:2375"), std::string::npos);
  EXPECT_FALSE(net::docker_socket_path(std::string("relative.sock")));
}

TEST(DockerTransport, MissingSocketIsRuntimeUnavailableNamingIt) {
  test::TempDir dir;
  auto sock = (dir / "absent.sock").string();
  net::DockerRuntime rt("app", sock);
  auto started = run(rt.start());
  ASSERT_FALSE(started);
  EXPECT_EQ(started.error().code, errc::runtime_unavailable);
  EXPECT_NE(started.error().message.find(sock), std::string::npos) << started.error().message;
}

TEST(DockerTransport, SilentEngineTimesOutInsteadOfHanging) {
  test::TempDir dir;
  auto sock = (dir / "silent.sock").string();
  asio::io_context ioc;
  // Listening but never answering: connect and write succeed, the reply never comes.
  asio::local::stream_protocol::acceptor silent(ioc, asio::local::stream_protocol::endpoint(sock));
  net::DockerLimits limits;
  limits.io_timeout = 200ms;
  net::DockerRuntime rt("app", sock, limits);
  auto stopped = asio::co_spawn(ioc, rt.stop(), asio::use_future);
  ioc.run();
  auto r = stopped.get();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::timeout) << r.error().message;
  EXPECT_NE(r.error().message.find("/version"), std::string::npos) << r.error().message;
}

}  // namespace
