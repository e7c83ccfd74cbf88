#pragma once
// A devnode on ephemeral 127.0.0.1 ports over a temporary data dir, and a way to run one
// test coroutine against it on the same single-threaded io_context.
#include "tools/devnode/devnode.hpp"
#include "net/http_client.hpp"
#include "support/temp_dir.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <gtest/gtest.h>

#include <exception>
#include <memory>
#include <optional>
#include <string>

namespace carsync::test {

class DevnodeTest : public ::testing::Test {
 protected:
  void start_devnode(std::string faults = "") {
    net::DevnodeOptions options;
    options.data_dir = tmp_ / "data";
    options.cstore_port = 0;
    options.r1fs_port = 0;
    options.faults = std::move(faults);
    auto node = net::Devnode::create(io_.get_executor(), options);
    ASSERT_TRUE(node) << node.error().message;
    node_ = std::move(*node);
    boost::asio::co_spawn(io_, node_->run(), boost::asio::detached);
  }

  // Runs `task` to completion, then stops the devnode and drains the context.
  template <class T>
  T run(boost::asio::awaitable<T> task) {
    std::optional<T> out;
    std::exception_ptr error;
    boost::asio::co_spawn(io_, std::move(task), [&](std::exception_ptr e, T value) {
      error = e;
      if (!e) out.emplace(std::move(value));
      if (node_) node_->stop();
    });
    io_.run();
    if (error) std::rethrow_exception(error);
    return std::move(*out);
  }

  net::Endpoint cstore_endpoint() const { return net::parse_base_url(node_->cstore_url()).value(); }
  net::Endpoint r1fs_endpoint() const { return net::parse_base_url(node_->r1fs_url()).value(); }

  // Fast failure in tests: short step deadline, quick backoff.
  static net::HttpOptions quick_options() {
    net::HttpOptions o;
    o.io_timeout = std::chrono::seconds(5);
    o.backoff = std::chrono::milliseconds(1);
    return o;
  }

  boost::asio::io_context io_;
  TempDir tmp_;
  std::unique_ptr<net::Devnode> node_;
};

}  // namespace carsync::test
