#include "runtime/status_page.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <vector>

namespace carsync::runtime {

namespace {

// The page's style. Rows carry their flags as classes (halted, quarantined, failing, disabled);
// a step whose total is unknown (archiving) gets a striped bar, not a full one.
constexpr std::string_view kStyle = R"css(
:root{color-scheme:light dark;--fg:#1d2125;--muted:#687078;--bg:#fff;--line:#d8dde2;--head:#f3f5f7;
--ok:#1a7f37;--bad:#c62828;--warn:#b25e00;--off:#6b7280;--bar:#2f6fde}
@media (prefers-color-scheme:dark){:root{--fg:#e3e6e9;--muted:#9aa3ab;--bg:#15181b;--line:#30363c;
--head:#1e2226;--bar:#5b8def}}
*{box-sizing:border-box}
body{margin:0;font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;color:var(--fg);background:var(--bg)}
header{display:flex;flex-wrap:wrap;gap:.4em 1.2em;align-items:baseline;padding:.8em 1.2em;
border-bottom:1px solid var(--line);background:var(--head)}
h1{font-size:1.2em;margin:0}
.muted{color:var(--muted)}
.conn{font-weight:600;padding:.1em .6em;border-radius:1em;border:1px solid currentColor}
.conn.live{color:var(--ok)}.conn.down{color:var(--bad)}.conn.static,.conn.connecting{color:var(--muted)}
.sum b{font-variant-numeric:tabular-nums}
.sum .n-bad{color:var(--bad)}.sum .n-warn{color:var(--warn)}.sum .none{color:inherit}
main{padding:.6em 1.2em}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.35em .6em;border-bottom:1px solid var(--line);vertical-align:middle;white-space:nowrap}
th{font-weight:600;color:var(--muted);position:sticky;top:0;background:var(--bg)}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
td.cid,td.id{font-family:ui-monospace,"DejaVu Sans Mono",monospace}
td.why{white-space:normal;max-width:32em;overflow-wrap:anywhere;color:var(--muted)}
tr.halted{background:rgba(198,40,40,.14)}tr.failing{background:rgba(198,40,40,.07)}
tr.quarantined{background:rgba(178,94,0,.12)}tr.disabled{color:var(--off)}
.flag{display:inline-block;font-size:.8em;font-weight:700;text-transform:uppercase;letter-spacing:.03em;
padding:.05em .5em;border-radius:.3em;margin-right:.3em;color:#fff;cursor:help}
.flag.halted,.flag.failing{background:var(--bad)}.flag.quarantined{background:var(--warn)}
.flag.disabled{background:var(--off)}.flag.ok{background:none;color:var(--ok);cursor:default}
.phase{font-weight:600}
.bar{display:inline-block;width:8em;height:.7em;border-radius:.35em;background:var(--line);overflow:hidden;
vertical-align:middle;margin-right:.5em}
.bar>i{display:block;height:100%;background:var(--bar)}
.bar.unknown>i{width:100%;opacity:.6;background:repeating-linear-gradient(135deg,var(--bar) 0 5px,transparent 5px 10px)}
#only-problems-row{margin:.3em 0 .6em}
body.problems-only tr[data-flags=""]{display:none}
)css";

// The live part: EventSource('/v1/events') -> rows updated in place. It builds rows with the
// same structure, classes and texts as render_row() below (keep the two in step), through DOM
// APIs and textContent only, so nothing an event carries is ever parsed as HTML.
constexpr std::string_view kScript = R"js(
(function () {
  'use strict';
  var body = document.body, rows = document.getElementById('rows'), conn = document.getElementById('conn');
  var skew = parseFloat(body.dataset.now) - Date.now() / 1000;  // the server's clock minus ours
  function now() { return Date.now() / 1000 + skew; }
  var UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  function bytes(n) {
    if (n < 1024) return n + ' B';
    var u = 0; while (n >= 1024 && u < UNITS.length - 1) { n /= 1024; u++; }
    return n.toFixed(1) + ' ' + UNITS[u];
  }
  function span(s) {
    s = Math.max(0, s);
    if (s < 60) return Math.floor(s) + ' s';
    if (s < 3600) return Math.floor(s / 60) + ' min';
    if (s < 86400) return Math.floor(s / 3600) + ' h';
    return Math.floor(s / 86400) + ' d';
  }
  function utc(t) { return new Date(t * 1000).toISOString().slice(0, 19).replace('T', ' ') + ' UTC'; }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }
  function lastSync(s) {
    if (s.role === 'provider') return s.last_publish;
    if (s.role === 'consumer') return s.last_apply;
    return s.last_publish || s.last_apply;
  }
  function flags(s) {
    var f = [], last = lastSync(s), e = s.error;
    if (s.halted || s.phase === 'halted')
      f.push(['halted', 'halted', 'an uncertain apply: the container is kept stopped until unhalt' +
              (e && e.message ? ' (' + e.stage + ': ' + e.message + ')' : '')]);
    if (s.quarantine) {
      var q = s.quarantine;
      f.push(['quarantined', 'quarantined', 'cid ' + q.cid + ' failed ' + q.failure_count + ' time(s) at ' + q.stage +
              '; next attempt in ' + span(q.until - now())]);
    }
    if (!s.enabled || s.phase === 'disabled')
      f.push(['disabled', 'disabled', s.config_error || 'SYNC is not enabled']);
    else if (e && !s.quarantine && !f.length && e.stage !== 'cancelled' && e.stage !== 'config' && (!last || e.time >= last.time))
      f.push(['failing', 'failing', e.stage + ': ' + e.message]);
    return f;
  }
  function row(s) {
    var tr = el('tr'), f = flags(s), last = lastSync(s), p = s.progress || {done: 0, total: 0}, td;
    tr.dataset.id = s.id;
    tr.dataset.phase = s.phase;
    tr.dataset.cid = s.last_cid || '';
    tr.dataset.generation = s.generation;
    tr.dataset.flags = f.map(function (x) { return x[0]; }).join(' ');
    tr.className = tr.dataset.flags;
    tr.appendChild(el('td', 'id', s.id));
    tr.appendChild(el('td', 'role', s.role));
    tr.appendChild(el('td', 'phase', s.phase));
    td = el('td', 'prog');
    if (p.total > 0 || p.done > 0) {
      var bar = el('span', p.total > 0 ? 'bar' : 'bar unknown'), i = el('i');
      if (p.total > 0) i.style.width = Math.min(100, 100 * p.done / p.total).toFixed(1) + '%';
      bar.appendChild(i);
      td.appendChild(bar);
      td.appendChild(el('span', 'bytes', p.total > 0 ? bytes(p.done) + ' / ' + bytes(p.total) : bytes(p.done)));
    } else {
      td.textContent = '\u2014';
    }
    tr.appendChild(td);
    td = el('td', 'num age', last ? span(now() - last.time) + ' ago' : 'never');
    if (last) { td.dataset.t = last.time; td.title = utc(last.time); }
    tr.appendChild(td);
    tr.appendChild(el('td', 'num size', last ? bytes(last.size) : '\u2014'));
    td = el('td', 'cid', s.last_cid ? (s.last_cid.length > 14 ? s.last_cid.slice(0, 14) + '\u2026' : s.last_cid) : '\u2014');
    if (s.last_cid) td.title = s.last_cid;
    tr.appendChild(td);
    tr.appendChild(el('td', 'num reqs', s.requests_ok + ' / ' + s.requests_failed));
    td = el('td', 'state');
    if (!f.length) td.appendChild(el('span', 'flag ok', 'ok'));
    f.forEach(function (x) { var b = el('span', 'flag ' + x[0], x[1]); b.title = x[2]; td.appendChild(b); });
    tr.appendChild(td);
    tr.appendChild(el('td', 'why', f.length ? f[0][2] : ''));
    return tr;
  }
  function find(id) {
    for (var i = 0; i < rows.rows.length; i++) if (rows.rows[i].dataset.id === id) return rows.rows[i];
    return null;
  }
  function upsert(s) {
    var old = find(s.id);
    if (old && Number(old.dataset.generation) > s.generation) return;  // an older state than shown
    var tr = row(s);
    if (old) { rows.replaceChild(tr, old); return; }
    for (var i = 0; i < rows.rows.length; i++)
      if (rows.rows[i].dataset.id > s.id) { rows.insertBefore(tr, rows.rows[i]); return; }
    rows.appendChild(tr);
  }
  function summarize() {
    var n = {halted: 0, quarantined: 0, failing: 0, disabled: 0};
    for (var i = 0; i < rows.rows.length; i++)
      rows.rows[i].dataset.flags.split(' ').forEach(function (k) { if (k in n) n[k]++; });
    document.getElementById('n-total').textContent = rows.rows.length;
    for (var k in n) {
      var b = document.getElementById('n-' + k);
      b.textContent = n[k];
      b.parentNode.classList.toggle('none', n[k] === 0);
    }
    document.getElementById('empty').hidden = rows.rows.length > 0;
  }
  function tick() {
    var ages = rows.querySelectorAll('td.age[data-t]');
    for (var i = 0; i < ages.length; i++) ages[i].textContent = span(now() - parseFloat(ages[i].dataset.t)) + ' ago';
  }
  function state(cls, text) {
    conn.className = 'conn ' + cls;
    conn.textContent = text;
    body.dataset.live = cls === 'live' ? '1' : '0';
  }
  function seen(d) {
    body.dataset.generation = d.generation;
    body.dataset.events = Number(body.dataset.events || 0) + 1;
    document.getElementById('gen').textContent = d.generation;
  }
  var only = document.getElementById('only-problems');
  document.getElementById('only-problems-row').hidden = false;
  only.addEventListener('change', function () { body.classList.toggle('problems-only', only.checked); });
  if (!window.EventSource) { state('down', 'no live updates in this browser'); return; }
  state('connecting', 'connecting\u2026');
  var es = new EventSource('/v1/events');
  es.addEventListener('snapshot', function (ev) {
    var d; try { d = JSON.parse(ev.data); } catch (e) { return; }
    var keep = {};
    (d.instances || []).forEach(function (s) { keep[s.id] = 1; });
    for (var i = rows.rows.length - 1; i >= 0; i--) if (!keep[rows.rows[i].dataset.id]) rows.deleteRow(i);
    (d.instances || []).forEach(function (s) {
      var old = find(s.id);
      if (old) old.dataset.generation = 0;  // a snapshot is the truth, whatever was shown
      upsert(s);
    });
    if (d.node_id !== undefined) document.getElementById('node').textContent = d.node_id;
    seen(d);
    summarize();
    state('live', 'live');
  });
  es.addEventListener('instance', function (ev) {
    var d; try { d = JSON.parse(ev.data); } catch (e) { return; }
    if (d.removed) { var old = find(d.instance.id); if (old) old.remove(); }
    else upsert(d.instance);
    seen(d);
    summarize();
  });
  es.onerror = function () { state('down', 'disconnected \u2014 retrying'); };
  setInterval(tick, 1000);
})();
)js";

std::string bytes(std::uint64_t n) {
  if (n < 1024) return std::to_string(n) + " B";
  static constexpr const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = static_cast<double>(n);
  std::size_t u = 0;
  while (v >= 1024 && u + 1 < std::size(units)) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
  return buf;
}

// A duration as people read it at a glance: "42 s", "5 min", "3 h", "2 d" (floored, as the script).
std::string span(double s) {
  s = std::max(0.0, s);
  const auto whole = [](double v) { return std::to_string(static_cast<long long>(std::floor(v))); };
  if (s < 60) return whole(s) + " s";
  if (s < 3600) return whole(s / 60) + " min";
  if (s < 86400) return whole(s / 3600) + " h";
  return whole(s / 86400) + " d";
}

std::string utc(double t) {
  const auto secs = static_cast<std::time_t>(std::floor(t));
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

std::string number(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.3f", v);
  return buf;
}

const std::optional<SyncPoint>& last_sync(const InstanceStatus& s) {
  if (s.role == Role::provider) return s.last_publish;
  if (s.role == Role::consumer) return s.last_apply;
  return s.last_publish ? s.last_publish : s.last_apply;
}

struct Flag {
  std::string_view cls;
  std::string reason;
};

// What needs a person's attention. "failing" is a failure newer than the last success that is
// not already explained by a halt, a quarantine, a cancellation or the configuration (disabled).
std::vector<Flag> flags(const InstanceStatus& s, double now) {
  std::vector<Flag> f;
  const auto& e = s.error;
  const auto& last = last_sync(s);
  if (s.halted || s.phase == Phase::halted) {
    std::string why = "an uncertain apply: the container is kept stopped until unhalt";
    if (e && !e->message.empty()) why += " (" + std::string(to_string(e->stage)) + ": " + e->message + ")";
    f.push_back({"halted", std::move(why)});
  }
  if (const auto& q = s.quarantine)
    f.push_back({"quarantined", "cid " + q->cid + " failed " + std::to_string(q->failure_count) + " time(s) at " +
                                    std::string(to_string(q->stage)) + "; next attempt in " + span(q->until - now)});
  if (!s.enabled || s.phase == Phase::disabled)
    f.push_back({"disabled", s.config_error ? *s.config_error : "SYNC is not enabled"});
  else if (e && !s.quarantine && f.empty() && e->stage != Stage::cancelled && e->stage != Stage::config &&
           (!last || e->time >= last->time))
    f.push_back({"failing", std::string(to_string(e->stage)) + ": " + e->message});
  return f;
}

void td(std::string& out, std::string_view cls, std::string_view text) {
  out += "<td class=\"";
  out += cls;
  out += "\">";
  out += html_escape(text);
  out += "</td>";
}

void render_row(std::string& out, const InstanceStatus& s, double now) {
  const auto f = flags(s, now);
  std::string classes;
  for (const auto& x : f) classes += (classes.empty() ? "" : " ") + std::string(x.cls);
  const auto& last = last_sync(s);

  out += "<tr data-id=\"" + html_escape(s.id) + "\" data-phase=\"" + std::string(to_string(s.phase)) +
         "\" data-cid=\"" + html_escape(s.last_cid.value_or("")) + "\" data-generation=\"" +
         std::to_string(s.generation) + "\" data-flags=\"" + classes + "\" class=\"" + classes + "\">";
  td(out, "id", s.id);
  td(out, "role", to_string(s.role));
  td(out, "phase", to_string(s.phase));

  out += "<td class=\"prog\">";
  const auto& p = s.progress;
  if (p.total > 0 || p.done > 0) {  // steps without byte counts (stopping, restarting...) show none
    if (p.total > 0) {
      char width[32];
      std::snprintf(width, sizeof width, "%.1f%%",
                    std::min(100.0, 100.0 * static_cast<double>(p.done) / static_cast<double>(p.total)));
      out += "<span class=\"bar\"><i style=\"width:" + std::string(width) + "\"></i></span>";
      out += "<span class=\"bytes\">" + bytes(p.done) + " / " + bytes(p.total) + "</span>";
    } else {
      out += "<span class=\"bar unknown\"><i></i></span><span class=\"bytes\">" + bytes(p.done) + "</span>";
    }
  } else {
    out += "\u2014";
  }
  out += "</td>";

  if (last)
    out += "<td class=\"num age\" data-t=\"" + number(last->time) + "\" title=\"" + utc(last->time) + "\">" +
           span(now - last->time) + " ago</td>";
  else
    out += "<td class=\"num age\">never</td>";
  td(out, "num size", last ? bytes(last->size) : "\u2014");

  if (s.last_cid) {
    const std::string& cid = *s.last_cid;
    const std::string shown = cid.size() > 14 ? cid.substr(0, 14) + "\u2026" : cid;
    out += "<td class=\"cid\" title=\"" + html_escape(cid) + "\">" + html_escape(shown) + "</td>";
  } else {
    td(out, "cid", "\u2014");
  }
  td(out, "num reqs", std::to_string(s.requests_ok) + " / " + std::to_string(s.requests_failed));

  out += "<td class=\"state\">";
  if (f.empty()) out += "<span class=\"flag ok\">ok</span>";
  for (const auto& x : f)
    out += "<span class=\"flag " + std::string(x.cls) + "\" title=\"" + html_escape(x.reason) + "\">" +
           std::string(x.cls) + "</span>";
  out += "</td>";
  td(out, "why", f.empty() ? std::string_view{} : std::string_view{f.front().reason});
  out += "</tr>\n";
}

}  // namespace

std::string html_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string render_status_page(const NodeStatus& node, double now_seconds) {
  std::vector<const InstanceStatus*> sorted;
  sorted.reserve(node.instances.size());
  for (const auto& s : node.instances) sorted.push_back(&s);
  std::sort(sorted.begin(), sorted.end(), [](const auto* a, const auto* b) { return a->id < b->id; });

  std::size_t halted = 0, quarantined = 0, failing = 0, disabled = 0;
  std::string rows;
  rows.reserve(sorted.size() * 900);
  for (const auto* s : sorted) {
    for (const auto& f : flags(*s, now_seconds)) {
      halted += f.cls == "halted";
      quarantined += f.cls == "quarantined";
      failing += f.cls == "failing";
      disabled += f.cls == "disabled";
    }
    render_row(rows, *s, now_seconds);
  }

  const std::string node_id = html_escape(node.node_id);
  std::string out;
  out.reserve(rows.size() + kStyle.size() + kScript.size() + 2048);
  out += "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
         "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
         "<title>carsync \u00b7 " + node_id + "</title><style>";
  out += kStyle;
  out += "</style></head>\n<body data-now=\"" + number(now_seconds) + "\" data-generation=\"" +
         std::to_string(node.generation) + "\" data-live=\"0\">\n<header><h1>carsync \u00b7 <span id=\"node\">" +
         node_id + "</span></h1>";
  out += "<span id=\"conn\" class=\"conn static\">snapshot of " + utc(now_seconds) + "</span>";
  const auto count = [](std::string_view cls, std::string_view name, std::size_t n) {
    return "<span class=\"" + std::string(cls) + (n == 0 ? " none" : "") + "\"><b id=\"n-" + std::string(name) + "\">" +
           std::to_string(n) + "</b> " + std::string(name) + "</span>";
  };
  out += "<span class=\"sum\"><span><b id=\"n-total\">" + std::to_string(sorted.size()) + "</b> instances</span> \u00b7 " +
         count("n-bad", "halted", halted) + " \u00b7 " + count("n-warn", "quarantined", quarantined) + " \u00b7 " +
         count("n-bad", "failing", failing) + " \u00b7 " + count("n-off", "disabled", disabled) + "</span>";
  out += "<span class=\"muted\">" + std::string(node.running ? "running" : "not running") + " \u00b7 " +
         html_escape(node.file_engine) + " \u00b7 generation <span id=\"gen\">" + std::to_string(node.generation) +
         "</span></span></header>\n<main>\n";
  out += "<label id=\"only-problems-row\" hidden><input type=\"checkbox\" id=\"only-problems\"> "
         "only instances that need attention</label>\n";
  out += "<table><thead><tr><th>Instance</th><th>Role</th><th>Phase</th><th>Progress</th><th class=\"num\">Last sync</th>"
         "<th class=\"num\">Size</th><th>CID</th><th class=\"num\">OK / failed</th><th>State</th><th>Why</th></tr>"
         "</thead>\n<tbody id=\"rows\">\n";
  out += rows;
  out += "</tbody></table>\n<p id=\"empty\" class=\"muted\"";
  if (!sorted.empty()) out += " hidden";
  out += ">No instances on this node.</p>\n</main>\n<script>";
  out += kScript;
  out += "</script>\n</body></html>\n";
  return out;
}

}  // namespace carsync::runtime
