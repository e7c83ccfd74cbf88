#include "core/signature_error.hpp"

#include <string>

namespace carsync::core {
namespace {

class category final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "carsync.signature"; }
  std::string message(int ev) const override {
    switch (static_cast<signature_errc>(ev)) {
      case signature_errc::unsigned_record: return "record is not signed";
      case signature_errc::malformed_signature: return "malformed record signature";
      case signature_errc::unsupported_algorithm: return "unsupported signature algorithm";
      case signature_errc::unknown_key: return "record not signed by a trusted key";
      case signature_errc::bad_signature: return "record signature does not verify";
      case signature_errc::wrong_sync_key: return "record signed for another sync key";
      case signature_errc::not_canonical: return "record cannot be canonicalised";
      case signature_errc::missing_archive_hash: return "signed record without archive_sha256";
      case signature_errc::rollback: return "record sequence not newer than the last accepted";
      case signature_errc::equivocation: return "same sequence signed for another CID";
    }
    return "unknown signature error";
  }
};

}  // namespace

const boost::system::error_category& signature_category() noexcept {
  static const category instance;
  return instance;
}

std::string_view to_string(signature_errc e) noexcept {
  switch (e) {
    case signature_errc::unsigned_record: return "unsigned";
    case signature_errc::malformed_signature: return "malformed";
    case signature_errc::unsupported_algorithm: return "algorithm";
    case signature_errc::unknown_key: return "unknown_key";
    case signature_errc::bad_signature: return "bad_signature";
    case signature_errc::wrong_sync_key: return "wrong_sync_key";
    case signature_errc::not_canonical: return "not_canonical";
    case signature_errc::missing_archive_hash: return "missing_archive_hash";
    case signature_errc::rollback: return "rollback";
    case signature_errc::equivocation: return "equivocation";
  }
  return "unknown";
}

}  // namespace carsync::core
