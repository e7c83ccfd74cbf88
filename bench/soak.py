#!/usr/bin/env python3
"""Soak and overload of the real carsyncd on the embedded store (no container engine).

Two daemons share backend.store_dir, each with its own data_dir, as two hosts share R1FS and
ChainStore: daemon A runs --pairs provider instances plus --failing providers whose volume
holds a FIFO (every request fails mid-archive, after the gzip writer is open: the path that
leaked ~330 KB per failure), daemon B runs one consumer per provider key. Each provider app
publishes in a closed loop: new content, request.json renamed into place, response.json,
the consumer's last_apply.json naming the same CID, a think time, again, with at most
--max-in-flight publishes at a time (so the working set, and RSS, do not follow whatever
else loads the machine). The failing apps re-request as soon as they are answered.
Phases: warm-up; quiescent point; failing requests alone (RSS must not grow); the soak;
quiescent point; the overload check. Safety rescans are an hour away, so only the
inotify paths serve requests: a lost event is a missed request.

Every --window seconds a row samples each daemon from /proc/<pid>: open descriptors,
inotify watches (`inotify wd:` lines in fdinfo), VmRSS; and the window's request counts
and latency percentiles (request -> response.json and publish -> last_apply.json, from the
files' mtimes), the daemons' CPU per answer/apply and the load average. At two quiescent points (after the warm-up and at the end, nothing in
flight) descriptors and watches must be equal, RSS within tolerance; latency must not
trend up; every request answered exactly once (the response echoes the request's seq, one
sent-history entry per ok answer); every consumer holds its provider's last snapshot.

Then the overload check (root only): both daemons restart with fs.inotify.max_queued_events
set small (restored as soon as they are up: the queue size is fixed when the inotify
instance is created), every app requests at the same instant, and every request must be
served with rescans still an hour away.

Exit 0 when every check holds. Rows go to stdout and <work>/soak.csv.
"""
import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

MAX_QUEUED = "/proc/sys/fs/inotify/max_queued_events"


# limits.history_keep of both daemons: small, so that pruning runs all through the soak.
HISTORY_KEEP = 16


def now():
    return time.time()


def pct(values, q):
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))]


def write_atomic(path, text):
    tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".app-tmp")
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def mtime(path):
    try:
        return os.stat(path).st_mtime
    except FileNotFoundError:
        return None


class Daemon:
    def __init__(self, name, binary, config, log):
        self.name, self.binary, self.config, self.log = name, binary, config, log
        self.proc = None

    def start(self):
        self.log_offset = os.path.getsize(self.log) if os.path.exists(self.log) else 0
        out = open(self.log, "ab")
        self.cpu_seen = 0.0
        self.proc = subprocess.Popen([self.binary, "--config", self.config], stdout=out, stderr=subprocess.STDOUT)
        out.close()

    def log_text(self, since_start=True):
        with open(self.log, "rb") as f:
            if since_start:
                f.seek(self.log_offset)
            return f.read().decode(errors="replace")

    def wait_ready(self, limit=120):
        deadline = now() + limit
        while now() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.name}: carsyncd exited ({self.proc.returncode}) before ready; see {self.log}")
            if "carsyncd ready" in self.log_text():
                return
            time.sleep(0.05)
        raise SystemExit(f"{self.name}: not ready within {limit} s; see {self.log}")

    def cpu_delta(self):
        """Seconds of CPU (user + system) since the last call."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        delta = total - getattr(self, "cpu_seen", 0.0)
        self.cpu_seen = total
        return delta

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, limit=120):
        if not self.alive():
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(limit)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None

    def sample(self):
        """(open descriptors, inotify watches, VmRSS KiB) from /proc."""
        pid = self.proc.pid
        fds = os.listdir(f"/proc/{pid}/fd")
        watches = 0
        for fd in fds:
            try:
                with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                    watches += sum(1 for line in f if line.startswith("inotify wd:"))
            except (FileNotFoundError, ProcessLookupError):
                pass
        rss = 0
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
        return len(fds), watches, rss


class App:
    """One app instance's volumes; the soak plays the app."""

    def __init__(self, root, iid, key, role):
        self.id, self.key, self.role = iid, key, role
        base = os.path.join(root, "edge", iid, "fixed_volumes", "mounts")
        self.system = os.path.join(base, "r1en_system")
        self.data = os.path.join(base, "appdata")
        self.ctl = os.path.join(self.system, "volume-sync")
        os.makedirs(self.system, exist_ok=True)
        os.makedirs(self.data, exist_ok=True)

    def instance(self):
        return {"id": self.id, "container": None, "system_volume": self.system,
                "volumes": {self.data: {"bind": "/app/data"}},
                "SYNC": {"ENABLED": True, "KEY": self.key, "TYPE": "provider" if self.role != "consumer" else "consumer"}}


