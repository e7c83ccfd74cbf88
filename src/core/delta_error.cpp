#include "core/delta_error.hpp"

#include <string>

namespace carsync::core {
namespace {

class category final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "carsync.delta"; }
  std::string message(int ev) const override {
    switch (static_cast<delta_errc>(ev)) {
      case delta_errc::malformed_field: return "malformed delta field in the record";
      case delta_errc::unsupported_format: return "unsupported delta format version";
      case delta_errc::malformed_index: return "malformed delta index";
      case delta_errc::index_mismatch: return "delta index is not the one the record names";
      case delta_errc::pack_mismatch: return "delta pack is not the one the record names";
      case delta_errc::frame_mismatch: return "frame does not hash to its chunk id";
      case delta_errc::frame_size_mismatch: return "frame does not decompress to its declared size";
      case delta_errc::base_unusable: return "delta base is missing or unusable";
      case delta_errc::archive_mismatch: return "reassembled archive does not hash to the record's digest";
    }
    return "unknown delta error";
  }
};

}  // namespace

const boost::system::error_category& delta_category() noexcept {
  static const category instance;
  return instance;
}

std::string_view to_string(delta_errc e) noexcept {
  switch (e) {
    case delta_errc::malformed_field: return "malformed_field";
    case delta_errc::unsupported_format: return "unsupported_format";
    case delta_errc::malformed_index: return "malformed_index";
    case delta_errc::index_mismatch: return "index_mismatch";
    case delta_errc::pack_mismatch: return "pack_mismatch";
    case delta_errc::frame_mismatch: return "frame_mismatch";
    case delta_errc::frame_size_mismatch: return "frame_size_mismatch";
    case delta_errc::base_unusable: return "base_unusable";
    case delta_errc::archive_mismatch: return "archive_mismatch";
  }
  return "unknown";
}

}  // namespace carsync::core
