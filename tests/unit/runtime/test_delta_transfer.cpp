// Delta transfer end to end on the embedded default (README "Delta transfer"): a provider and
// a consumer in one carsync::Node, the real stores, chunked archives, indexes and packs. The
// consumer reassembles the new archive from its base and the packs, and every way the delta
// can fail (index or pack missing or corrupt, base corrupt, unknown format, K exceeded)
// ends in the full archive being applied instead, with the reason in the received history.
#include "backend/local_cas.hpp"
#include "backend/local_kv.hpp"
#include "carsync/node.hpp"
#include "core/delta_record.hpp"
#include "core/record.hpp"
#include "io/history_store.hpp"
#include "support/run_until.hpp"
#include "support/shell.hpp"
#include "support/temp_dir.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <string>

namespace carsync {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;
using test::read_file;
using test::TempDir;
using test::write_file;

// Deterministic bytes that no compressor shrinks (SplitMix64), so sizes are predictable.
std::string noise(std::size_t n, std::uint64_t seed) {
  std::string out(n, '\0');
  std::uint64_t x = seed;
  for (std::size_t i = 0; i < n; i += 8) {
    x += 0x9e3779b97f4a7c15ULL;
    std::uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    for (std::size_t j = 0; j < 8 && i + j < n; ++j) out[i + j] = static_cast<char>(z >> (8 * j));
  }
  return out;
}

class DeltaTransfer : public ::testing::Test {
 protected:
  void SetUp() override {
    node_.emplace(node_config(), ioc.get_executor());
    node_->start();
    add("prov", Role::provider);
    // ~6 MiB in three files: about two dozen chunks.
    write_file(data_of("prov") / "model.bin", noise(3 << 20, 1));
    write_file(data_of("prov") / "vocab.bin", noise(2 << 20, 2));
    write_file(data_of("prov") / "notes.bin", noise(1 << 20, 3));
  }

  void TearDown() override {
    node_->stop();
    test::run_until(ioc, [&] { return !node_->status().running && node_->wait_for(0ms); }, 30s);
  }

  NodeConfig node_config() {
    NodeConfig c;
    c.data_dir = tmp / "state";
    c.node_id = "node-test";
    c.volume_roots = std::vector<std::string>{(tmp / "hosts/*").string()};
    c.limits.rescan_interval = std::chrono::seconds(3600);
    c.limits.shutdown_grace = 5s;
    return c;
  }

  InstanceConfig instance(const std::string& id, Role role) {
    fs::create_directories(tmp / "hosts" / id / "sys");
    fs::create_directories(data_of(id));
    InstanceConfig ic;
    ic.id = id;
    ic.system_volume = tmp / "hosts" / id / "sys";
    ic.volumes = {{data_of(id).string(), "/app/data", "rw"}};
    ic.sync.enabled = true;
    ic.sync.key = "shared-key";
    ic.sync.role = role;
    ic.sync.delta_min_bytes = 0;
    ic.sync.delta_versions = versions_;
    return ic;
  }

  void add(const std::string& id, Role role) {
    std::optional<Result<void>> added;
    ASSERT_TRUE(node_->add_instance(instance(id, role), [&](Result<void> r) { added = r; }));
    ASSERT_TRUE(test::run_until(ioc, [&] { return added.has_value(); }, 30s));
    ASSERT_TRUE(added->has_value()) << added->error().message;
  }

  // The consumer leaves (its state, and so its base, stays) and comes back later: the
  // records published meanwhile are skipped, and a test can tamper before it returns.
  void remove(const std::string& id) {
    std::optional<Result<void>> removed;
    ASSERT_TRUE(node_->remove_instance(id, {}, [&](Result<void> r) { removed = r; }));
    ASSERT_TRUE(test::run_until(ioc, [&] { return removed.has_value(); }, 30s));
  }

  fs::path data_of(const std::string& id) const { return tmp / "hosts" / id / "data"; }
  fs::path state_of(const std::string& id) const { return tmp / "state/instances" / id / "sync_history"; }

  std::string publish() {
    std::optional<Result<SyncPoint>> published;
    EXPECT_TRUE(node_->publish("prov", R"({"archive_paths": ["/app/data/"]})",
                               [&](Result<SyncPoint> r) { published = std::move(r); }));
    EXPECT_TRUE(test::run_until(ioc, [&] { return published.has_value(); }, 60s));
    if (!published || !published->has_value()) {
      ADD_FAILURE() << "publish failed: " << (published ? published->error().message : "no answer");
      return {};
    }
    return (*published)->cid;
  }

