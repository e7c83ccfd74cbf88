#include "net/r1fs_client.hpp"

#include "backend/cid.hpp"
#include "net/store_reply.hpp"

#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include <unistd.h>

#include <random>

namespace carsync::net {

namespace json = boost::json;
namespace fs = std::filesystem;

namespace {

// CIDs are opaque (§6): anything outside [A-Za-z0-9] makes the name hex.
std::string file_name_of(std::string_view cid) {
  bool plain = !cid.empty() && cid.size() <= 200;
  for (char c : cid) plain = plain && std::isalnum(static_cast<unsigned char>(c));
  if (plain) return std::string(cid);
  static constexpr char digits[] = "0123456789abcdef";
  std::string out = "x-";
  for (unsigned char c : cid.substr(0, 100)) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 0xf]);
  }
  return out;
}

std::string temp_suffix() {
  std::random_device rd;
  return ".part-" + std::to_string(rd()) + std::to_string(rd());
}

}  // namespace

R1fsClient::R1fsClient(boost::asio::any_io_executor ex, Endpoint endpoint, fs::path download_dir,
                       HttpOptions options, std::uint64_t max_download_bytes)
    : http_(std::move(ex), std::move(endpoint), options),
      download_dir_(std::move(download_dir)),
      max_download_bytes_(max_download_bytes) {}

fs::path R1fsClient::download_path(std::string_view cid) const { return download_dir_ / file_name_of(cid); }

backend::Task<Result<std::string>> R1fsClient::add_file(fs::path file) {
  const std::string what = "r1fs add_file";
  auto name = file.filename().string();
  auto response = co_await http_.post_file("/add_file", file, name, what);
  if (!response) co_return response.error();
  auto result = envelope_result(*response, what);
  if (!result) co_return result.error();
  co_return add_file_cid(*result, what);
}

backend::Task<Result<fs::path>> R1fsClient::get_file(std::string cid) {
  const std::string what = "r1fs get_file";
  if (cid.empty()) co_return make_error(errc::invalid_record, what + ": empty CID");
  std::error_code fec;
  fs::create_directories(download_dir_, fec);
  if (fec) co_return os_error(fec.value(), what + ": create " + download_dir_.string());

  const fs::path final_path = download_path(cid);
  DownloadTarget target;
  target.path = final_path;
  target.path += temp_suffix();
  target.max_bytes = max_download_bytes_;
  std::unique_ptr<backend::Sha256> hash;
  auto expected = backend::digest_from_cid(cid);
  if (expected) target.observe = [&hash](std::uint64_t offset, std::string_view bytes) {
    if (!hash || offset == 0) hash = std::make_unique<backend::Sha256>();  // a retry starts over
    hash->update(std::as_bytes(std::span(bytes.data(), bytes.size())));
  };

  const std::string route = "/get_file" + form_query({{"cid", cid}});
  auto response = co_await http_.download(route, target, what);
  if (!response) co_return response.error();
  if (!response->body_in_file) {  // a JSON envelope: the server could not serve the CID
    auto result = envelope_result(*response, what);
    if (!result) co_return result.error();
    co_return make_error(errc::store_failure, what + ": expected file bytes, got " + json::serialize(*result));
  }
  if (expected) {
    auto got = hash ? hash->finish() : backend::Sha256().finish();
    if (got != *expected) {
      ::unlink(target.path.c_str());
      co_return make_error(errc::corrupt_archive, what + ": downloaded bytes do not match CID " + cid);
    }
  }
  fs::rename(target.path, final_path, fec);
  if (fec) {
    ::unlink(target.path.c_str());
    co_return os_error(fec.value(), what + ": rename to " + final_path.string());
  }
  co_return final_path;
}

backend::Task<Result<void>> R1fsClient::delete_file(std::string cid, bool unpin_remote, bool cleanup_local_files) {
  const std::string what = "r1fs delete_file";
  json::object body{{"cid", cid}, {"unpin_remote", unpin_remote}, {"cleanup_local_files", cleanup_local_files}};
  auto response = co_await http_.post_json("/delete_file", json::serialize(body), false, what);
  if (cleanup_local_files) ::unlink(download_path(cid).c_str());  // our copy goes either way
  if (!response) co_return response.error();
  auto result = envelope_result(*response, what);
  if (!result) co_return result.error();
  co_return delete_file_outcome(*result, what);
}

}  // namespace carsync::net
