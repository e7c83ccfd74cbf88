"""The measurements of scripts/bench, one function per section. Each appends raw rows to
`res.rows` (section, metric, params, value, unit) and comparisons (a figure beside its
yardstick from the same run, and the issue's target where it sets one) to `res.compare`."""
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request

from node import (Daemon, Devnode, ProcSampler, api, cpu_seconds, io_read, metric, metrics, proc_status,
                  reset_peak_rss)
from workload import (App, fill_delta_volume, fill_mixed, fill_random, node_config,
                      replace_random, write_log)

MiB = 1 << 20
# Through devnode a consumer learns of a new record by polling CStore: the shortest period
# carsync accepts (1 s), so the figures include up to 1 s of waiting for the next poll.
POLL = {"POLL_INTERVAL": 1}


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def pct(values, q):
    v = sorted(values)
    if not v:
        return float("nan")
    # nearest rank
    return v[max(0, min(len(v) - 1, math.ceil(q * len(v)) - 1))]


class Results:
    def __init__(self):
        self.rows = []
        self.compare = []
        self.notes = []

    def add(self, section, metric, value, unit, **params):
        self.rows.append({"section": section, "metric": metric, "params": params, "value": value, "unit": unit})

    def cmp(self, section, figure, value, unit, yardstick=None, yard_value=None, ratio=None, target=None,
            met=None):
        """ratio: value / yard_value unless given; target: text; met: bool or None."""
        if ratio is None and yard_value:
            ratio = value / yard_value
        self.compare.append({"section": section, "figure": figure, "value": value, "unit": unit,
                             "yardstick": yardstick, "yardstick_value": yard_value, "ratio": ratio,
                             "target": target, "met": met})


def published_cid(ev, iid, since, ok_before, failed_before):
    r = ev.first(iid, since, lambda s: s["phase"] == "idle" and s["requests_ok"] > ok_before)
    if r:
        return r
    bad = ev.first(iid, since, lambda s: s["requests_failed"] > failed_before)
    if bad:
        raise RuntimeError(f"{iid}: publish failed: {bad[1].get('error')}")
    return None


def publish_and_wait(d, app, seq, timeout, consumers=()):
    """Writes app's request.json; returns the timeline (receipt times of carsync's events,
    seconds from the rename) and the published status. With consumers, also waits for each
    to report the new CID as last_apply."""
    ev = d.events
    before = ev.latest.get(app.id, {})
    ok_before = before.get("requests_ok", 0)
    failed_before = before.get("requests_failed", 0)
    marks = {app.id: ev.mark(app.id)}
    for c in consumers:
        marks[c.id] = ev.mark(c.id)
    t0 = app.write_request(seq)
    pub = ev.wait(lambda e: published_cid(e, app.id, marks[app.id], ok_before, failed_before), timeout, f"{app.id} publish")
    t_pub, st = pub
    cid = st["last_publish"]["cid"]
    out = {"t0": t0, "cid": cid, "size": st["last_publish"].get("size"), "published": t_pub - t0}
    claim = ev.first(app.id, marks[app.id], lambda s: s["phase"] != "idle")
    out["claimed"] = (claim[0] if claim else t_pub) - t0
    up = ev.first(app.id, marks[app.id], lambda s: s["phase"] in ("uploading", "publishing"))
    out["sealed"] = (up[0] - t0) if up else None
    kv = ev.first(app.id, marks[app.id], lambda s: s["phase"] == "publishing")
    out["publishing"] = (kv[0] - t0) if kv else None  # the record's store write begins
    applied = {}
    for c in consumers:
        def done(e, c=c):
            return e.first(c.id, marks[c.id], lambda s: (s.get("last_apply") or {}).get("cid") == cid)
        t_app, _ = ev.wait(done, timeout, f"{c.id} apply of {cid}")
        applied[c.id] = t_app - t0
        dl = ev.first(c.id, marks[c.id], lambda s: s["phase"] == "downloading")
        sc = ev.first(c.id, marks[c.id], lambda s: s["phase"] in ("scanning", "applying"))
        out.setdefault("download_start", (dl[0] - t0) if dl else None)
        out.setdefault("downloaded", (sc[0] - t0) if sc else None)
    out["applied"] = applied
    return out


# carsync's default file engine (RuntimeLimits::file_engine in include/carsync/config.hpp).
DEFAULT_ENGINE = "portable"


# ---------------------------------------------------------------- latency and idle cost

def section_latency(ctx, res):
    counts = ctx.latency_counts
    per_count = ctx.latency_requests
    summary = {}
    for n in counts:
        work = ctx.fresh_work(f"latency-{n}")
        apps = [App(os.path.join(work, "edge"), f"p{i:04d}", f"lat-{n}-{i}", "provider") for i in range(n)]
        for a in apps:
            with open(os.path.join(a.data, "state.txt"), "w") as f:
                f.write("initial\n")
        d = Daemon(ctx.carsyncd, work, node_config(work, apps))
        t_start = time.time()
        d.start()
        d.wait_idle([a.id for a in apps])
        startup = time.time() - t_start
        rss_ready = proc_status(d.pid)["VmRSS"]
        log(f"latency: {n} instances up in {startup:.1f} s, RSS {rss_ready / MiB:.1f} MiB")
        claims, pubs = [], []
        warm = min(5, per_count)
        try:
            for j in range(warm + per_count):
                a = apps[(j * 7919) % n]
                with open(os.path.join(a.data, "state.txt"), "w") as f:
                    f.write(f"request {j} at {time.time()}\n")
                r = publish_and_wait(d, a, j, 60)
                if j >= warm:
                    claims.append(r["claimed"] * 1e3)
                    pubs.append(r["published"] * 1e3)
            st = proc_status(d.pid)
            row = {"claim": claims, "publish": pubs, "rss": st["VmRSS"], "hwm": st["VmHWM"],
                   "rss_ready": rss_ready, "startup": startup}
            if n == max(counts):
                time.sleep(2)  # let the last request's retirement settle
                c0, w0 = cpu_seconds(d.pid), time.time()
                time.sleep(ctx.idle_seconds)
                c1, w1 = cpu_seconds(d.pid), time.time()
                row["idle_cpu_pct"] = 100 * (c1 - c0) / (w1 - w0)
                row["idle_rss"] = proc_status(d.pid)["VmRSS"]
                row["idle_seconds"] = w1 - w0
                log(f"latency: idle {n} instances: {row['idle_cpu_pct']:.3f} % of a core, "
                    f"RSS {row['idle_rss'] / MiB:.1f} MiB over {w1 - w0:.0f} s")
        finally:
            d.stop()
        summary[n] = row
        for metric, vals in (("claim_ms", claims), ("publish_ms", pubs)):
            for q, name in ((0.5, "p50"), (0.99, "p99"), (1.0, "max")):
                res.add("latency", f"{metric}_{name}", pct(vals, q), "ms", instances=n, requests=len(vals))
        res.add("latency", "rss_ready", rss_ready / MiB, "MiB", instances=n)
        res.add("latency", "rss_after", row["rss"] / MiB, "MiB", instances=n)
        res.add("latency", "vm_hwm", row["hwm"] / MiB, "MiB", instances=n)
        res.add("latency", "startup_s", startup, "s", instances=n)
        if "idle_cpu_pct" in row:
            res.add("latency", "idle_cpu_pct", row["idle_cpu_pct"], "% core", instances=n, seconds=row["idle_seconds"])
            res.add("latency", "idle_rss", row["idle_rss"] / MiB, "MiB", instances=n)
        log(f"latency: {n} instances: claim p50/p99/max {pct(claims, .5):.2f}/{pct(claims, .99):.2f}/"
            f"{max(claims):.2f} ms, publish {pct(pubs, .5):.2f}/{pct(pubs, .99):.2f}/{max(pubs):.2f} ms")
    ctx.latency_summary = summary
    base_n, top = min(counts), max(counts)
    base, row = summary[base_n], summary[top]
    big = top >= 1000
    yard = f"same, {base_n} instance{'s' if base_n > 1 else ''}"
    for label, key, limit in (("claim", "claim", 2.0), ("durable publish", "publish", 15.0)):
        for qn, q in (("p50", .5), ("p99", .99), ("max", 1.0)):
            v = pct(row[key], q)
            tgt = f"p99 <= {limit:g} ms at 1,000" if qn == "p99" else None
            res.cmp("latency", f"{label} {qn}, {top} instances", v, "ms", yard, pct(base[key], q),
                    target=tgt, met=(v <= limit) if (tgt and big) else None)
    res.cmp("latency", f"idle CPU, {top} idle instances, {row['idle_seconds']:.0f} s", row["idle_cpu_pct"], "% core",
            target="<= 0.2 % of a core", met=row["idle_cpu_pct"] <= 0.2 if big else None)
    res.cmp("latency", f"idle RSS, {top} instances", row["idle_rss"] / MiB, "MiB",
            f"RSS with {base_n} instance{'s' if base_n > 1 else ''}", base["rss"] / MiB,
            target="<= 48 MiB", met=row["idle_rss"] / MiB <= 48 if big else None)
    latency_signed(ctx, res)


