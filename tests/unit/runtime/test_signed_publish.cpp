// A provider with "signing" signs every record it publishes: a consumer trusting its key
// verifies it, the sequence only grows (across requests, and after a restart from the sent
// history), and a request whose metadata cannot be signed is refused before the app stops.
#include "core/record_signature.hpp"
#include "runtime/provider_run.hpp"
#include "support/provider_fixture.hpp"

#include <boost/json.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace carsync::test {
namespace {

namespace json = boost::json;
using ::testing::HasSubstr;

class SignedPublish : public ProviderFixture, public ::testing::Test {
 protected:
  SignedPublish() : key(core::SecretKey::generate()) {
    signing_keys = {key};
    write_file(appdata() / "state.txt", "provider state\n");
  }

  json::object publish_once() {
    write_request(R"({"archive_paths": ["/app/data"], "metadata": {"epoch": 1}})");
    auto out = run_once();
    if (!out.succeeded) throw std::runtime_error("publish failed: " + out.error);
    return kv.hsets.back().value.as_object();
  }

  core::SignatureVerdict verify(const json::object& record, const core::TrustState& state = {}) const {
    const std::vector<core::PublicKey> trusted{key.public_key()};
    return core::verify_record(record, core::sync_hkey, sync_key, trusted, state);
  }

  core::SecretKey key;
};

TEST_F(SignedPublish, EveryRecordIsSignedAndVerifies) {
  const auto record = publish_once();
  EXPECT_EQ(record.at("sync_key"), json::value(sync_key));
  ASSERT_TRUE(record.contains("archive_sha256"));
  const auto verdict = verify(record);
  ASSERT_FALSE(verdict.error) << verdict.reason;
  EXPECT_EQ(verdict.key_ids, std::vector<std::string>{key.public_key().id()});
  // At least the wall clock in milliseconds: it keeps growing if the provider loses state.
  EXPECT_GE(verdict.sequence, static_cast<std::int64_t>(clock.peek() * 1000) - 1000);
}

TEST_F(SignedPublish, SequenceGrowsAcrossRequestsEvenWhenTheClockDoesNot) {
  const auto first = publish_once();
  const auto second = publish_once();  // the fake clock has not moved
  EXPECT_GT(second.at("sequence").as_int64(), first.at("sequence").as_int64());
  // A consumer that applied the first accepts the second.
  const auto accepted = core::accept({}, verify(first), first.at("cid").as_string());
  EXPECT_FALSE(verify(second, accepted).error);
}

TEST_F(SignedPublish, SentHistoryCarriesTheSequenceARestartContinuesFrom) {
  const auto record = publish_once();
  const auto entries = history.entries(core::HistoryDir::sent);
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].body.at("signed_sequence"), record.at("sequence"));
  EXPECT_EQ(core::last_signed_sequence(entries), record.at("sequence").as_int64());
  // A restarted provider (nothing in memory) with its clock set back still moves forward.
  last_signed_sequence = core::last_signed_sequence(entries);
  clock.set(clock.peek() - 3600);
  const auto next = publish_once();
  EXPECT_GT(next.at("sequence").as_int64(), record.at("sequence").as_int64());
}

TEST_F(SignedPublish, RotationSignsWithEveryKey) {
  const core::SecretKey next = core::SecretKey::generate();
  signing_keys = {key, next};
  const auto record = publish_once();
  ASSERT_EQ(record.at("signatures").as_array().size(), 2u);
  const std::vector<core::PublicKey> only_next{next.public_key()};
  EXPECT_FALSE(core::verify_record(record, core::sync_hkey, sync_key, only_next, {}).error);
}

TEST_F(SignedPublish, MetadataThatCannotBeSignedIsRefusedBeforeTheContainerStops) {
  // 2^53 + 1 has no exact double: every JSON reader would see another number.
  write_request(R"({"archive_paths": ["/app/data"], "metadata": {"n": 9007199254740993}})");
  auto out = run_once();
  EXPECT_FALSE(out.succeeded);
  EXPECT_EQ(out.failed_stage, core::ProviderStage::validation);
  EXPECT_THAT(out.error, HasSubstr("cannot be signed"));
  EXPECT_TRUE(container.lifecycle.empty());
  EXPECT_TRUE(kv.hsets.empty());
}

TEST_F(SignedPublish, WithoutSigningNothingIsAdded) {
  signing_keys.clear();
  const auto record = publish_once();
  EXPECT_FALSE(record.contains("signatures"));
  EXPECT_FALSE(record.contains("sequence"));
  EXPECT_FALSE(record.contains("sync_key"));
}

}  // namespace
}  // namespace carsync::test