  // Waits until the consumer applied `cid`; returns the received entry's "transfer".
  json::object applied(const std::string& cid, const std::string& id = "cons") {
    const bool done = test::run_until(
        ioc,
        [&] {
          auto s = node_->status(id);
          return s && s->last_apply && s->last_apply->cid == cid;
        },
        60s);
    EXPECT_TRUE(done) << id << " never applied " << cid;
    for (const char* name : {"model.bin", "vocab.bin", "notes.bin"})
      EXPECT_EQ(read_file(data_of(id) / name), read_file(data_of("prov") / name)) << name;
    io::HistoryStore history(state_of(id));
    auto latest = history.latest(core::HistoryDir::received);
    if (!latest || !latest->body.contains("transfer")) {
      ADD_FAILURE() << "no transfer in the received history";
      return {};
    }
    return latest->body.at("transfer").as_object();
  }

  json::object record() {
    backend::LocalKv kv(tmp / "state/kv");
    auto v = kv.hget(core::sync_hkey, "shared-key");
    EXPECT_TRUE(v && *v) << "no record";
    return v && *v ? (*v)->as_object() : json::object{};
  }

  core::RecordDelta delta_of(const json::object& rec) {
    auto d = core::record_delta(rec);
    EXPECT_TRUE(d && *d) << (d ? "no delta field" : d.error().message);
    return d && *d ? **d : core::RecordDelta{};
  }

  fs::path blob(const std::string& cid) {
    backend::LocalCas cas(tmp / "state/cas");
    return cas.root() / "blobs" / cid;
  }

  // Flips one byte of a stored blob in place (the store is not asked: a bit rot, or a
  // hostile writer with access to it).
  void corrupt(const fs::path& file, std::uint64_t at) {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    ASSERT_TRUE(f) << file;
    f.seekg(static_cast<std::streamoff>(at));
    char c = 0;
    f.read(&c, 1);
    c = static_cast<char>(c ^ 0x5a);
    f.seekp(static_cast<std::streamoff>(at));
    f.write(&c, 1);
  }

  // One small edit inside one file (model.bin unless said): the chunk holding it and the
  // one holding the file's tar header (its mtime changed) differ, nothing else.
  void edit(std::uint64_t seed, const char* name = "model.bin") {
    auto bytes = read_file(data_of("prov") / name);
    const auto patch = noise(4096, seed + 100);
    bytes.replace((seed * 400 * 1024) % (bytes.size() - patch.size()), patch.size(), patch);
    write_file(data_of("prov") / name, bytes);
  }

  void reconfigure(const InstanceConfig& ic) {
    std::optional<Result<void>> done;
    ASSERT_TRUE(node_->update_instance(ic, [&](Result<void> r) { done = r; }));
    ASSERT_TRUE(test::run_until(ioc, [&] { return done.has_value(); }, 30s));
    ASSERT_TRUE(done->has_value()) << done->error().message;
  }

  // v1 applied by the consumer (full: it has no base yet), then the consumer leaves.
  std::string base_applied_then_consumer_away() {
    add("cons", Role::consumer);
    const auto v1 = publish();
    auto t = applied(v1);
    EXPECT_EQ(t.at("mode"), "full");
    EXPECT_EQ(t.at("fallback"), "no_base");
    remove("cons");
    return v1;
  }

