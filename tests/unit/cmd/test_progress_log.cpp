#include "cmd/progress_log.hpp"

#include <gtest/gtest.h>

#include <string>

namespace carsync::cmd {
namespace {

using namespace std::chrono_literals;
using Clock = ProgressLog::Clock;

constexpr std::uint64_t MiB = 1024 * 1024;

InstanceStatus at(std::string id, Phase phase, std::uint64_t done, std::uint64_t total) {
  InstanceStatus s;
  s.id = std::move(id);
  s.phase = phase;
  s.progress = {done, total};
  return s;
}

TEST(ProgressLog, FormatsBytesInBinaryUnits) {
  EXPECT_EQ(format_bytes(0), "0 B");
  EXPECT_EQ(format_bytes(1023), "1023 B");
  EXPECT_EQ(format_bytes(1536), "1.5 KiB");
  EXPECT_EQ(format_bytes(412 * MiB), "412.0 MiB");
  EXPECT_EQ(format_bytes(1024 * MiB), "1.0 GiB");
}

TEST(ProgressLog, ALongUploadLogsOneLineEveryIntervalWithPercentAndRate) {
  ProgressLog log(5s);
  const Clock::time_point t0{};
  // The status event announcing the phase (its counters are not current).
  log.note_phase(at("p", Phase::uploading, 0, 0), t0);
  EXPECT_FALSE(log.observe(at("p", Phase::uploading, 100 * MiB, 1024 * MiB), t0 + 1s));
  EXPECT_FALSE(log.observe(at("p", Phase::uploading, 200 * MiB, 1024 * MiB), t0 + 4900ms));
  auto line = log.observe(at("p", Phase::uploading, 250 * MiB, 1024 * MiB), t0 + 5s);
  ASSERT_TRUE(line);
  EXPECT_EQ(*line, "[p] uploading 250.0 MiB / 1.0 GiB (24%), 50.0 MiB/s");
  // At most one per interval; the rate is over the bytes since the last line.
  EXPECT_FALSE(log.observe(at("p", Phase::uploading, 400 * MiB, 1024 * MiB), t0 + 9s));
  line = log.observe(at("p", Phase::uploading, 412 * MiB, 1024 * MiB), t0 + 10s);
  ASSERT_TRUE(line);
  EXPECT_EQ(*line, "[p] uploading 412.0 MiB / 1.0 GiB (40%), 32.4 MiB/s");
}

TEST(ProgressLog, AStepShorterThanTheIntervalLogsNothing) {
  ProgressLog log(5s);
  const Clock::time_point t0{};
  log.note_phase(at("c", Phase::downloading, 0, 0), t0);
  EXPECT_FALSE(log.observe(at("c", Phase::downloading, 10 * MiB, 20 * MiB), t0 + 2s));
  // The next step starts its own interval: 5 s into the download is 1 s into the scan.
  log.note_phase(at("c", Phase::scanning, 0, 0), t0 + 4s);
  EXPECT_FALSE(log.observe(at("c", Phase::scanning, 5 * MiB, 20 * MiB), t0 + 5s));
  EXPECT_TRUE(log.observe(at("c", Phase::scanning, 15 * MiB, 20 * MiB), t0 + 9s));
  log.note_phase(at("c", Phase::idle, 0, 0), t0 + 10s);
  EXPECT_FALSE(log.active());
  EXPECT_FALSE(log.observe(at("c", Phase::idle, 0, 0), t0 + 20s));
}

TEST(ProgressLog, PhasesWithoutBytesAreNeverReported) {
  ProgressLog log(5s);
  const Clock::time_point t0{};
  for (Phase p : {Phase::stopping, Phase::publishing, Phase::restarting, Phase::finishing, Phase::idle}) {
    log.note_phase(at("x", p, 0, 0), t0);
    EXPECT_FALSE(log.active()) << to_string(p);
    EXPECT_FALSE(log.observe(at("x", p, 1, 1), t0 + 60s)) << to_string(p);
  }
}

TEST(ProgressLog, UnknownTotalShowsBytesAndRateOnly) {
  ProgressLog log(5s);
  const Clock::time_point t0{};
  log.note_phase(at("p", Phase::archiving, 0, 0), t0);
  auto line = log.observe(at("p", Phase::archiving, 30 * MiB, 0), t0 + 6s);
  ASSERT_TRUE(line);
  EXPECT_EQ(*line, "[p] archiving 30.0 MiB, 5.0 MiB/s");
}

TEST(ProgressLog, InstancesAreRateLimitedIndependently) {
  ProgressLog log(5s);
  const Clock::time_point t0{};
  log.note_phase(at("a", Phase::applying, 0, 0), t0);
  log.note_phase(at("b", Phase::applying, 0, 0), t0 + 3s);
  EXPECT_TRUE(log.observe(at("a", Phase::applying, MiB, 2 * MiB), t0 + 5s));
  EXPECT_FALSE(log.observe(at("b", Phase::applying, MiB, 2 * MiB), t0 + 5s));
  EXPECT_TRUE(log.observe(at("b", Phase::applying, MiB, 2 * MiB), t0 + 8s));
  log.forget("a");
  log.forget("b");
  EXPECT_FALSE(log.active());
}

TEST(ProgressLog, AStatusSeenFirstBySamplingStartsTheStepWithItsBytes) {
  // No event seen (the reporter started mid-step): the first sample starts the step.
  ProgressLog log(5s);
  const Clock::time_point t0{};
  EXPECT_FALSE(log.observe(at("p", Phase::uploading, 100 * MiB, 200 * MiB), t0));
  auto line = log.observe(at("p", Phase::uploading, 150 * MiB, 200 * MiB), t0 + 5s);
  ASSERT_TRUE(line);
  EXPECT_EQ(*line, "[p] uploading 150.0 MiB / 200.0 MiB (75%), 10.0 MiB/s");
}

TEST(ProgressLog, CountersRestartedWithinAStepDoNotUnderflowTheRate) {
  ProgressLog log(5s);
  const Clock::time_point t0{};
  EXPECT_FALSE(log.observe(at("p", Phase::uploading, 100 * MiB, 0), t0));
  // The upload learned its total and restarted its counter.
  auto line = log.observe(at("p", Phase::uploading, 10 * MiB, 200 * MiB), t0 + 5s);
  ASSERT_TRUE(line);
  EXPECT_EQ(*line, "[p] uploading 10.0 MiB / 200.0 MiB (5%), 2.0 MiB/s");
}

}  // namespace
}  // namespace carsync::cmd