class Provider:
    def __init__(self, app, consumer, failing):
        self.app, self.consumer, self.failing = app, consumer, failing
        self.seq = 0
        self.state = "idle"
        self.next_at = 0.0
        self.t_request = self.t_response = 0.0
        self.cid = None
        self.last_cid = None
        self.last_content = None
        self.ok = 0
        self.errors = 0
        self.apply_seen = None  # last_apply.json mtime already read

    def request(self, t):
        self.prepare()
        self.fire(t)

    def prepare(self):
        """Everything an app does before its request: new content, the old answer removed,
        the request written beside its final name."""
        self.seq += 1
        if not self.failing:
            # New content every time: a distinct snapshot, so a distinct CID.
            body = f"{self.app.id} seq {self.seq}\n".encode() + random.randbytes(4096)
            with open(os.path.join(self.app.data, "state.bin"), "wb") as f:
                f.write(body)
            self.last_content = body
        try:
            os.unlink(os.path.join(self.app.ctl, "response.json"))
        except FileNotFoundError:
            pass
        with open(os.path.join(self.app.ctl, ".request.json.app-tmp"), "w") as f:
            f.write(json.dumps({"archive_paths": ["/app/data"], "metadata": {"seq": self.seq}}))

    def fire(self, t):
        os.rename(os.path.join(self.app.ctl, ".request.json.app-tmp"), os.path.join(self.app.ctl, "request.json"))
        self.t_request = t
        self.state = "response"