def generate_key(ctx, path):
    """`carsync keys generate --out path`; returns the public key line it prints."""
    r = subprocess.run([ctx.carsync, "keys", "generate", "--out", path], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"carsync keys generate failed ({r.returncode}): {r.stderr.strip()}")
    return r.stdout.strip()


def latency_signed(ctx, res):
    """Signed records' cost (issue 11: publish and apply latency change by under 1 ms), on the
    embedded backend, an unsigned and a signed variant side by side: the signed provider signs
    (`signing.key_file`, a key from `carsync keys generate`), the signed consumer trusts that
    key (policy enforce). Requests alternate between the variants (the order flips every
    round) so a load change on the machine hits both alike.
      publish: request.json rename -> durable publish (as above), providers alone in their
               carsyncd (a consumer applying at the same time would dominate the figure);
      apply:   the provider entering `publishing` (its record's store write) -> the
               consumer's last_apply naming the CID (record fetch, signature check, download
               hashed while it streams, scan, apply), in a second carsyncd with both pairs."""
    if not os.path.exists(ctx.carsync):
        res.notes.append(f"latency: no signed variant ({ctx.carsync} not built)")
        return
    work = ctx.fresh_work("latency-signed")
    key_dir = os.path.join(work, "keys")
    os.makedirs(key_dir, mode=0o700)
    key_file = os.path.join(key_dir, "provider.key")
    public = generate_key(ctx, key_file)
    edge = os.path.join(work, "edge")
    variants = ("unsigned", "signed")
    provs, cons = {}, {}
    for v in variants:
        signed = v == "signed"
        provs[v] = App(edge, f"prov-{v}", f"lat-{v}", "provider",
                       extra={"signing": {"key_file": key_file}} if signed else None)
        cons[v] = App(edge, f"cons-{v}", f"lat-{v}", "consumer",
                      extra={"trust": {"keys": [public], "policy": "enforce"}} if signed else None)
        with open(os.path.join(provs[v].data, "state.txt"), "w") as f:
            f.write("initial\n")
    per_variant = ctx.latency_requests
    warm = min(5, per_variant)
    samples = {v: {"publish": [], "apply": []} for v in variants}

    def rounds(d, metric, with_consumers):
        for j in range(warm + per_variant):
            for v in (variants if j % 2 == 0 else variants[::-1]):
                p = provs[v]
                with open(os.path.join(p.data, "state.txt"), "w") as f:
                    f.write(f"{metric} request {j} at {time.time()}\n")
                r = publish_and_wait(d, p, j, 60, [cons[v]] if with_consumers else [])
                if j < warm:
                    continue
                if metric == "publish":
                    samples[v]["publish"].append(r["published"] * 1e3)
                else:
                    if r["publishing"] is None:
                        raise RuntimeError(f"{p.id}: no publishing phase event")
                    samples[v]["apply"].append((r["applied"][cons[v].id] - r["publishing"]) * 1e3)

    d = Daemon(ctx.carsyncd, os.path.join(work), node_config(work, list(provs.values()), name="publish"), "publish")
    d.start()
    try:
        d.wait_idle([p.id for p in provs.values()])
        rounds(d, "publish", False)
    finally:
        d.stop()
    apps = list(provs.values()) + list(cons.values())
    d = Daemon(ctx.carsyncd, work, node_config(work, apps, name="apply"), "apply")
    d.start()
    try:
        d.wait_idle([a.id for a in apps])
        rounds(d, "apply", True)
        failures = d.events.latest.get("cons-signed", {}).get("signature_failures")
    finally:
        d.stop()
    # The signed pair must really have been signed and verified: one "verified" line per apply.
    with open(d.log_path) as f:
        verified = sum(1 for line in f if "[cons-signed] consumer:" in line and line.rstrip().endswith(": verified"))
    if verified < warm + per_variant or failures:
        raise RuntimeError(f"signed pair: {verified} verified applies of {warm + per_variant}, "
                           f"signature_failures {failures}; see {d.log_path}")
    for v, vals in samples.items():
        for metric in ("publish", "apply"):
            for q, name in ((0.5, "p50"), (0.99, "p99"), (1.0, "max")):
                res.add("latency", f"{metric}_ms_{name}", pct(vals[metric], q), "ms", variant=v,
                        requests=len(vals[metric]))
    for metric, label in (("publish", "durable publish"), ("apply", "store write -> applied")):
        for qn, q in (("p50", .5), ("p99", .99)):
            s, u = pct(samples["signed"][metric], q), pct(samples["unsigned"][metric], q)
            diff = s - u
            res.add("latency", f"{metric}_signed_minus_unsigned_{qn}", diff, "ms", requests=per_variant)
            res.cmp("latency", f"{label} {qn}, signed (difference {diff:+.2f} ms)", s, "ms",
                    "unsigned, same run", u, target="difference < 1 ms",
                    met=(diff < 1.0) if not ctx.quick else None)
    log("latency: signed vs unsigned: " + ", ".join(
        f"{m} {qn} {pct(samples['signed'][m], q):.2f} vs {pct(samples['unsigned'][m], q):.2f} ms"
        for m in ("publish", "apply") for qn, q in (("p50", .5), ("p99", .99))))


# ---------------------------------------------------------------- publish -> applied by size