  std::uint32_t versions_ = 8;
  TempDir tmp;
  boost::asio::io_context ioc{1};
  std::optional<Node> node_;
};

TEST_F(DeltaTransfer, OneSmallChangeFetchesOnlyItsPack) {
  add("cons", Role::consumer);
  const auto v1 = publish();
  auto first = applied(v1);
  EXPECT_EQ(first.at("mode"), "full");
  const auto archive1 = first.at("archive_bytes").to_number<std::uint64_t>();
  EXPECT_GE(first.at("fetched_bytes").to_number<std::uint64_t>(), archive1);  // archive + index

  edit(1);
  const auto v2 = publish();
  auto second = applied(v2);
  EXPECT_EQ(second.at("mode"), "delta");
  EXPECT_FALSE(second.contains("fallback"));
  const auto fetched = second.at("fetched_bytes").to_number<std::uint64_t>();
  const auto archive2 = second.at("archive_bytes").to_number<std::uint64_t>();
  // One 4 KiB edit touches one or two chunks (at most 2 MiB with format 1's maximum) of a
  // 6 MiB archive; the index is a few KiB.
  EXPECT_LT(fetched, archive2 / 3) << fetched << " of " << archive2;
  const auto d = delta_of(record());
  EXPECT_EQ(d.serial, 2u);
  ASSERT_EQ(d.packs.size(), 1u);  // v1's frames were all new: no pack
  EXPECT_EQ(d.packs[0].serial, 2u);
  EXPECT_EQ(fetched, d.index.size + d.packs[0].size);

  const auto metrics = node_->metrics_text();
  EXPECT_NE(metrics.find("carsync_fetched_bytes_total{instance=\"cons\",mode=\"delta\"} " + std::to_string(fetched)),
            std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("carsync_delta_saved_bytes_total{instance=\"cons\"} " + std::to_string(archive2 - fetched)),
            std::string::npos);
}

TEST_F(DeltaTransfer, SkippedVersionsNeedTheirPacksAndOneIndex) {
  base_applied_then_consumer_away();
  std::uint64_t packs = 0;
  std::string last;
  for (std::uint64_t v = 2; v <= 6; ++v) {
    edit(v);
    last = publish();
    packs += delta_of(record()).packs.back().size;
  }
  const auto d = delta_of(record());
  add("cons", Role::consumer);
  auto t = applied(last);
  EXPECT_EQ(t.at("mode"), "delta");
  EXPECT_LE(t.at("fetched_bytes").to_number<std::uint64_t>(), packs + d.index.size);
}

TEST_F(DeltaTransfer, AMissingIndexFallsBackToTheFullArchive) {
  base_applied_then_consumer_away();
  edit(2);
  const auto v2 = publish();
  fs::remove(blob(delta_of(record()).index.cid));
  add("cons", Role::consumer);
  auto t = applied(v2);
  EXPECT_EQ(t.at("mode"), "full");
  EXPECT_EQ(t.at("fallback"), "index_unavailable");
}

TEST_F(DeltaTransfer, AMissingPackFallsBackToTheFullArchive) {
  base_applied_then_consumer_away();
  edit(2);
  const auto v2 = publish();
  fs::remove(blob(delta_of(record()).packs.back().cid));
  add("cons", Role::consumer);
  auto t = applied(v2);
  EXPECT_EQ(t.at("mode"), "full");
  EXPECT_EQ(t.at("fallback"), "pack_unavailable");
}

TEST_F(DeltaTransfer, ACorruptPackFallsBackToTheFullArchive) {
  base_applied_then_consumer_away();
  edit(2);
  const auto v2 = publish();
  const auto pack = delta_of(record()).packs.back();
  corrupt(blob(pack.cid), pack.size / 2);
  add("cons", Role::consumer);
  auto t = applied(v2);
  EXPECT_EQ(t.at("mode"), "full");
  EXPECT_EQ(t.at("fallback"), "pack_mismatch");
}

TEST_F(DeltaTransfer, ACorruptBaseFallsBackToTheFullArchive) {
  base_applied_then_consumer_away();
  edit(2);
  const auto v2 = publish();
  const auto base = state_of("cons") / "state/delta/base.archive";
  ASSERT_TRUE(fs::exists(base));
  // Bytes spread over the base: the edit changed one or two frames (the one holding the
  // directory's header too, when the publishes are a second apart), the rest come from here.
  const auto size = fs::file_size(base);
  for (std::uint64_t at : {std::uint64_t{100}, size / 4, size / 2, size * 3 / 4, size - 100}) corrupt(base, at);
  add("cons", Role::consumer);
  auto t = applied(v2);
  EXPECT_EQ(t.at("mode"), "full");
  EXPECT_EQ(t.at("fallback"), "archive_mismatch");
  // The applied archive is the new base: the next change goes by delta again.
  edit(3);
  const auto v3 = publish();
  EXPECT_EQ(applied(v3).at("mode"), "delta");
}

TEST_F(DeltaTransfer, AnUnknownFormatFallsBackToTheFullArchive) {
  base_applied_then_consumer_away();
  edit(2);
  const auto v2 = publish();
  auto rec = record();
  rec["delta"].as_object()["format"] = 2;  // a future provider
  backend::LocalKv kv(tmp / "state/kv");
  ASSERT_TRUE(kv.hset(core::sync_hkey, "shared-key", rec));
  add("cons", Role::consumer);
  auto t = applied(v2);
  EXPECT_EQ(t.at("mode"), "full");
  EXPECT_EQ(t.at("fallback"), "unsupported_format");
}

TEST_F(DeltaTransfer, MoreVersionsSkippedThanTheRecordKeepsFallsBackToTheFullArchive) {
  versions_ = 2;
  reconfigure(instance("prov", Role::provider));
  base_applied_then_consumer_away();
  // Each version changes another file: v2's chunks stay, and only v2's pack holds them.
  edit(2, "vocab.bin");
  publish();
  edit(3, "notes.bin");
  publish();
  edit(4, "model.bin");
  const auto last = publish();
  EXPECT_EQ(delta_of(record()).packs.size(), 2u);  // serials 3 and 4
  add("cons", Role::consumer);
  auto t = applied(last);
  EXPECT_EQ(t.at("mode"), "full");
  EXPECT_EQ(t.at("fallback"), "pack_missing");
}

TEST_F(DeltaTransfer, RetirementKeepsWhatTheRecordNamesAndDeletesTheRest) {
  versions_ = 2;
  reconfigure(instance("prov", Role::provider));
  std::vector<core::RecordDelta> deltas;
  for (std::uint64_t v = 1; v <= 4; ++v) {
    edit(v);
    publish();
    deltas.push_back(delta_of(record()));
  }
  backend::LocalCas cas(tmp / "state/cas");
  const auto& current = deltas.back();
  EXPECT_TRUE(cas.contains(current.index.cid));
  for (const auto& p : current.packs) EXPECT_TRUE(cas.contains(p.cid)) << p.serial;
  for (std::size_t i = 0; i + 1 < deltas.size(); ++i) EXPECT_FALSE(cas.contains(deltas[i].index.cid)) << i;
  EXPECT_FALSE(cas.contains(deltas[1].packs.back().cid));  // serial 2 left the window
  // The provider keeps only its newest index as the next version's base.
  std::size_t kept = 0;
  for (const auto& e : fs::directory_iterator(state_of("prov") / "state/delta")) kept += e.path().filename().string().starts_with("index-");
  EXPECT_EQ(kept, 1u);
}

// A mixed fleet on one chunked record: the reference consumer (Python's tarfile on the full
// archive, the delta field ignored, spec §8.4-§8.5) and a carsync consumer (by delta) both
// end with the provider's files.
TEST_F(DeltaTransfer, AReferenceConsumerAndACarsyncConsumerBothApplyAChunkedRecord) {
  base_applied_then_consumer_away();
  edit(2);
  const auto v2 = publish();
  const auto rec = record();
  ASSERT_TRUE(rec.contains("delta"));
  const auto record_file = tmp / "record.json";
  write_file(record_file, json::serialize(rec));
  const auto ref_root = tmp / "reference/data";
  fs::create_directories(ref_root);
  const auto script = fs::path(CARSYNC_SOURCE_DIR) / "tests/fixtures/reference_consumer.py";
  const auto run = test::shell("python3 " + test::shell_quote(script.string()) + " " +
                               test::shell_quote(record_file.string()) + " " +
                               test::shell_quote(blob(std::string(rec.at("cid").as_string())).string()) +
                               " /app/data=" + test::shell_quote(ref_root.string()) + " 2>&1");
  ASSERT_EQ(run.exit_code, 0) << run.out;
  for (const char* name : {"model.bin", "vocab.bin", "notes.bin"})
    EXPECT_EQ(read_file(ref_root / name), read_file(data_of("prov") / name)) << name;
  // gzip itself reads the concatenated members as one .gz.
  const auto gz = test::shell("gzip -t " + test::shell_quote(blob(std::string(rec.at("cid").as_string())).string()) + " 2>&1");
  EXPECT_EQ(gz.exit_code, 0) << gz.out;

  add("cons", Role::consumer);
  EXPECT_EQ(applied(v2).at("mode"), "delta");
}

TEST_F(DeltaTransfer, DeltaOffPublishesTheReferenceRecordAndKeepsNoBase) {
  auto prov = instance("prov", Role::provider);
  prov.sync.delta = false;
  reconfigure(prov);
  add("cons", Role::consumer);
  const auto v1 = publish();
  auto t = applied(v1);
  EXPECT_EQ(t.at("mode"), "full");
  EXPECT_FALSE(t.contains("fallback"));
  EXPECT_FALSE(record().contains("delta"));
}

}  // namespace
}  // namespace carsync