class Soak:
    def __init__(self, args):
        self.args = args
        self.work = args.work
        self.failures = []  # check failures, reported at the end
        self.rows = []
        self.lat_resp, self.lat_apply = [], []
        self.counts = dict(requests=0, ok=0, failed_as_expected=0, applied=0)
        self.total = dict(requests=0, ok=0, failed_as_expected=0, applied=0)
        self.missed = []
        random.seed(args.seed)

        stores = os.path.join(self.work, "stores")
        self.providers = []
        apps_a, apps_b = [], []
        for i in range(args.pairs):
            key = f"50a4e000-0000-4000-8000-{i:012d}"
            p = App(self.work, f"p{i:03d}", key, "provider")
            c = App(self.work, f"c{i:03d}", key, "consumer")
            apps_a.append(p)
            apps_b.append(c)
            self.providers.append(Provider(p, c, False))
        for i in range(args.failing):
            f = App(self.work, f"f{i:02d}", f"50a4e000-0000-4000-8000-fa11{i:08d}", "failing")
            with open(os.path.join(f.data, "before.txt"), "w") as fh:
                fh.write("some content so the archive is under way\n" * 100)
            if not os.path.exists(os.path.join(f.data, "pipe")):
                os.mkfifo(os.path.join(f.data, "pipe"))  # a special file: refused mid-archive
            apps_a.append(f)
            self.providers.append(Provider(f, None, True))
        self.daemons = []
        for name, apps in (("A", apps_a), ("B", apps_b)):
            cfg = {"data_dir": os.path.join(self.work, f"data-{name}"), "node_id": f"soak-{name}",
                   "control_socket": os.path.join(self.work, f"{name}.sock"),
                   "backend": {"kind": "local", "store_dir": stores},
                   "limits": {"rescan_interval_s": 3600, "history_keep": HISTORY_KEEP},
                   "instances": [a.instance() for a in apps]}
            path = os.path.join(self.work, f"node-{name}.json")
            with open(path, "w") as fh:
                json.dump(cfg, fh)
            self.daemons.append(Daemon(name, os.path.join(args.bin, "carsyncd"), path,
                                       os.path.join(self.work, f"carsyncd-{name}.log")))

    def fail(self, text):
        print(f"FAIL: {text}", flush=True)
        self.failures.append(text)

    # ---- the apps ---------------------------------------------------------------------

    def step(self, load, t, failing_only=False):
        """Advances every app once. `load`: whether idle apps may request again (at most
        --max-in-flight publishes at a time, so the working set does not follow the machine's
        load; the failing apps are not counted)."""
        publishing = sum(1 for p in self.providers if not p.failing and p.state in ("response", "apply"))
        self.turn = (getattr(self, "turn", 0) + 1) % len(self.providers)  # fair admission
        for p in self.providers[self.turn:] + self.providers[:self.turn]:
            if p.state == "idle":
                if load and t >= p.next_at and (p.failing or (not failing_only and publishing < self.args.max_in_flight)):
                    p.request(t)
                    self.counts["requests"] += 1
                    publishing += not p.failing
                continue
            if p.state == "lost":
                continue
            if t - p.t_request > self.args.deadline:
                self.missed.append(f"{p.app.id} seq {p.seq}: no {'response.json' if p.state == 'response' else 'apply'} "
                                   f"within {self.args.deadline} s")
                p.state = "lost"
                continue
            if p.state == "response":
                path = os.path.join(p.app.ctl, "response.json")
                if not os.path.exists(path):
                    continue
                resp = read_json(path)
                if resp is None:
                    continue
                m = mtime(path) or t
                p.t_response = m
                self.lat_resp.append(m - p.t_request)
                if p.failing:
                    if resp.get("status") != "error" or resp.get("stage") != "archive_build":
                        self.fail(f"{p.app.id} seq {p.seq}: expected an archive_build error, got {resp}")
                    p.errors += 1
                    self.counts["failed_as_expected"] += 1
                    p.state = "idle"
                    p.next_at = t + self.args.fail_think
                    continue
                if resp.get("status") != "ok":
                    self.fail(f"{p.app.id} seq {p.seq}: response {resp}")
                    p.state = "lost"
                    continue
                if resp.get("metadata", {}).get("seq") != p.seq:
                    self.fail(f"{p.app.id}: answer for seq {resp.get('metadata')} while seq {p.seq} is pending")
                p.ok += 1
                self.counts["ok"] += 1
                p.cid = resp["cid"]
                p.state = "apply"
            if p.state == "apply":
                path = os.path.join(p.consumer.ctl, "last_apply.json")
                m = mtime(path)
                if m is None or m == p.apply_seen:
                    continue
                last = read_json(path)
                if last is None:
                    continue
                p.apply_seen = m
                if last.get("cid") != p.cid:
                    continue  # an earlier snapshot's apply
                if last.get("metadata", {}).get("seq") != p.seq:
                    self.fail(f"{p.consumer.id}: applied {p.cid} with metadata {last.get('metadata')}, expected seq {p.seq}")
                self.lat_apply.append(m - p.t_response)
                self.counts["applied"] += 1
                p.last_cid = p.cid
                p.state = "idle"
                p.next_at = t + random.uniform(self.args.think_min, self.args.think_max)
        return self.in_flight()

    def in_flight(self):
        return sum(1 for p in self.providers if p.state in ("response", "apply"))

    # ---- windows and quiescent points -------------------------------------------------

    def close_window(self, t0, phase, skip_empty=False):
        if skip_empty and not any(self.counts.values()):
            return
        row = {"t_s": round(now() - t0, 1), "phase": phase}
        for d in self.daemons:
            fds, watches, rss = d.sample()
            row.update({f"{d.name}_fds": fds, f"{d.name}_watches": watches, f"{d.name}_rss_mib": round(rss / 1024, 1)})
        row.update({k: v for k, v in self.counts.items()})
        # CPU per answered request / per apply: the daemons' own work, whatever else runs here.
        a_cpu, b_cpu = (d.cpu_delta() for d in self.daemons)
        answers = self.counts["ok"] + self.counts["failed_as_expected"]
        row["A_cpu_ms_per_answer"] = round(a_cpu * 1000 / answers, 2) if answers else ""
        row["B_cpu_ms_per_apply"] = round(b_cpu * 1000 / self.counts["applied"], 2) if self.counts["applied"] else ""
        row["load1"] = open("/proc/loadavg").read().split()[0]
        row["in_flight"] = self.in_flight()
        for name, lat in (("resp", self.lat_resp), ("apply", self.lat_apply)):
            row[f"{name}_p50_ms"] = round(pct(lat, 0.5) * 1000)  if lat else ""
            row[f"{name}_p99_ms"] = round(pct(lat, 0.99) * 1000) if lat else ""
        for k in self.counts:
            self.total[k] += self.counts[k]
            self.counts[k] = 0
        self.lat_resp, self.lat_apply = [], []
        self.rows.append(row)
        self.print_row(row)

    def print_row(self, row):
        cols = list(row.keys())
        if len(self.rows) == 1:
            print(",".join(cols), flush=True)
        print(",".join(str(row[c]) for c in cols), flush=True)

    def run_load(self, seconds, t0, phase, failing_only=False):
        # Staggered like the think times, so the phase does not open with every app at once.
        for p in self.providers:
            if not p.failing:
                p.next_at = now() + random.uniform(0, self.args.think_max)
        end = now() + seconds
        next_window = now() + self.args.window
        while now() < end:
            self.step(True, now(), failing_only)
            if now() >= next_window:
                self.close_window(t0, phase)
                next_window += self.args.window
            self.check_daemons()
            time.sleep(self.args.tick)
        if now() - (next_window - self.args.window) >= 1:  # the phase's last, shorter window
            self.close_window(t0, phase)

    def drain(self, limit):
        deadline = now() + limit
        while self.step(False, now()) and now() < deadline:
            self.check_daemons()
            time.sleep(self.args.tick)
        if self.in_flight():
            self.fail(f"{self.in_flight()} requests still in flight {limit} s after the load stopped")

    def quiescent(self, label):
        """Per daemon (fds, watches, rss KiB) once two samples a second apart agree."""
        deadline = now() + 30
        prev = None
        while now() < deadline:
            cur = [d.sample() for d in self.daemons]
            if prev and [c[:2] for c in cur] == [p[:2] for p in prev]:
                break
            prev = cur
            time.sleep(1)
        for d, (fds, watches, rss) in zip(self.daemons, cur):
            print(f"# quiescent {label}: daemon {d.name}: fds={fds} inotify_watches={watches} rss={rss / 1024:.1f} MiB",
                  flush=True)
        return cur

    def check_daemons(self):
        for d in self.daemons:
            if not d.alive():
                raise SystemExit(f"daemon {d.name} exited ({d.proc.returncode}); see {d.log}")

    # ---- the checks -------------------------------------------------------------------

    def check_flat(self, q1, q2, load_rows):
        a = self.args
        for d, s, e in zip(self.daemons, q1, q2):
            if (s[0], s[1]) != (e[0], e[1]):
                self.fail(f"daemon {d.name}: fds/watches {s[0]}/{s[1]} after the warm-up, {e[0]}/{e[1]} at the end")
            allowed = s[2] + max(a.rss_slack_mib * 1024, s[2] * a.rss_slack_pct / 100)
            if e[2] > allowed:
                self.fail(f"daemon {d.name}: RSS grew {s[2] / 1024:.1f} -> {e[2] / 1024:.1f} MiB "
                          f"(allowed {allowed / 1024:.1f})")
        half = len(load_rows) // 2
        for col in ("resp_p50_ms", "apply_p50_ms", "resp_p99_ms", "apply_p99_ms"):
            first = [r[col] for r in load_rows[:half] if r[col] != ""]
            second = [r[col] for r in load_rows[half:] if r[col] != ""]
            if not first or not second:
                self.fail(f"{col}: no latency measured in one half of the soak")
                continue
            f, s = statistics.median(first), statistics.median(second)
            print(f"# {col}: median over the first half {f} ms, second half {s} ms", flush=True)
            if s > a.latency_factor * f + a.latency_slack_ms:
                self.fail(f"{col} trends up: {f} ms -> {s} ms")

    def check_exactly_once(self):
        # History is pruned to history_keep entries: it holds the newest min(ok, keep)
        # publishes, each request once, the newest naming the last CID answered.
        data_a = os.path.join(self.work, "data-A", "instances")
        for p in self.providers:
            if p.failing:
                continue
            sent = os.path.join(data_a, p.app.id, "sync_history", "sent")
            names = [f for f in os.listdir(sent) if f.endswith(".json")] if os.path.isdir(sent) else []
            entries = [read_json(os.path.join(sent, f)) or {} for f in names]
            want = min(p.ok, HISTORY_KEEP)
            if len(entries) != want:
                self.fail(f"{p.app.id}: {p.ok} ok answers but {len(entries)} sent-history entries (expected {want})")
                continue
            seqs = sorted(e.get("request", {}).get("metadata", {}).get("seq", -1) for e in entries)
            # Every request of a working provider is answered ok, in order: seq n is the nth.
            if seqs != list(range(p.ok - want + 1, p.ok + 1)):
                self.fail(f"{p.app.id}: sent history holds requests {seqs[:3]}...{seqs[-3:]}, "
                          f"expected the last {want} up to {p.ok}, each once")
            newest = max(entries, key=lambda e: e.get("sequence", -1)) if entries else {}
            if p.cid is not None and newest.get("cid") != p.cid:
                self.fail(f"{p.app.id}: newest sent entry names {newest.get('cid')}, the last answer {p.cid}")

    def check_converged(self):
        for p in self.providers:
            if p.failing or p.last_cid is None:
                continue
            last = read_json(os.path.join(p.consumer.ctl, "last_apply.json")) or {}
            if last.get("cid") != p.last_cid:
                self.fail(f"{p.consumer.id}: last_apply.json names {last.get('cid')}, the last publish was {p.last_cid}")
            with open(os.path.join(p.consumer.data, "state.bin"), "rb") as f:
                if f.read() != p.last_content:
                    self.fail(f"{p.consumer.id}: state.bin differs from the provider's last snapshot")

    # ---- the phases -------------------------------------------------------------------

    def soak(self):
        a = self.args
        for d in self.daemons:
            d.start()
        for d in self.daemons:
            d.wait_ready()
        print(f"# {a.pairs} providers + {a.pairs} consumers + {a.failing} failing providers "
              f"({2 * a.pairs + a.failing} instances) on two carsyncd sharing one store; "
              f"{a.minutes} min soak after {a.warmup} s warm-up; windows of {a.window} s", flush=True)
        t0 = now()
        self.run_load(a.warmup, t0, "warmup")
        self.drain(a.deadline)
        self.close_window(t0, "warmup", skip_empty=True)
        q1 = self.quiescent("after warm-up")
        # Repeated failures alone (each fails mid-archive, after the gzip writer is open):
        # what used to leak ~330 KB per request.
        failed_before = self.total["failed_as_expected"]
        self.run_load(a.fail_phase, t0, "failures", failing_only=True)
        self.drain(a.deadline)
        self.close_window(t0, "failures", skip_empty=True)
        qf = self.quiescent("after the failures")
        failures = self.total["failed_as_expected"] - failed_before
        grown = (qf[0][2] - q1[0][2]) * 1024
        print(f"# repeated failures: {failures} requests failed mid-archive; daemon A RSS "
              f"{q1[0][2] / 1024:.1f} -> {qf[0][2] / 1024:.1f} MiB ({max(grown, 0) / max(failures, 1):.0f} bytes per failure)",
              flush=True)
        if failures < 100:
            self.fail(f"only {failures} failing requests: too few to tell")
        if grown > a.fail_rss_slack_mib * 1024 * 1024:
            self.fail(f"daemon A RSS grew {grown / 1048576:.1f} MiB over {failures} failed requests")
        mark = len(self.rows)
        self.run_load(a.minutes * 60, t0, "soak")
        load_rows = self.rows[mark:]
        self.drain(a.deadline)
        self.close_window(t0, "drained", skip_empty=True)
        q2 = self.quiescent("at the end")
        self.check_flat(q1, q2, load_rows)
        self.check_exactly_once()
        self.check_converged()
        t = self.total
        print(f"# totals: requests={t['requests']} ok={t['ok']} applied={t['applied']} "
              f"failed_as_expected={t['failed_as_expected']} missed={len(self.missed)}", flush=True)
        for m in self.missed:
            self.fail(f"missed: {m}")
        if t["requests"] != t["ok"] + t["failed_as_expected"]:
            self.fail(f"{t['requests']} requests but {t['ok'] + t['failed_as_expected']} answers")
        if t["ok"] != t["applied"]:
            self.fail(f"{t['ok']} publishes but {t['applied']} applies")
        for d in self.daemons:
            rc = d.stop()
            if rc != 0:
                self.fail(f"daemon {d.name} exited {rc} on SIGTERM")

    def overflow(self):
        a = self.args
        if os.geteuid() != 0:
            print("# SKIP inotify overflow check: setting fs.inotify.max_queued_events needs root", flush=True)
            return
        with open(MAX_QUEUED) as f:
            old = f.read().strip()
        print(f"# overflow: restarting both daemons with max_queued_events={a.queue} (was {old})", flush=True)
        try:
            with open(MAX_QUEUED, "w") as f:
                f.write(str(a.queue))
            for d in self.daemons:
                d.start()
            for d in self.daemons:
                d.wait_ready()
        finally:
            with open(MAX_QUEUED, "w") as f:
                f.write(old)
        with open(MAX_QUEUED) as f:
            print(f"# overflow: max_queued_events restored to {f.read().strip()} (queues already created keep {a.queue})",
                  flush=True)
        for p in self.providers:
            p.state, p.next_at = "idle", 0.0
        # Every app at the same instant while both daemons are frozen (as a daemon too busy to
        # read would be): A's control-directory queue overflows with the requests, then B's
        # store-change queue with the records A publishes while B is still frozen.
        a_pid, b_pid = self.daemons[0].proc.pid, self.daemons[1].proc.pid
        os.kill(b_pid, signal.SIGSTOP)
        os.kill(a_pid, signal.SIGSTOP)
        try:
            for p in self.providers:
                p.prepare()
            t0 = now()
            for p in self.providers:
                p.fire(t0)
            self.counts["requests"] += len(self.providers)
            os.kill(a_pid, signal.SIGCONT)
            deadline = now() + a.deadline
            while any(p.state == "response" for p in self.providers) and now() < deadline:
                self.step(False, now())
                time.sleep(a.tick)
        finally:
            os.kill(a_pid, signal.SIGCONT)
            os.kill(b_pid, signal.SIGCONT)
        self.drain(a.deadline)
        self.close_window(t0, "overflow")
        served = sum(1 for p in self.providers if p.state == "idle")
        overflows = {d.name: d.log_text().count("inotify queue overflow") for d in self.daemons}
        print(f"# overflow: {served}/{len(self.providers)} burst requests served and applied in "
              f"{now() - t0:.1f} s; overflow notices in the logs: {overflows}", flush=True)
        if overflows["A"] == 0:
            self.fail("the burst did not overflow daemon A's control-directory queue: nothing was tested")
        if served != len(self.providers):
            self.fail(f"{len(self.providers) - served} burst requests not served")
        self.check_converged()
        for m in self.missed:
            self.fail(f"missed in the burst: {m}")
        for d in self.daemons:
            rc = d.stop()
            if rc != 0:
                self.fail(f"daemon {d.name} exited {rc} on SIGTERM")

    def write_csv(self):
        path = os.path.join(self.work, "soak.csv")
        cols = []
        for r in self.rows:
            cols += [c for c in r if c not in cols]
        with open(path, "w") as f:
            f.write(",".join(cols) + "\n")
            for r in self.rows:
                f.write(",".join(str(r.get(c, "")) for c in cols) + "\n")
        print(f"# rows: {path}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="directory holding carsyncd")
    ap.add_argument("--work", help="work directory (default: a new one under /tmp)")
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--warmup", type=float, default=30, help="seconds of load before the first quiescent point")
    ap.add_argument("--pairs", type=int, default=245, help="provider keys, each with a consumer")
    ap.add_argument("--failing", type=int, default=10, help="providers whose every request fails mid-archive")
    ap.add_argument("--window", type=float, default=10)
    ap.add_argument("--tick", type=float, default=0.02)
    ap.add_argument("--think-min", type=float, default=1.0)
    ap.add_argument("--think-max", type=float, default=4.0)
    ap.add_argument("--fail-think", type=float, default=0.05)
    ap.add_argument("--max-in-flight", type=int, default=64, help="publishes in flight at most (admission control)")
    ap.add_argument("--fail-phase", type=float, default=45, help="seconds of failing requests alone after the warm-up")
    ap.add_argument("--fail-rss-slack-mib", type=float, default=2)
    ap.add_argument("--deadline", type=float, default=180, help="seconds a request may take before it counts as missed")
    ap.add_argument("--queue", type=int, default=16, help="max_queued_events for the overflow check")
    ap.add_argument("--no-overflow", action="store_true")
    ap.add_argument("--rss-slack-mib", type=float, default=8)
    ap.add_argument("--rss-slack-pct", type=float, default=10)
    ap.add_argument("--latency-factor", type=float, default=2.0)
    ap.add_argument("--latency-slack-ms", type=float, default=250)
    ap.add_argument("--seed", type=int, default=8)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    created = args.work is None
    args.work = os.path.abspath(args.work or tempfile.mkdtemp(prefix="carsync-soak."))
    os.makedirs(args.work, exist_ok=True)

    # SIGTERM/SIGINT unwind through the finally blocks (daemons stopped, sysctl restored).
    def interrupted(sig, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, interrupted)

    s = Soak(args)
    started = now()
    try:
        s.soak()
        if not args.no_overflow:
            s.overflow()
    except KeyboardInterrupt:
        s.fail("interrupted")
    except SystemExit as e:
        s.fail(str(e))
    finally:
        for d in s.daemons:
            if d.alive():
                d.stop(30)
        s.write_csv()
    print(f"# soak took {now() - started:.0f} s; load average {open('/proc/loadavg').read().split()[:3]}", flush=True)
    if s.failures:
        print(f"soak: {len(s.failures)} check(s) failed (logs in {args.work})", flush=True)
        return 1
    print("soak: every check passed", flush=True)
    if created and not args.keep:
        shutil.rmtree(args.work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