def disk_floor(ctx, nbytes):
    """Seconds to write nbytes durably twice (dd conv=fdatasync): the archive written once by
    the provider and staged once by the consumer, on the filesystem the daemon uses. Starts
    from a flushed disk, as each sized run does."""
    os.sync()
    total = 0.0
    bs = 4 * MiB
    count = max(1, -(-nbytes // bs))
    for i in range(2):
        out = os.path.join(ctx.work, f"floor-{i}.bin")
        t = time.time()
        subprocess.run(["dd", "if=/dev/zero", f"of={out}", f"bs={bs}", f"count={count}", "conv=fdatasync"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        total += time.time() - t
    for i in range(2):
        os.unlink(os.path.join(ctx.work, f"floor-{i}.bin"))
    return total


def section_sizes(ctx, res):
    plan = ctx.size_plan  # [(label, bytes, kind, fmt, backend, runs)]
    backends = sorted({p[4] for p in plan}, key=["embedded", "devnode"].index)
    timelines = []
    floors = {}
    for backend in backends:
        work = ctx.fresh_work(f"sizes-{backend}")
        dn = None
        edge = os.path.join(work, "edge")
        pairs = {fmt: (App(edge, f"prov-{fmt.split('.')[1]}", f"size-{backend}-{fmt}", "provider", fmt),
                       App(edge, f"cons-{fmt.split('.')[1]}", f"size-{backend}-{fmt}", "consumer", fmt, POLL))
                 for fmt in ("tar.gz", "tar.zst")}
        apps = [a for p in pairs.values() for a in p]
        try:
            if backend == "devnode":
                dn = Devnode(ctx.devnode, work).start()
            d = Daemon(ctx.carsyncd, work, node_config(work, apps, dn.backend() if dn else None))
            d.start()
            d.wait_idle([a.id for a in apps])
            seq = 0
            # One uncounted warm-up per format (first download, first apply).
            for fmt, (p, c) in pairs.items():
                fill_mixed(p.data, 256 * 1024, 1)
                publish_and_wait(d, p, seq, 120, [c])
                seq += 1
            for label, nbytes, kind, fmt, be, runs in plan:
                if be != backend:
                    continue
                p, c = pairs[fmt]
                for r in range(runs):
                    seq += 1
                    t_fill = time.time()
                    (fill_random if kind == "random" else fill_mixed)(p.data, nbytes, seq)
                    # The fill is set-up, not carsync's work: flushed before the clock starts.
                    # Left dirty, the consumer's syncfs (same filesystem) wrote it too: 2 GiB
                    # of volume data on top of the archive and the staged copy the floor counts.
                    os.sync()
                    fill_s = time.time() - t_fill
                    reset = reset_peak_rss(d.pid)
                    tl = publish_and_wait(d, p, seq, ctx.size_timeout(nbytes), [c])
                    hwm = proc_status(d.pid)["VmHWM"]
                    total = tl["applied"][c.id]
                    tl.update(label=label, bytes=nbytes, kind=kind, fmt=fmt, backend=backend, run=r,
                              total=total, peak_rss=hwm if reset else None, fill_s=fill_s)
                    timelines.append(tl)
                    log(f"sizes: {label} {kind} {fmt} {backend}: publish->applied {total:.3f} s "
                        f"(sealed {tl['sealed'] or 0:.3f}, published {tl['published']:.3f}), archive "
                        f"{(tl['size'] or 0) / 1e6:.1f} MB, peak RSS {hwm / MiB:.1f} MiB")
                    for k in ("total", "claimed", "sealed", "published", "download_start", "downloaded"):
                        if tl.get(k) is not None:
                            res.add("sizes", f"{k}_s", tl[k], "s", size=label, content=kind, format=fmt,
                                    backend=backend, run=r)
                    res.add("sizes", "archive_bytes", tl["size"], "B", size=label, format=fmt, backend=backend, run=r)
                    if reset:
                        res.add("sizes", "peak_rss", hwm / MiB, "MiB", size=label, format=fmt, backend=backend, run=r)
                    # The floor right after the run, per backend too: this disk's speed moves
                    # by 2x within a minute of sustained writes, and a floor taken for another
                    # run judged a later one against a different disk.
                    key = (label, fmt, backend)
                    if key not in floors and tl["size"]:
                        floors[key] = disk_floor(ctx, tl["size"])
                        res.add("sizes", "disk_floor_s", floors[key], "s", size=label, format=fmt,
                                backend=backend, bytes=tl["size"])
            d.stop()
        finally:
            if dn:
                dn.stop()
        shutil.rmtree(work, ignore_errors=True)
    ctx.size_timelines = timelines
    # Comparisons: the median per (label, fmt, backend) against the disk floor for its bytes.
    groups = {}
    for tl in timelines:
        groups.setdefault((tl["label"], tl["fmt"], tl["backend"], tl["kind"]), []).append(tl)
    small_rss = {}
    for (label, fmt, backend, kind), tls in groups.items():
        total = pct([t["total"] for t in tls], .5)
        floor = floors.get((label, fmt, backend))
        big = kind == "random"
        res.cmp("sizes", f"publish->applied {label} {kind} {fmt} {backend}" + (f" (median of {len(tls)})" if len(tls) > 1 else ""),
                total, "s", "disk floor (dd conv=fdatasync x2, same bytes)", floor,
                target="<= 1.3x disk floor" if big else None,
                met=(total <= 1.3 * floor) if (big and floor and ctx.full_sizes) else None)
        rss = [t["peak_rss"] for t in tls if t["peak_rss"]]
        if rss:
            small_rss.setdefault((fmt, backend), []).append((tls[0]["bytes"], max(rss), label))
    for (fmt, backend), vals in small_rss.items():
        vals.sort()
        if len(vals) > 1:
            lo, hi = vals[0], vals[-1]
            res.cmp("sizes", f"peak RSS publishing+applying {hi[2]} {fmt} {backend}", hi[1] / MiB, "MiB",
                    f"peak RSS at {lo[2]}", lo[1] / MiB, target="<= 64 MiB",
                    met=(hi[1] / MiB <= 64) if ctx.full_sizes else None)


# ---------------------------------------------------------------- fan-out through devnode

def devnode_stats(dn, service="r1fs"):
    """carsync-devnode's traffic counters for one service (GET /devnode/stats on its port, a
    devnode-only route: the read itself is not counted, so before/after differences are exact)."""
    url = dn.backend()[f"{service}_url"] + "/devnode/stats"
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.load(r)
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise RuntimeError(f"{url}: {e} (a carsync-devnode without the stats route?)") from e


def section_fanout(ctx, res):
    work = ctx.fresh_work("fanout")
    edge = os.path.join(work, "edge")
    counts = ctx.fanout_counts
    provs = {n: App(edge, f"fan-prov-{n}", f"fanout-{n}", "provider", "tar.zst") for n in counts}
    cons = {n: [App(edge, f"fan-c{n}-{i:02d}", f"fanout-{n}", "consumer", "tar.zst", POLL) for i in range(n)] for n in counts}
    dn = Devnode(ctx.devnode, work).start()
    dp = dc = None
    out = {}
    try:
        dp = Daemon(ctx.carsyncd, work, node_config(work, list(provs.values()), dn.backend(), "provider-node"),
                    "provider-node").start()
        allc = [c for n in counts for c in cons[n]]
        dc = Daemon(ctx.carsyncd, work, node_config(work, allc, dn.backend(), "consumer-node"), "consumer-node").start()
        dp.wait_idle([p.id for p in provs.values()])
        dc.wait_idle([c.id for c in allc])
        for n in counts:
            p = provs[n]
            fill_mixed(p.data, ctx.fanout_bytes, n)
            ev = dc.events
            marks = {c.id: ev.mark(c.id) for c in cons[n]}
            w0 = io_read(dn.proc.pid)
            s0 = devnode_stats(dn)
            tl = publish_and_wait(dp, p, n, 120)
            cid = tl["cid"]
            times = []
            for c in cons[n]:
                def done(e, c=c):
                    return e.first(c.id, marks[c.id], lambda s: (s.get("last_apply") or {}).get("cid") == cid)
                t_app, _ = ev.wait(done, 600, f"{c.id} apply")
                times.append(t_app - tl["t0"])
            # Every consumer has applied, so every download's last write has completed.
            s1 = devnode_stats(dn)
            w1 = io_read(dn.proc.pid)
            # Measured: the response body bytes devnode's R1FS port wrote in this round (the
            # downloads plus the small JSON answers, e.g. the provider's add_file).
            served = s1["body_bytes_sent"] - s0["body_bytes_sent"]
            file_bytes = s1["file_bytes_sent"] - s0["file_bytes_sent"]
            downloads = s1["file_responses"] - s0["file_responses"]
            cut = s1["cut_responses"] - s0["cut_responses"]
            received = s1["request_body_bytes_received"] - s0["request_body_bytes_received"]
            # The estimate from the consumers' events: every entry into the downloading
            # phase is one fetch of the archive (a retried download enters it again).
            fetches = 0
            for c in cons[n]:
                prev = None
                for _, st in ev.by_id.get(c.id, [])[marks[c.id]:]:
                    if st["phase"] == "downloading" and prev != "downloading":
                        fetches += 1
                    prev = st["phase"]
            estimate = fetches * (tl["size"] or 0)
            out[n] = {"first": min(times), "last": max(times), "published": tl["published"], "served": served,
                      "served_estimate": estimate, "file_bytes": file_bytes, "downloads": downloads,
                      "archive": tl["size"], "fetches": fetches, "rchar": w1 - w0}
            log(f"fanout: {n} consumers: last applied {max(times):.3f} s after the request (published "
                f"{tl['published']:.3f} s); devnode served {served / 1e6:.3f} MB ({downloads} downloads, "
                f"{file_bytes / 1e6:.3f} MB of files, {cut} cut; {received / 1e6:.3f} MB received), events "
                f"show {fetches} downloads of {tl['size'] / 1e6:.3f} MB = {estimate / 1e6:.3f} MB; "
                f"devnode read() {(w1 - w0) / 1e6:.1f} MB")
            res.add("fanout", "last_applied_s", max(times), "s", consumers=n)
            res.add("fanout", "first_applied_s", min(times), "s", consumers=n)
            res.add("fanout", "published_s", tl["published"], "s", consumers=n)
            res.add("fanout", "bytes_served", served, "B", consumers=n, archive_bytes=tl["size"], downloads=downloads,
                    file_bytes=file_bytes, cut_downloads=cut, request_bytes_received=received)
            res.add("fanout", "bytes_served_estimate", estimate, "B", consumers=n, archive_bytes=tl["size"],
                    downloads=fetches)
            res.add("fanout", "devnode_rchar", w1 - w0, "B", consumers=n)
    finally:
        for d in (dp, dc):
            if d:
                d.stop()
        dn.stop()
    shutil.rmtree(work, ignore_errors=True)
    ctx.fanout = out
    one = out[min(counts)]
    for n in counts:
        o = out[n]
        res.cmp("fanout", f"fan-out to {n}: last applied", o["last"], "s", f"{min(counts)} consumer", one["last"])
        res.cmp("fanout", f"fan-out to {n}: bytes served (devnode's count)", o["served"] / 1e6, "MB",
                f"{n} x archive ({o['archive'] / 1e6:.2f} MB)", n * o["archive"] / 1e6)
        res.cmp("fanout", f"fan-out to {n}: bytes served (estimate: {o['fetches']} downloads in events x archive)",
                o["served_estimate"] / 1e6, "MB", f"{n} x archive ({o['archive'] / 1e6:.2f} MB)",
                n * o["archive"] / 1e6)


# ---------------------------------------------------------------- archive build and apply

def drop_cached(path):
    paths = [path] if os.path.isfile(path) else [os.path.join(r, f) for r, _, fs in os.walk(path) for f in fs]
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fdatasync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def timed_shell(cmd, cold_path, repeat, before=None):
    best = None
    for _ in range(repeat):
        if before:
            before()
        subprocess.run(["sync"], check=True)
        if cold_path:
            drop_cached(cold_path)
        t = time.time()
        subprocess.run(["bash", "-o", "pipefail", "-c", cmd], check=True)
        took = time.time() - t
        best = took if best is None else min(best, took)
    return best


def section_archive(ctx, res):
    data = ctx.dataset_dir
    tree = os.path.join(data, "tree")
    if ctx.quick and not os.path.exists(os.path.join(data, ".complete")):
        os.makedirs(tree, exist_ok=True)
        fill_mixed(tree, 2 * MiB, 1)
        with open(os.path.join(data, ".complete"), "w") as f:
            f.write("1\n")
    jb = os.path.join(ctx.work, "archive-build.json")
    je = os.path.join(ctx.work, "archive-apply.json")
    cold = ["--cold"] if ctx.cold else []
    log("archive: carsync builds (carsync_bench_archive)")
    subprocess.run([ctx.bench_archive, "--data", data, "--carsync-only", "--repeat", str(ctx.archive_repeat),
                    "--json", jb] + cold, check=True, stdout=sys.stderr)
    log("archive: carsync applies (carsync_bench_extract)")
    subprocess.run([ctx.bench_extract, "--data", data, "--carsync-only", "--rounds", str(ctx.archive_repeat),
                    "--json", je] + cold, check=True, stdout=sys.stderr)
    with open(jb) as f:
        builds = json.load(f)
    with open(je) as f:
        applies = json.load(f)
    mb = builds[0]["dataset_bytes"] / 1e6
    out = os.path.join(data, "out")
    os.makedirs(out, exist_ok=True)
    q = shlex.quote
    cold_tree = tree if ctx.cold else None
    rep = ctx.archive_repeat
    log("archive: yardstick builds")
    py_gz9 = ("import tarfile,sys; t=tarfile.open(sys.argv[1],'w:gz',compresslevel=9); "
              "t.add(sys.argv[2],arcname='tree'); t.close()")
    yard_build = {
        "tar -czf (gzip -6)": f"tar -C {q(data)} -czf {q(out + '/y.tar.gz')} tree",
        "tar | pigz -6": f"tar -C {q(data)} -cf - tree | pigz -6 > {q(out + '/y.tar.gz')}",
        "tar | zstd -3 -T0": f"tar -C {q(data)} -cf - tree | zstd -3 -T0 -q > {q(out + '/y.tar.zst')}",
        "python tarfile gz-9": f"python3 -c {q(py_gz9)} {q(out + '/y.tar.gz')} {q(tree)}",
    }
    yb = {}
    for name, cmd in yard_build.items():
        yb[name] = timed_shell(cmd, cold_tree, rep)
        res.add("archive", "build_s", yb[name], "s", run=name, mb_s=mb / yb[name])
        log(f"archive: {name}: {yb[name]:.2f} s")
    for f in ("y.tar.gz", "y.tar.zst"):
        if os.path.exists(os.path.join(out, f)):
            os.unlink(os.path.join(out, f))
    log("archive: yardstick applies")
    ex = os.path.join(data, "extract")
    gz, zst = os.path.join(ex, "dataset.tar.gz"), os.path.join(ex, "dataset.tar.zst")
    target = os.path.join(ex, "yard")

    def fresh():
        shutil.rmtree(target, ignore_errors=True)
        os.makedirs(target)
    py_x = ("import tarfile,sys; t=tarfile.open(sys.argv[1],'r:gz'); t.extractall(sys.argv[2]); t.close()")
    yard_apply = {
        "tar -xzf && sync -f": (f"tar -xzf {q(gz)} -C {q(target)} && sync -f {q(target)}", gz),
        "tar -I zstd -xf && sync -f": (f"tar -I zstd -xf {q(zst)} -C {q(target)} && sync -f {q(target)}", zst),
        "python tarfile extractall (gz) && sync -f": (f"python3 -c {q(py_x)} {q(gz)} {q(target)} && sync -f {q(target)}", gz),
    }
    ya = {}
    for name, (cmd, arch) in yard_apply.items():
        ya[name] = timed_shell(cmd, arch if ctx.cold else None, rep, fresh)
        res.add("archive", "apply_s", ya[name], "s", run=name, mb_s=mb / ya[name])
        log(f"archive: {name}: {ya[name]:.2f} s")
    shutil.rmtree(target, ignore_errors=True)
    ours = {}
    for b in builds:
        ours[b["name"]] = b["seconds"]
        res.add("archive", "build_s", b["seconds"], "s", run=b["name"], engine=b["engine"], format=b["format"],
                archive_bytes=b["archive_bytes"], mb_s=mb / b["seconds"])
    for a in applies:
        res.add("archive", "apply_s", a["seconds"], "s", run=a["name"], cpu=a["cpu"], scan=a["scan"],
                commit=a["commit"], durable=a["durable"], mb_s=mb / a["seconds"])
    full = not ctx.quick
    cache = "cold" if ctx.cold else "warm"
    gz_u, gz_p = ours["carsync tar.gz -6 io_uring"], ours["carsync tar.gz -6 portable"]
    zs_u, zs_p = ours["carsync tar.zst -3 io_uring"], ours["carsync tar.zst -3 portable"]
    # The yardsticks are met by the default engine (limits.file_engine, include/carsync/config.hpp).
    gz, zs = (gz_p, zs_p) if DEFAULT_ENGINE == "portable" else (gz_u, zs_u)
    t = yb["tar -czf (gzip -6)"]
    res.cmp("archive", f"build tar.gz -6 {DEFAULT_ENGINE}, {mb:.0f} MB ({cache})", gz, "s", "tar -czf (gzip -6)", t,
            target=">= 1.7x as fast (ratio <= 0.588)", met=(gz <= t / 1.7) if full else None)
    res.cmp("archive", f"build tar.gz -6 {DEFAULT_ENGINE}", gz, "s", "tar | pigz -6", yb["tar | pigz -6"],
            target="no slower (ratio <= 1)", met=(gz <= yb["tar | pigz -6"]) if full else None)
    res.cmp("archive", f"build tar.gz -6 {DEFAULT_ENGINE}", gz, "s", "python tarfile gz-9 (reference)",
            yb["python tarfile gz-9"])
    res.cmp("archive", f"build tar.zst -3 {DEFAULT_ENGINE}", zs, "s", "tar | zstd -3 -T0", yb["tar | zstd -3 -T0"],
            target="no slower (ratio <= 1)", met=(zs <= yb["tar | zstd -3 -T0"]) if full else None)
    a = {x["name"]: x["seconds"] for x in applies}
    res.cmp("archive", f"apply tar.zst (syncfs, {cache})", a["carsync zst syncfs"], "s", "tar -I zstd -xf && sync -f",
            ya["tar -I zstd -xf && sync -f"], target="no slower (ratio <= 1)",
            met=(a["carsync zst syncfs"] <= ya["tar -I zstd -xf && sync -f"]) if full else None)
    res.cmp("archive", f"apply tar.gz (syncfs, {cache})", a["carsync gz syncfs"], "s", "tar -xzf && sync -f",
            ya["tar -xzf && sync -f"], target="no slower (ratio <= 1)",
            met=(a["carsync gz syncfs"] <= ya["tar -xzf && sync -f"]) if full else None)
    res.cmp("archive", "apply tar.gz (syncfs)", a["carsync gz syncfs"], "s", "python tarfile extractall && sync -f (reference)",
            ya["python tarfile extractall (gz) && sync -f"])
    # io_uring measured no faster than portable once compression uses every core, so portable
    # is the default: these rows show the comparison that keeps it so.
    for name, u, p in (("tar.gz", gz_u, gz_p), ("tar.zst", zs_u, zs_p)):
        res.cmp("archive", f"build {name} io_uring engine", u, "s", "same, portable engine", p,
                target="io_uring no slower, or portable the default", met=(u <= p or DEFAULT_ENGINE == "portable") if full else None)


# ---------------------------------------------------------------- delta transfer (issue 12)

SYNC_HKEY = "CHAINSTORE_SYNC"  # the hkey of sync records (spec §3)


def secs(v):
    """A duration for the progress log: "–" when a phase event was not seen."""
    return "–" if v is None else f"{v:.2f}"


def record_of(ctx, store, key):
    """The record under key as the embedded store holds it now (`carsync kv hget`)."""
    r = subprocess.run([ctx.carsync, "--data-dir", store, "kv", "hget", SYNC_HKEY, key], capture_output=True,
                       text=True)
    if r.returncode != 0:
        raise RuntimeError(f"carsync kv hget {SYNC_HKEY} {key} failed ({r.returncode}): {r.stderr.strip()}")
    rec = json.loads(r.stdout)
    return json.loads(rec) if isinstance(rec, str) else rec


def published_delta(ctx, store, p, tl):
    """The "delta" field of the record p just published (tl: publish_and_wait's), or None."""
    rec = record_of(ctx, store, p.key)
    if rec.get("cid") != tl["cid"]:
        raise RuntimeError(f"{p.id}: the store's record names {rec.get('cid')}, not the published {tl['cid']}")
    return rec.get("delta")


def own_pack(delta):
    """The pack of the record's own version (serial == the field's serial), or None."""
    for pk in (delta or {}).get("packs", []):
        if pk["serial"] == delta["serial"]:
            return pk
    return None


def received_transfer(d, c, cid):
    """The "transfer" of consumer c's newest received-history entry (control API), which must
    be the apply of cid."""
    status, body = api(d.sock, "GET", f"/v1/instances/{c.id}/history?dir=received&limit=1")
    if status != 200 or not (body or {}).get("received"):
        raise RuntimeError(f"{c.id}: GET history answered {status}: {body}")
    e = body["received"][-1]
    if e.get("cid") != cid:
        raise RuntimeError(f"{c.id}: the newest received entry names {e.get('cid')}, not {cid}")
    if not isinstance(e.get("transfer"), dict):
        raise RuntimeError(f"{c.id}: the received entry of {cid} has no transfer")
    return e["transfer"]


def wait_applied(d, c, since, cid, t0, timeout):
    """Waits until consumer c (in daemon d) reports cid as its last_apply, from event index
    `since`; fails at once if it quarantines the CID or halts. Returns seconds from t0 of:
    download_start (entering downloading), downloaded (entering scanning or applying) and
    applied; apply_s = applied - download_start, download_s = the downloading phase, scan_s
    and applying_s the next two; t: the receipt times themselves (for RssSampler.peak)."""
    ev = d.events

    def done(e):
        r = e.first(c.id, since, lambda s: (s.get("last_apply") or {}).get("cid") == cid)
        if r:
            return r
        bad = e.first(c.id, since, lambda s: (s.get("quarantine") or {}).get("cid") == cid or s.get("halted"))
        if bad:
            raise RuntimeError(f"{c.id} did not apply {cid}: error {bad[1].get('error')}, "
                               f"quarantine {bad[1].get('quarantine')}, halted {bad[1].get('halted')}")
        return None
    t_app, _ = ev.wait(done, timeout, f"{c.id} apply of {cid}")

    def entered(*phases):
        r = ev.first(c.id, since, lambda s: s["phase"] in phases)
        return r[0] if r else None
    t = {"download": entered("downloading"), "downloaded": entered("scanning", "applying"),
         "scan": entered("scanning"), "apply": entered("applying"), "applied": t_app}
    gap = lambda a, b: (t[b] - t[a]) if (t[a] is not None and t[b] is not None) else None
    return {"applied": t_app - t0, "download_start": (t["download"] - t0) if t["download"] else None,
            "downloaded": (t["downloaded"] - t0) if t["downloaded"] else None,
            "apply_s": gap("download", "applied"), "download_s": gap("download", "downloaded"),
            "scan_s": gap("scan", "apply"), "applying_s": gap("apply", "applied"), "t": t}


def publish_delta(dp, p, seq, waits, timeout):
    """p's request in provider daemon dp, then each (daemon, consumer) of waits applying it.
    The timeline of publish_and_wait plus cpu_s (dp's utime+stime from the request to the
    durable publish: dp runs no consumer) and consumers[id] (wait_applied's, from the request)."""
    marks = [(d, c, d.events.mark(c.id)) for d, c in waits]
    c0 = cpu_seconds(dp.pid)
    tl = publish_and_wait(dp, p, seq, timeout)
    tl["cpu_s"] = cpu_seconds(dp.pid) - c0
    tl["consumers"] = {c.id: wait_applied(d, c, m, tl["cid"], tl["t0"], timeout) for d, c, m in marks}
    return tl


def fetched_metrics(d, c):
    """carsync_fetched_bytes_total of c by mode and its carsync_delta_saved_bytes_total."""
    m = metrics(d.sock)
    return {"delta": metric(m, "carsync_fetched_bytes_total", instance=c.id, mode="delta"),
            "full": metric(m, "carsync_fetched_bytes_total", instance=c.id, mode="full"),
            "saved": metric(m, "carsync_delta_saved_bytes_total", instance=c.id)}


def add_instance(d, app):
    """POST /v1/instances: app runs in d from now (its earlier state, if any, resumes)."""
    status, body = api(d.sock, "POST", "/v1/instances", app.instance())
    if status != 201:
        raise RuntimeError(f"POST /v1/instances {app.id} answered {status}: {body}")


def remove_instance(d, app):
    """DELETE /v1/instances/{id} without delete_state: app stops; its state (base) stays."""
    status, body = api(d.sock, "DELETE", f"/v1/instances/{app.id}")
    if status != 200:
        raise RuntimeError(f"DELETE /v1/instances/{app.id} answered {status}: {body}")


def delta_devnode(ctx, work, data, shard, timeout):
    """Case 5 through carsync-devnode (CStore and R1FS over HTTP, as on a real node): there a
    full consumer downloads the whole archive, where on the embedded store it hard-links the
    blob. A provider on the delta volume, a delta consumer and a SYNC.DELTA false consumer (added
    back through the API once the delta apply is done); v1, one shard replaced, v2."""
    dn = Devnode(ctx.devnode, work).start()
    edge = os.path.join(work, "edge")
    p = App(edge, "dn-prov", "dn-delta", "provider", "tar.zst", {"DELTA_MIN_BYTES": 0} if ctx.quick else {})
    p.data = data
    c = App(edge, "dn-cons-delta", "dn-delta", "consumer", "tar.zst", dict(POLL))
    cf = App(edge, "dn-cons-full", "dn-delta", "consumer", "tar.zst", {**POLL, "DELTA": False})
    dp = Daemon(ctx.carsyncd, work, node_config(work, [p], dn.backend(), "dn-prov"), "dn-prov")
    dc = Daemon(ctx.carsyncd, work, node_config(work, [c], dn.backend(), "dn-cons"), "dn-cons")
    try:
        dp.start()
        dc.start()
        dp.wait_idle([p.id])
        dc.wait_idle([c.id])
        add_instance(dc, cf)
        dc.wait_idle([cf.id])
        publish_delta(dp, p, 1, [(dc, c), (dc, cf)], timeout)
        remove_instance(dc, cf)
        replace_random(shard)
        v2 = publish_delta(dp, p, 2, [(dc, c)], timeout)
        out = {"v2": v2, "delta": v2["consumers"][c.id], "transfer": received_transfer(dc, c, v2["cid"])}
        mark = dc.events.mark(cf.id)
        t = time.time()
        add_instance(dc, cf)
        out["full"] = wait_applied(dc, cf, mark, v2["cid"], t, timeout)
        out["full_transfer"] = received_transfer(dc, cf, v2["cid"])
    finally:
        dp.stop()
        dc.stop()
        dn.stop()
    d, full = out["delta"], out["full"]
    log(f"delta: case 5 devnode: {out['transfer']['mode']}, fetched {out['transfer']['fetched_bytes']:,} B; apply "
        f"{secs(d['apply_s'])} s (downloading {secs(d['download_s'])}) vs full {secs(full['apply_s'])} s (downloading "
        f"{secs(full['download_s'])}, {out['full_transfer']['fetched_bytes']:,} B)")
    return out


def section_delta(ctx, res):
    """Delta transfer (issue 12, point 5) on the embedded store, shared by two carsyncd
    (backend.store_dir): `delta-prov` runs every provider, `delta-cons` every consumer, so each
    daemon's CPU and peak RSS is one side's. The consumers of the 1 GiB record are added through
    the control API, so they can be removed (state kept) and added back.
      case 1  ~1 GiB mixed volume (fill_mixed plus six incompressible 10 MiB shards); v1 is
              published and applied (full: no base), one shard is replaced, v2: the consumer's
              fetched bytes over the archive's (its received history's "transfer").
      case 2  a 100 MiB log file, then 1 MiB of log lines appended: fetched bytes of v2.
      case 3  the delta consumer removed while 5 versions are published (each replacing another
              shard), then added back: fetched bytes against the 5 versions' own packs plus the
              last index, as the records' "delta" fields (carsync kv hget) named them.
      case 4  delta-prov's CPU seconds for v2 of case 1 against a SYNC.DELTA false provider
              publishing the same volume (plain tar.zst) right after it; publish wall times.
      case 5  the delta consumer's apply (entering downloading -> last_apply, from events)
              against a SYNC.DELTA false consumer's on the same record (removed while v2 is
              published, added back once the delta apply is done: the two never share cores);
              the downloading phase alone.
      case 6  delta-cons's peak RSS (VmHWM reset before) over the delta applies of case 1 and
              of case 2 (a 10x smaller volume), and over the full consumer's apply.
    With tar.gz in ctx.delta_formats, case 1 also runs for a tar.gz provider on the volume."""
    quick = ctx.quick
    vol, change, shards = ctx.delta_volume, ctx.delta_change, 6
    timeout = ctx.size_timeout(vol)
    work = ctx.fresh_work("delta")
    store = os.path.join(work, "store")
    os.makedirs(store)
    backend = {"kind": "local", "store_dir": store}
    edge = os.path.join(work, "edge")
    extra = {"DELTA_MIN_BYTES": 0} if quick else {}  # --quick volumes are below the 1 MiB default
    gz = "tar.gz" in ctx.delta_formats
    pd = App(edge, "prov-delta-zst", "delta-zst", "provider", "tar.zst", dict(extra))
    pf = App(edge, "prov-plain-zst", "plain-zst", "provider", "tar.zst", {"DELTA": False})
    pg = App(edge, "prov-delta-gz", "delta-gz", "provider", "tar.gz", dict(extra))
    pl = App(edge, "prov-log", "delta-log", "provider", "tar.zst", dict(extra))
    pf.data = pg.data = pd.data  # one volume: same data, same change for every format and mode
    cd = App(edge, "cons-delta-zst", "delta-zst", "consumer", "tar.zst", dict(POLL))
    cf = App(edge, "cons-full-zst", "delta-zst", "consumer", "tar.zst", {**POLL, "DELTA": False})
    cg = App(edge, "cons-delta-gz", "delta-gz", "consumer", "tar.gz", dict(POLL))
    cl = App(edge, "cons-log", "delta-log", "consumer", "tar.zst", dict(POLL))
    provs = [pd, pf, pl] + ([pg] if gz else [])
    cons = [cl] + ([cg] if gz else [])  # in the file; cd and cf come through the API
    dp = Daemon(ctx.carsyncd, work, node_config(work, provs, backend, "delta-prov"), "delta-prov")
    dc = Daemon(ctx.carsyncd, work, node_config(work, cons, backend, "delta-cons"), "delta-cons")
    f = {}  # the figures, for the comparisons and the plot
    mib = lambda n: n / MiB
    sampler = psampler = None  # both daemons' RSS and CPU every 50 ms: peaks and CPU by phase
    try:
        for d, apps in ((dp, provs), (dc, cons)):
            d.start()
            d.wait_idle([a.id for a in apps])
        for c in (cd, cf):
            add_instance(dc, c)
        dc.wait_idle([cd.id, cf.id])
        # 20 ms on the consumer: the log's reassembly lasts well under 100 ms
        sampler, psampler = ProcSampler(dc.pid, 0.02), ProcSampler(dp.pid)

        # case 2: a log file and an append
        log_file = os.path.join(pl.data, "app.log")
        t = time.time()
        write_log(log_file, ctx.delta_log, 1)
        log(f"delta: {mib(ctx.delta_log):g} MiB log written in {time.time() - t:.1f} s")
        publish_delta(dp, pl, 1, [(dc, cl)], timeout)
        write_log(log_file, ctx.delta_append, 2, "a")
        reset = reset_peak_rss(dc.pid)
        t2 = publish_delta(dp, pl, 2, [(dc, cl)], timeout)
        f["log_hwm"] = proc_status(dc.pid)["VmHWM"] if reset else None
        f["log_apply"] = t2["consumers"][cl.id]
        f["log_transfer"] = received_transfer(dc, cl, t2["cid"])
        f["log_delta"] = published_delta(ctx, store, pl, t2)
        tr = f["log_transfer"]
        log(f"delta: case 2: {mib(ctx.delta_append):g} MiB appended to {mib(ctx.delta_log):g} MiB: {tr['mode']}, "
            f"fetched {tr['fetched_bytes']:,} B of {tr['archive_bytes']:,} B"
            + (f" (fallback {tr['fallback']})" if tr.get("fallback") else ""))

        # case 1, v1: every provider publishes the volume; every consumer applies (full: no base)
        reps = ctx.delta_reps
        t = time.time()
        paths = fill_delta_volume(pd.data, vol, 1, reps + 5, change)
        log(f"delta: {mib(vol):g} MiB volume written in {time.time() - t:.1f} s")
        v1 = {"zst": publish_delta(dp, pd, 1, [(dc, cd), (dc, cf)], timeout)}
        v1["plain"] = publish_delta(dp, pf, 1, [], timeout)
        if gz:
            v1["gz"] = publish_delta(dp, pg, 1, [(dc, cg)], timeout)
        f["v1_transfer"] = received_transfer(dc, cd, v1["zst"]["cid"])
        f["v1"] = v1
        log("delta: v1 published: " + ", ".join(f"{k} {v['size'] / 1e6:.1f} MB in {v['published']:.2f} s "
                                                 f"({v['cpu_s']:.2f} CPU s)" for k, v in v1.items()))
        remove_instance(dc, cf)  # the full consumer comes back for each version once the delta apply is done

        # cases 1, 4, 5, 6: `reps` versions, each replacing one more shard. Each is published with
        # SYNC.DELTA true and false (the order alternates: page cache and load hit both alike) and
        # applied by the delta consumer, then by the full consumer alone.
        f["reps"] = []
        for r in range(reps):
            replace_random(paths[r])
            seq = 2 + r
            plain_first = r % 2 == 1
            if plain_first:
                vp = publish_delta(dp, pf, seq, [], timeout)
            reset = reset_peak_rss(dc.pid)
            vd = publish_delta(dp, pd, seq, [(dc, cd)], timeout)
            rep = {"delta": vd, "hwm": proc_status(dc.pid)["VmHWM"] if reset else None,
                   "transfer": received_transfer(dc, cd, vd["cid"]), "record": published_delta(ctx, store, pd, vd)}
            if not plain_first:
                vp = publish_delta(dp, pf, seq, [], timeout)
            rep["plain"] = vp
            reset = reset_peak_rss(dc.pid)
            mark = dc.events.mark(cf.id)
            t = time.time()
            add_instance(dc, cf)
            rep["full"] = wait_applied(dc, cf, mark, vd["cid"], t, timeout)
            rep["full_hwm"] = proc_status(dc.pid)["VmHWM"] if reset else None
            rep["full_transfer"] = received_transfer(dc, cf, vd["cid"])
            remove_instance(dc, cf)
            f["reps"].append(rep)
            tr, dl, full = rep["transfer"], vd["consumers"][cd.id], rep["full"]
            log(f"delta: v{seq}: {tr['mode']}, fetched {tr['fetched_bytes']:,} B of {tr['archive_bytes']:,} B "
                f"({100 * tr['fetched_bytes'] / tr['archive_bytes']:.2f} %)"
                + (f" (fallback {tr['fallback']})" if tr.get("fallback") else "")
                + f"; publish {vd['published']:.2f} s / {vd['cpu_s']:.2f} CPU s vs plain {vp['published']:.2f} s / "
                  f"{vp['cpu_s']:.2f} CPU s; apply {secs(dl['apply_s'])} s (downloading {secs(dl['download_s'])}) vs "
                  f"full {secs(full['apply_s'])} s (downloading {secs(full['download_s'])})")
            if r == 0 and gz:  # tar.gz: the same one-shard change against its v1
                v2g = publish_delta(dp, pg, 2, [(dc, cg)], timeout)
                f["gz"] = {"v1": v1["gz"], "v2": v2g, "transfer": received_transfer(dc, cg, v2g["cid"]),
                           "delta": published_delta(ctx, store, pg, v2g)}
                tr = f["gz"]["transfer"]
                log(f"delta: case 1 tar.gz v2: {tr['mode']}, fetched {tr['fetched_bytes']:,} B of "
                    f"{tr['archive_bytes']:,} B" + (f" (fallback {tr['fallback']})" if tr.get("fallback") else ""))
        f["metrics"] = fetched_metrics(dc, cd)

        # case 3: the delta consumer away for 5 versions
        remove_instance(dc, cd)
        skipped = []
        for i in range(5):
            replace_random(paths[reps + i])
            tl = publish_delta(dp, pd, 2 + reps + i, [], timeout)
            delta = published_delta(ctx, store, pd, tl)
            skipped.append({"cid": tl["cid"], "size": tl["size"], "delta": delta, "pack": own_pack(delta),
                            "version": 2 + reps + i})
        mark = dc.events.mark(cd.id)
        t = time.time()
        add_instance(dc, cd)
        back = wait_applied(dc, cd, mark, skipped[-1]["cid"], t, timeout)
        f["skip"] = {"versions": skipped, "transfer": received_transfer(dc, cd, skipped[-1]["cid"]), "apply": back}
        tr = f["skip"]["transfer"]
        log(f"delta: case 3: after 5 skipped versions: {tr['mode']}, fetched {tr['fetched_bytes']:,} B of "
            f"{tr['archive_bytes']:,} B" + (f" (fallback {tr['fallback']})" if tr.get("fallback") else ""))
        if ctx.delta_devnode:
            f["devnode"] = delta_devnode(ctx, work, pd.data, paths[0], timeout)
    finally:
        for x in (sampler, psampler):
            if x:
                x.stop()
        for d in (dp, dc):
            d.stop()
    shutil.rmtree(work, ignore_errors=True)
    f["rss"] = [(t, v) for t, v, _ in sampler.samples] if sampler else []
    if psampler:  # the provider's CPU by publish phase: request -> sealed -> publishing -> published
        for rep in f.get("reps", []):
            for name in ("delta", "plain"):
                tl = rep[name]
                at = lambda k: (tl["t0"] + tl[k]) if tl.get(k) is not None else None
                tl["cpu_phases"] = {"archiving": psampler.cpu(tl["t0"], at("sealed")),
                                    "uploading": psampler.cpu(at("sealed"), at("publishing")),
                                    "publishing": psampler.cpu(at("publishing"), at("published"))}
    ctx.delta = f
    delta_report(ctx, res, f)


def delta_report(ctx, res, f):
    import statistics
    med = statistics.median
    judge = not ctx.quick
    size_label = lambda n: (f"{n / (1 << 30):g} GiB" if n >= 1 << 30 else f"{n / MiB:g} MiB" if n >= MiB
                            else f"{n // 1024} KiB")
    vol_label, chg_label = size_label(ctx.delta_volume), size_label(ctx.delta_change)
    log_label, app_label = size_label(ctx.delta_log), size_label(ctx.delta_append)
    reps, first = f["reps"], f["reps"][0]
    n = len(reps)

    def transfer_rows(case, tr, **params):
        for k in ("fetched_bytes", "archive_bytes"):
            res.add("delta", k, tr[k], "B", case=case, mode=tr["mode"], fallback=tr.get("fallback", ""), **params)

    def mode_note(tr):
        return "" if tr["mode"] == "delta" else f" [fetched in full: {tr.get('fallback') or 'no delta'}]"

    # case 1: v2 of each format (the later versions' figures are rows of results.csv)
    cases = [("tar.zst", first["transfer"], first["record"])]
    if "gz" in f:
        cases.append(("tar.gz", f["gz"]["transfer"], f["gz"]["delta"]))
    for fmt, tr, delta in cases:
        transfer_rows("1", tr, format=fmt, volume=vol_label, change=chg_label, version=2)
        if delta:
            res.add("delta", "index_bytes", delta["index"]["size"], "B", case="1", format=fmt, version=2)
            pk = own_pack(delta)
            res.add("delta", "pack_bytes", pk["size"] if pk else 0, "B", case="1", format=fmt, version=2)
        ok = tr["mode"] == "delta" and tr["fetched_bytes"] <= 0.03 * tr["archive_bytes"]
        res.cmp("delta", f"case 1 {fmt}: v2 fetched, one {chg_label} file replaced in {vol_label}{mode_note(tr)}",
                tr["fetched_bytes"] / 1e6, "MB", "v2 full archive", tr["archive_bytes"] / 1e6,
                target="<= 3 % of the archive (ratio <= 0.03)", met=ok if judge else None)
    for i, rep in enumerate(reps[1:], 1):
        transfer_rows("1", rep["transfer"], format="tar.zst", volume=vol_label, change=chg_label, version=2 + i)
    worst = max(reps, key=lambda r: r["transfer"]["fetched_bytes"] / r["transfer"]["archive_bytes"])["transfer"]
    if n > 1:
        res.cmp("delta", f"case 1 tar.zst: worst of v2..v{1 + n} (one more file each){mode_note(worst)}",
                worst["fetched_bytes"] / 1e6, "MB", "its full archive", worst["archive_bytes"] / 1e6,
                target="<= 3 % of the archive (ratio <= 0.03)",
                met=(worst["mode"] == "delta" and worst["fetched_bytes"] <= 0.03 * worst["archive_bytes"]) if judge else None)
    v1 = f["v1_transfer"]
    transfer_rows("1", v1, format="tar.zst", version=1)
    m = f["metrics"]
    for k in ("delta", "full"):
        res.add("delta", f"metric_fetched_bytes_{k}", m[k], "B", case="1", consumer="cons-delta-zst")
    res.add("delta", "metric_delta_saved_bytes", m["saved"], "B", case="1", consumer="cons-delta-zst")
    # The metrics after v1 (full: no base) and the versions since must agree with the received entries.
    want = {"delta": 0, "full": v1["fetched_bytes"]}
    for rep in reps:
        want[rep["transfer"]["mode"]] += rep["transfer"]["fetched_bytes"]
    for mode in ("delta", "full"):
        if m[mode] != want[mode]:
            res.notes.append(f"delta: carsync_fetched_bytes_total{{mode={mode}}} of cons-delta-zst is {m[mode]:.0f} B, "
                             f"its received history's entries sum to {want[mode]} B")

    # case 2
    tr = f["log_transfer"]
    transfer_rows("2", tr, log=log_label, appended=app_label)
    if f["log_delta"]:
        res.add("delta", "index_bytes", f["log_delta"]["index"]["size"], "B", case="2")
        pk = own_pack(f["log_delta"])
        res.add("delta", "pack_bytes", pk["size"] if pk else 0, "B", case="2")
    res.cmp("delta", f"case 2: v2 fetched, {app_label} appended to a {log_label} log{mode_note(tr)}",
            tr["fetched_bytes"] / MiB, "MiB", "v2 full archive", tr["archive_bytes"] / MiB,
            target="<= 2 MiB fetched", met=(tr["mode"] == "delta" and tr["fetched_bytes"] <= 2 * MiB) if judge else None)

    # case 3
    sk = f["skip"]
    tr = sk["transfer"]
    packs = [v["pack"]["size"] if v["pack"] else None for v in sk["versions"]]
    last = sk["versions"][-1]
    last_index = last["delta"]["index"]["size"] if last["delta"] else None
    bound = None if (None in packs or last_index is None) else sum(packs) + last_index
    for v, size in zip(sk["versions"], packs):
        res.add("delta", "pack_bytes", size or 0, "B", case="3", version=v["version"], archive_bytes=v["size"])
    res.add("delta", "index_bytes", last_index or 0, "B", case="3", version=last["version"])
    transfer_rows("3", tr, skipped=5)
    if bound is not None:
        res.add("delta", "bound_bytes", bound, "B", case="3")
    res.cmp("delta", f"case 3: fetched after skipping 5 versions (each one {chg_label} file){mode_note(tr)}",
            tr["fetched_bytes"] / 1e6, "MB", "the 5 versions' packs + the last index (records)",
            bound / 1e6 if bound else None, target="<= sum of the 5 deltas + one index (ratio <= 1)",
            met=(tr["mode"] == "delta" and bound is not None and tr["fetched_bytes"] <= bound) if judge else None)
    res.cmp("delta", "case 3: fetched after skipping 5 versions", tr["fetched_bytes"] / 1e6, "MB",
            "full archive", tr["archive_bytes"] / 1e6)

    # case 4: provider CPU, medians of the paired publishes
    for i, rep in enumerate(reps):
        for name in ("delta", "plain"):
            tl = rep[name]
            res.add("delta", "publish_cpu_s", tl["cpu_s"], "s", case="4", provider=name, version=2 + i,
                    order="plain first" if i % 2 else "delta first")
            res.add("delta", "publish_s", tl["published"], "s", case="4", provider=name, version=2 + i)
            res.add("delta", "archive_bytes", tl["size"], "B", case="4", provider=name, version=2 + i)
    for name, tl in f["v1"].items():
        res.add("delta", "publish_cpu_s", tl["cpu_s"], "s", case="4", provider=name, version=1)
        res.add("delta", "publish_s", tl["published"], "s", case="4", provider=name, version=1)
    of = f" (median of {n})" if n > 1 else ""
    cd_, cp_ = med([r["delta"]["cpu_s"] for r in reps]), med([r["plain"]["cpu_s"] for r in reps])
    ratios = ", ".join(f"{r['delta']['cpu_s'] / r['plain']['cpu_s']:.2f}" for r in reps if r["plain"]["cpu_s"])
    res.cmp("delta", f"case 4: provider CPU, publish of {vol_label} tar.zst with one file changed, SYNC.DELTA true{of}",
            cd_, "s", f"same, SYNC.DELTA false (plain tar.zst){of}; per-pair ratios {ratios}", cp_,
            target="ratio <= 1.25", met=(cd_ <= 1.25 * cp_) if judge else None)
    for ph in ("archiving", "uploading", "publishing"):
        dv = [r["delta"].get("cpu_phases", {}).get(ph) for r in reps]
        pv = [r["plain"].get("cpu_phases", {}).get(ph) for r in reps]
        for i, (a, b) in enumerate(zip(dv, pv)):
            for name, v in (("delta", a), ("plain", b)):
                if v is not None:
                    res.add("delta", "publish_cpu_phase_s", v, "s", case="4", provider=name, phase=ph, version=2 + i)
        dv, pv = [v for v in dv if v is not None], [v for v in pv if v is not None]
        if dv and pv:
            res.cmp("delta", f"case 4: provider CPU in the {ph} phase (sampled every 50 ms), SYNC.DELTA true{of}",
                    med(dv), "s", "same, SYNC.DELTA false", med(pv))
    res.cmp("delta", f"case 4: publish wall time (request -> durable publish), SYNC.DELTA true{of}",
            med([r["delta"]["published"] for r in reps]), "s", f"same, SYNC.DELTA false{of}",
            med([r["plain"]["published"] for r in reps]))
    sd, sp = first["delta"]["size"], first["plain"]["size"]
    res.cmp("delta", "case 4: archive size, SYNC.DELTA true (chunked: independent frames)", sd / 1e6, "MB",
            "same data, SYNC.DELTA false", sp / 1e6, target="<= 1.05x (issue point 1)",
            met=(sd <= 1.05 * sp) if judge else None)

    # case 5: apply times, medians
    dls = [r["delta"]["consumers"]["cons-delta-zst"] for r in reps]
    fulls = [r["full"] for r in reps]
    for i, (dl, full) in enumerate(zip(dls, fulls)):
        for name, tl in (("delta", dl), ("full", full)):
            for k in ("apply_s", "download_s", "scan_s", "applying_s"):
                if tl.get(k) is not None:
                    res.add("delta", k, tl[k], "s", case="5", consumer=name, version=2 + i)
        res.add("delta", "publish_to_applied_s", dl["applied"], "s", case="5", consumer="delta", version=2 + i)
        transfer_rows("5", reps[i]["full_transfer"], consumer="full", version=2 + i)

    def m5(tls, k):
        vals = [t[k] for t in tls if t.get(k) is not None]
        return med(vals) if vals else None
    da, fa = m5(dls, "apply_s"), m5(fulls, "apply_s")
    ratios = ", ".join(f"{d['apply_s'] / x['apply_s']:.2f}" for d, x in zip(dls, fulls)
                       if d["apply_s"] is not None and x["apply_s"])
    res.cmp("delta", f"case 5: consumer apply (downloading -> applied) by delta{of}", da, "s",
            f"same record, SYNC.DELTA false consumer (full){of}; per-pair ratios {ratios}", fa,
            target="ratio <= 1.10", met=(da <= 1.10 * fa) if (judge and da is not None and fa) else None)
    res.cmp("delta", f"case 5: downloading phase alone (delta: index, packs, reassembly){of}", m5(dls, "download_s"),
            "s", "same, full consumer (embedded store: a hard link)", m5(fulls, "download_s"))
    for k, label in (("scan_s", "scanning phase"), ("applying_s", "applying phase")):
        if m5(dls, k) is not None and m5(fulls, k) is not None:
            res.cmp("delta", f"case 5: {label}, delta consumer{of}", m5(dls, k), "s", "same, full consumer", m5(fulls, k))
    res.cmp("delta", f"case 5: publish -> applied by delta{of}", m5(dls, "applied"), "s",
            "publish alone (request -> durable)", med([r["delta"]["published"] for r in reps]))

    dn = f.get("devnode")
    if dn:
        d, full = dn["delta"], dn["full"]
        for name, tl in (("delta", d), ("full", full)):
            for k in ("apply_s", "download_s", "scan_s", "applying_s"):
                if tl.get(k) is not None:
                    res.add("delta", k, tl[k], "s", case="5 devnode", consumer=name, version=2)
        transfer_rows("5 devnode", dn["transfer"], consumer="delta", version=2)
        transfer_rows("5 devnode", dn["full_transfer"], consumer="full", version=2)
        res.cmp("delta", "case 5 through carsync-devnode (HTTP): consumer apply (downloading -> applied) by delta"
                + mode_note(dn["transfer"]), d["apply_s"], "s", "same record, SYNC.DELTA false consumer (full download)",
                full["apply_s"], target="ratio <= 1.10",
                met=(d["apply_s"] <= 1.10 * full["apply_s"]) if (judge and d["apply_s"] is not None and full["apply_s"])
                else None)
        res.cmp("delta", "case 5 through carsync-devnode: downloading phase alone (delta: index, packs, reassembly)",
                d["download_s"], "s", "same, full consumer (the archive over HTTP)", full["download_s"])

    # case 6: memory of v2's applies; the sampled VmRSS split by phase
    samples = f.get("rss") or []

    def peak(t0, t1):
        vals = [v for t, v in samples if t0 is not None and t1 is not None and t0 <= t <= t1]
        return max(vals) / MiB if vals else None

    def at(x):
        vals = [v for t, v in samples if x is not None and t <= x]
        return vals[-1] / MiB if vals else None

    def phase_peaks(tl):
        t = tl["t"]
        return {"downloading": peak(t["download"], t["downloaded"]), "scan+apply": peak(t["downloaded"], t["applied"]),
                "before": at(t["download"])}
    if first["hwm"]:
        dl0, full0 = dls[0], fulls[0]
        pk_d, pk_f, pk_l = phase_peaks(dl0), phase_peaks(full0), phase_peaks(f["log_apply"])
        res.add("delta", "peak_rss", first["hwm"] / MiB, "MiB", case="6", apply="delta", volume=vol_label, over="apply")
        res.add("delta", "peak_rss", first["full_hwm"] / MiB, "MiB", case="6", apply="full", volume=vol_label,
                over="apply")
        if f["log_hwm"]:
            res.add("delta", "peak_rss", f["log_hwm"] / MiB, "MiB", case="6", apply="delta", volume=log_label,
                    over="apply")
        for name, pk, vl in (("delta", pk_d, vol_label), ("full", pk_f, vol_label), ("delta", pk_l, log_label)):
            for ph, v in pk.items():
                if v is not None:
                    res.add("delta", "sampled_rss_peak", v, "MiB", case="6", apply=name, volume=vl, over=ph)
        res.cmp("delta", f"case 6: consumer daemon peak RSS (VmHWM) over the {vol_label} delta apply", first["hwm"] / MiB,
                "MiB", f"same over the full consumer's apply of that record", first["full_hwm"] / MiB,
                target="delta adds nothing to the apply's peak (ratio <= 1.10)",
                met=(first["hwm"] <= 1.10 * first["full_hwm"]) if judge and first["full_hwm"] else None)
        if pk_d["downloading"] is not None and pk_d["before"] is not None:
            grow = pk_d["downloading"] - pk_d["before"]
            grow_l = (pk_l["downloading"] - pk_l["before"]) if (pk_l["downloading"] and pk_l["before"]) else None
            res.add("delta", "reassembly_rss_growth", grow, "MiB", case="6", volume=vol_label, rss_before=pk_d["before"])
            if grow_l is not None:
                res.add("delta", "reassembly_rss_growth", grow_l, "MiB", case="6", volume=log_label,
                        rss_before=pk_l["before"])
            res.cmp("delta", f"case 6: RSS growth while reassembling (downloading phase peak - RSS before it, "
                    f"{pk_d['before']:.0f} MiB; VmRSS every 50 ms), {vol_label}", grow, "MiB",
                    f"same, the {log_label} log's delta (RSS before {pk_l['before'] or 0:.0f} MiB)", grow_l,
                    target="bounded: tens of MiB at most, independent of volume size",
                    met=(grow <= 32) if judge else None)
        if pk_d["scan+apply"] is not None and pk_f["scan+apply"] is not None:
            res.cmp("delta", f"case 6: peak RSS scanning + applying (sampled), delta consumer, {vol_label}",
                    pk_d["scan+apply"], "MiB", "same, full consumer", pk_f["scan+apply"])
        if f["log_hwm"]:
            res.cmp("delta", f"case 6: consumer daemon peak RSS (VmHWM) over the {vol_label} delta apply", first["hwm"] / MiB,
                    "MiB", f"same over the {log_label} log's delta apply", f["log_hwm"] / MiB)
    else:
        res.notes.append("delta: case 6 not measured (clear_refs not permitted: VmHWM cannot be reset)")
    if samples:
        mx = max(v for _, v in samples)
        res.add("delta", "consumer_rss_first", samples[0][1] / MiB, "MiB", case="6")
        res.add("delta", "consumer_rss_last", samples[-1][1] / MiB, "MiB", case="6")
        res.notes.append(f"delta: the consumer carsyncd's VmRSS was {samples[0][1] / MiB:.0f} MiB after start, "
                         f"{mx / MiB:.0f} MiB at most and {samples[-1][1] / MiB:.0f} MiB at the end of the section "
                         f"({len(reps) * 2 + 4 + (1 if 'gz' in f else 0)} applies of the {vol_label} volume, "
                         f"2 of the log; delta_consumer_rss.png)")
