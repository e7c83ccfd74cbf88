#include "runtime/status_page.hpp"

#include "runtime/status_json.hpp"

#include <gtest/gtest.h>

#include <string>

namespace carsync::runtime {
namespace {

constexpr double kNow = 1764489700.0;

std::size_t count(const std::string& text, std::string_view needle) {
  std::size_t n = 0;
  for (auto pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + 1)) ++n;
  return n;
}

// The <tr ...>...</tr> of one instance (rows carry data-id="<escaped id>").
std::string row_of(const std::string& page, std::string_view escaped_id) {
  const auto start = page.find("<tr data-id=\"" + std::string(escaped_id) + "\"");
  if (start == std::string::npos) return {};
  return page.substr(start, page.find("</tr>", start) + 5 - start);
}

InstanceStatus provider_uploading() {
  InstanceStatus s;
  s.id = "app-1";
  s.role = Role::provider;
  s.enabled = true;
  s.phase = Phase::uploading;
  s.progress = {1 << 20, 4 << 20};
  s.requests_ok = 12;
  s.requests_failed = 1;
  s.last_cid = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi";
  s.last_publish = SyncPoint{*s.last_cid, 1764489600, kNow - 12, 3 << 20};
  s.generation = 731;
  return s;
}

InstanceStatus consumer(std::string id) {
  InstanceStatus s;
  s.id = std::move(id);
  s.role = Role::consumer;
  s.enabled = true;
  s.phase = Phase::idle;
  return s;
}

TEST(StatusPage, ShowsTheNodeAndEveryInstanceWithItsState) {
  NodeStatus n;
  n.node_id = "edge-17";
  n.file_engine = "io_uring";
  n.running = true;
  n.generation = 731;
  n.instances = {consumer("app-2"), provider_uploading()};
  const auto page = render_status_page(n, kNow);

  EXPECT_EQ(page.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_NE(page.find("<title>carsync \u00b7 edge-17</title>"), std::string::npos);
  EXPECT_NE(page.find("<span id=\"node\">edge-17</span>"), std::string::npos);
  EXPECT_NE(page.find("data-generation=\"731\" data-live=\"0\""), std::string::npos);
  EXPECT_NE(page.find("<b id=\"n-total\">2</b> instances"), std::string::npos);
  // Rows in id order, whatever the node's order.
  EXPECT_LT(page.find("data-id=\"app-1\""), page.find("data-id=\"app-2\""));

  const auto p = row_of(page, "app-1");
  ASSERT_FALSE(p.empty());
  EXPECT_NE(p.find("<td class=\"role\">provider</td>"), std::string::npos) << p;
  EXPECT_NE(p.find("<td class=\"phase\">uploading</td>"), std::string::npos) << p;
  EXPECT_NE(p.find("data-phase=\"uploading\""), std::string::npos) << p;
  EXPECT_NE(p.find("<i style=\"width:25.0%\"></i>"), std::string::npos) << p;
  EXPECT_NE(p.find("1.0 MiB / 4.0 MiB"), std::string::npos) << p;
  EXPECT_NE(p.find(">12 s ago</td>"), std::string::npos) << p;
  EXPECT_NE(p.find("<td class=\"num size\">3.0 MiB</td>"), std::string::npos) << p;
  EXPECT_NE(p.find(">bafybeigdyrzt5\u2026</td>"), std::string::npos) << p;        // the prefix shown,
  EXPECT_NE(p.find("title=\"bafybeigdyrzt5sfp7udm7hu76uh7y"), std::string::npos);  // the whole on hover
  EXPECT_NE(p.find(">12 / 1</td>"), std::string::npos) << p;
  EXPECT_NE(p.find("<span class=\"flag ok\">ok</span>"), std::string::npos) << p;
  EXPECT_NE(p.find("data-flags=\"\""), std::string::npos) << p;

  const auto c = row_of(page, "app-2");
  EXPECT_NE(c.find("<td class=\"role\">consumer</td>"), std::string::npos) << c;
  EXPECT_NE(c.find("<td class=\"num age\">never</td>"), std::string::npos) << c;
  EXPECT_NE(c.find("<td class=\"prog\">\u2014</td>"), std::string::npos) << c;  // no step in flight: no bar
  EXPECT_NE(page.find("<p id=\"empty\" class=\"muted\" hidden>"), std::string::npos);
}

TEST(StatusPage, AgesAndSizesReadAtAGlance) {
  NodeStatus n;
  auto s = consumer("c");
  s.last_apply = SyncPoint{"bafyc", 1, kNow - 7200 - 5, 1536};
  n.instances = {s};
  const auto row = row_of(render_status_page(n, kNow), "c");
  EXPECT_NE(row.find(">2 h ago</td>"), std::string::npos) << row;
  EXPECT_NE(row.find(">1.5 KiB</td>"), std::string::npos) << row;
  EXPECT_NE(row.find("title=\"2025-11-30 06:01:35 UTC\""), std::string::npos) << row;
}

TEST(StatusPage, AnEmptyNodeSaysSo) {
  NodeStatus n;
  n.node_id = "edge-0";
  const auto page = render_status_page(n, kNow);
  EXPECT_NE(page.find("<p id=\"empty\" class=\"muted\">No instances on this node.</p>"), std::string::npos);
  EXPECT_NE(page.find("<b id=\"n-total\">0</b>"), std::string::npos);
}

TEST(StatusPage, EverythingFromConfigurationOrErrorsRendersAsText) {
  NodeStatus n;
  n.node_id = "<b>edge</b>";
  n.file_engine = "portable";
  auto s = consumer("<script>alert(1)</script>");
  s.last_cid = "\"><script>alert(2)</script>";
  s.error = LastError{Stage::extract, "bad member <img src=x onerror=alert(3)> \"quoted\" 'single' & more", kNow - 1};
  s.last_error = "extract: " + s.error->message;
  auto d = consumer("d");
  d.enabled = false;
  d.phase = Phase::disabled;
  d.config_error = "SYNC.KEY: \" onmouseover=\"alert(4)";
  n.instances = {s, d};
  const auto page = render_status_page(n, kNow);

  // The only script element is the page's own.
  EXPECT_EQ(count(page, "<script"), 1u);
  EXPECT_EQ(count(page, "</script>"), 1u);
  EXPECT_EQ(page.find("<img"), std::string::npos);
  EXPECT_EQ(page.find("<b>edge"), std::string::npos);
  EXPECT_EQ(page.find("\" onmouseover"), std::string::npos);

  EXPECT_NE(page.find("<span id=\"node\">&lt;b&gt;edge&lt;/b&gt;</span>"), std::string::npos);
  EXPECT_NE(page.find("data-id=\"&lt;script&gt;alert(1)&lt;/script&gt;\""), std::string::npos);
  EXPECT_NE(page.find("<td class=\"id\">&lt;script&gt;alert(1)&lt;/script&gt;</td>"), std::string::npos);
  EXPECT_NE(page.find("data-cid=\"&quot;&gt;&lt;script&gt;alert(2)&lt;/script&gt;\""), std::string::npos);
  EXPECT_NE(page.find("extract: bad member &lt;img src=x onerror=alert(3)&gt; &quot;quoted&quot; &#39;single&#39; "
                      "&amp; more"),
            std::string::npos);
  EXPECT_NE(page.find("SYNC.KEY: &quot; onmouseover=&quot;alert(4)"), std::string::npos);
}

TEST(StatusPage, HtmlEscapeCoversTextAndAttributes) {
  EXPECT_EQ(html_escape("a<b>&\"c'd"), "a&lt;b&gt;&amp;&quot;c&#39;d");
  EXPECT_EQ(html_escape("plain \u00e9t\u00e9"), "plain \u00e9t\u00e9");  // UTF-8 passes through
}

TEST(StatusPage, FlagsAreHighlightedWithTheirReason) {
  NodeStatus n;
  auto h = consumer("halted-one");
  h.phase = Phase::halted;
  h.halted = true;
  h.error = LastError{Stage::commit, "fsync failed", kNow - 30};
  auto q = consumer("quarantined-one");
  q.quarantine = QuarantineInfo{"bafyq", Stage::extract, 3, kNow + 40};
  q.error = LastError{Stage::extract, "member escapes the volume", kNow - 5};
  auto d = consumer("disabled-one");
  d.enabled = false;
  d.phase = Phase::disabled;
  d.config_error = "SYNC.KEY is required";
  auto f = provider_uploading();
  f.id = "failing-one";
  f.phase = Phase::idle;
  f.progress = {};
  f.error = LastError{Stage::r1fs_upload, "connection refused", f.last_publish->time + 1};
  auto r = provider_uploading();
  r.id = "recovered-one";  // failed once, then succeeded: not failing
  r.error = LastError{Stage::r1fs_upload, "connection refused", r.last_publish->time - 60};
  auto x = consumer("cancelled-one");
  x.error = LastError{Stage::cancelled, "cancelled", kNow - 1};
  n.instances = {h, q, d, f, r, x};
  const auto page = render_status_page(n, kNow);

  const auto hr = row_of(page, "halted-one");
  EXPECT_NE(hr.find("data-flags=\"halted\" class=\"halted\""), std::string::npos) << hr;  // the halt explains the error
  EXPECT_NE(hr.find("<span class=\"flag halted\" title=\"an uncertain apply: the container is kept stopped until "
                    "unhalt (commit: fsync failed)\">halted</span>"),
            std::string::npos)
      << hr;

  const auto qr = row_of(page, "quarantined-one");
  EXPECT_NE(qr.find("data-flags=\"quarantined\""), std::string::npos) << qr;  // not also "failing"
  EXPECT_NE(qr.find("<td class=\"why\">cid bafyq failed 3 time(s) at extract; next attempt in 40 s</td>"),
            std::string::npos)
      << qr;

  const auto dr = row_of(page, "disabled-one");
  EXPECT_NE(dr.find("data-flags=\"disabled\""), std::string::npos) << dr;
  EXPECT_NE(dr.find("<td class=\"why\">SYNC.KEY is required</td>"), std::string::npos) << dr;

  const auto fr = row_of(page, "failing-one");
  EXPECT_NE(fr.find("data-flags=\"failing\""), std::string::npos) << fr;
  EXPECT_NE(fr.find("<td class=\"why\">r1fs_upload: connection refused</td>"), std::string::npos) << fr;

  EXPECT_NE(row_of(page, "recovered-one").find("data-flags=\"\""), std::string::npos);
  EXPECT_NE(row_of(page, "cancelled-one").find("data-flags=\"\""), std::string::npos);

  EXPECT_NE(page.find("<b id=\"n-halted\">1</b>"), std::string::npos);
  EXPECT_NE(page.find("<b id=\"n-quarantined\">1</b>"), std::string::npos);
  EXPECT_NE(page.find("<b id=\"n-failing\">1</b>"), std::string::npos);
  EXPECT_NE(page.find("<b id=\"n-disabled\">1</b>"), std::string::npos);
}

TEST(StatusPage, IsSelfContained) {
  NodeStatus n;
  n.node_id = "edge-1";
  n.instances = {provider_uploading(), consumer("c")};
  const auto page = render_status_page(n, kNow);
  for (const char* external : {"src=\"http", "href=\"http", "src=", "href=", "<link", "@import", "url(", "http://",
                               "https://", "//cdn"})
    EXPECT_EQ(page.find(external), std::string::npos) << external;
  EXPECT_EQ(count(page, "<style>"), 1u);
}

TEST(StatusPage, ScriptFollowsTheEventStreamWithTheApiFieldNames) {
  const auto page = render_status_page(NodeStatus{}, kNow);
  EXPECT_NE(page.find("new EventSource('/v1/events')"), std::string::npos);
  EXPECT_NE(page.find("addEventListener('snapshot'"), std::string::npos);
  EXPECT_NE(page.find("addEventListener('instance'"), std::string::npos);
  EXPECT_NE(page.find("d.removed"), std::string::npos);
  // What an event carries reaches the DOM as text only.
  for (const char* html_sink : {"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("})
    EXPECT_EQ(page.find(html_sink), std::string::npos) << html_sink;

  // Every field the script reads is one that runtime/status_json serves.
  InstanceStatus full = provider_uploading();
  full.error = LastError{Stage::extract, "x", 1};
  full.quarantine = QuarantineInfo{"c", Stage::extract, 1, 2};
  const auto o = to_json(full);
  for (const char* key : {"id", "role", "phase", "enabled", "config_error", "progress", "requests_ok",
                          "requests_failed", "last_cid", "error", "last_publish", "last_apply", "quarantine",
                          "halted", "generation"}) {
    EXPECT_TRUE(o.contains(key)) << key;
    EXPECT_NE(page.find(std::string("s.") + key), std::string::npos) << key;
  }
  for (const char* key : {"stage", "message", "time"}) EXPECT_TRUE(o.at("error").as_object().contains(key)) << key;
  for (const char* key : {"cid", "failure_count", "until", "stage"}) {
    EXPECT_TRUE(o.at("quarantine").as_object().contains(key)) << key;
    EXPECT_NE(page.find(std::string("q.") + key), std::string::npos) << key;
  }
  for (const char* key : {"time", "size"}) EXPECT_NE(page.find(std::string("last.") + key), std::string::npos) << key;
  const auto nj = to_json(NodeStatus{});
  for (const char* key : {"node_id", "generation", "instances"}) {
    EXPECT_TRUE(nj.contains(key)) << key;
    EXPECT_NE(page.find(std::string("d.") + key), std::string::npos) << key;
  }
  EXPECT_TRUE(to_json(StatusEvent{}).contains("removed"));
}

}  // namespace
}  // namespace carsync::runtime
