"""The processes scripts/bench drives: carsyncd (its control API and /v1/events stream),
carsync-devnode, and /proc readings of them. Every timing the harness reports comes from here:
the receipt time of an SSE event (time.time() when the event's last line arrives), or a
figure carsync carries in its events and history entries; never from log wording."""
import http.client
import json
import os
import re
import socket
import subprocess
import threading
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\S+)?$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=60):
        super().__init__("carsync", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


def api(sock, method, path, body=None, timeout=60):
    conn = UnixHTTPConnection(sock, timeout)
    try:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        conn.request(method, path, body=data, headers=headers)
        r = conn.getresponse()
        text = r.read()
        return r.status, (json.loads(text) if text else None)
    finally:
        conn.close()


class EventStream:
    """Reads GET /v1/events on its own thread and keeps, per instance, the list of
    (receipt time, status) it received. wait(pred) blocks until pred(self) is true."""

    def __init__(self, sock):
        self.sock = sock
        self.cond = threading.Condition()
        self.by_id = {}      # id -> list of (t, status)
        self.latest = {}     # id -> status
        self.count = 0
        self.closed = False
        self.error = None
        self.conn = UnixHTTPConnection(sock, timeout=None)
        self.conn.request("GET", "/v1/events", headers={"Accept": "text/event-stream"})
        self.raw = self.conn.sock  # the response may detach it from the connection
        self.resp = self.conn.getresponse()
        if self.resp.status != 200:
            raise RuntimeError(f"/v1/events answered {self.resp.status}")
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        event, data = None, []
        try:
            while True:
                line = self.resp.fp.readline()
                if not line:
                    break
                line = line.decode().rstrip("\r\n")
                if line == "":
                    if data:
                        self._dispatch(event, "\n".join(data), time.time())
                    event, data = None, []
                elif line.startswith(":"):
                    continue
                elif line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].lstrip())
        except Exception as e:  # the stream ends when the daemon stops
            self.error = e
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def _dispatch(self, event, text, t):
        doc = json.loads(text)
        with self.cond:
            if event == "snapshot":
                for st in doc["instances"]:
                    self.latest[st["id"]] = st
            elif event == "instance":
                st = doc["instance"]
                self.by_id.setdefault(st["id"], []).append((t, st))
                self.latest[st["id"]] = st
            self.count += 1
            self.cond.notify_all()

    def mark(self, iid):
        """How many events of iid were received so far: pass it to first() as `since`."""
        with self.cond:
            return len(self.by_id.get(iid, []))

    def first(self, iid, since, pred):
        """(t, status) of the first event of iid at index >= since matching pred, or None."""
        for t, st in self.by_id.get(iid, [])[since:]:
            if pred(st):
                return t, st
        return None

    def wait(self, pred, timeout, what="event"):
        deadline = time.time() + timeout
        with self.cond:
            while True:
                r = pred(self)
                if r:
                    return r
                if self.closed:
                    raise RuntimeError(f"event stream closed while waiting for {what}")
                left = deadline - time.time()
                if left <= 0:
                    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
                self.cond.wait(min(left, 1.0))

    def close(self):
        try:
            self.raw.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.conn.close()


def metrics(sock, timeout=30):
    """GET /metrics (Prometheus text): {(name, ((label, value), ...sorted)): value}."""
    conn = UnixHTTPConnection(sock, timeout)
    try:
        conn.request("GET", "/metrics")
        r = conn.getresponse()
        text = r.read().decode()
        if r.status != 200:
            raise RuntimeError(f"/metrics answered {r.status}")
    finally:
        conn.close()
    out = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m:
            labels = tuple(sorted((k, v.replace('\\"', '"').replace("\\\\", "\\"))
                                  for k, v in _LABEL.findall(m.group(3) or "")))
            out[(m.group(1), labels)] = float(m.group(4))
    return out


def metric(samples, name, **labels):
    """The sum of name's series whose labels include every given one (0 when none)."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def proc_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0]) * 1024
    return out


class ProcSampler:
    """VmRSS and CPU seconds of pid every `interval` s on its own thread, so a peak or a CPU
    cost can be split by phase (VmHWM only gives the peak since its last reset): samples are
    (time, rss bytes, cpu seconds); peak(t0, t1) and cpu(t0, t1) over receipt times."""

    def __init__(self, pid, interval=0.05):
        self.pid, self.interval = pid, interval
        self.samples = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopping.wait(self.interval):
            try:
                self.samples.append((time.time(), proc_status(self.pid)["VmRSS"], cpu_seconds(self.pid)))
            except (OSError, KeyError, IndexError):  # the process ended
                return

    def peak(self, t0, t1):
        """The largest RSS sample in [t0, t1], or None when there is none."""
        if t0 is None or t1 is None:
            return None
        vals = [v for t, v, _ in list(self.samples) if t0 <= t <= t1]
        return max(vals) if vals else None

    def cpu(self, t0, t1):
        """CPU seconds between the samples nearest t0 and t1 (None without samples there)."""
        if t0 is None or t1 is None:
            return None
        s = list(self.samples)
        before = lambda x: max((c for t, _, c in s if t <= x), default=None)
        a, b = before(t0), before(t1)
        return (b - a) if (a is not None and b is not None) else None

    def stop(self):
        self.stopping.set()
        self.thread.join()


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def reset_peak_rss(pid):
    """Resets VmHWM (clear_refs 5, Linux >= 4.0); False when not permitted."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def io_read(pid):
    """rchar of /proc/<pid>/io: bytes the process read() from files and pipes (socket
    receives go through recvmsg and are not counted)."""
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    return 0


class Daemon:
    def __init__(self, binary, work, config, name="carsyncd"):
        self.binary, self.work, self.name = binary, work, name
        self.sock = config["control_socket"]
        self.config_path = os.path.join(work, f"{name}.json")
        with open(self.config_path, "w") as f:
            json.dump(config, f, indent=1)
        self.log_path = os.path.join(work, f"{name}.log")
        self.proc = None
        self.events = None

    def start(self, timeout=120):
        log = open(self.log_path, "w")
        self.proc = subprocess.Popen([self.binary, "--config", self.config_path], stdout=log,
                                     stderr=subprocess.STDOUT)
        log.close()
        deadline = time.time() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}); see {self.log_path}")
            try:
                status, body = api(self.sock, "GET", "/v1/health", timeout=5)
                if status == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                raise TimeoutError(f"{self.name} not healthy after {timeout} s; see {self.log_path}")
            time.sleep(0.05)
        self.events = EventStream(self.sock)
        return self

    @property
    def pid(self):
        return self.proc.pid

    def wait_idle(self, ids, timeout=300):
        """Until every instance in ids reports phase idle (the snapshot or a later event)."""
        ids = list(ids)
        self.events.wait(lambda ev: all(ev.latest.get(i, {}).get("phase") == "idle" for i in ids),
                         timeout, "instances idle")

    def stop(self):
        if self.events:
            self.events.close()
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Devnode:
    def __init__(self, binary, work):
        self.binary, self.work = binary, work
        self.cstore_port, self.r1fs_port = free_port(), free_port()
        self.log_path = os.path.join(work, "devnode.log")
        self.proc = None

    def start(self, timeout=60):
        os.makedirs(os.path.join(self.work, "devnode-data"), exist_ok=True)
        log = open(self.log_path, "w")
        self.proc = subprocess.Popen([self.binary, "--data-dir", os.path.join(self.work, "devnode-data"),
                                      "--cstore-port", str(self.cstore_port), "--r1fs-port", str(self.r1fs_port)],
                                     stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.time() + timeout
        for port in (self.cstore_port, self.r1fs_port):
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"devnode exited; see {self.log_path}")
                try:
                    socket.create_connection(("127.0.0.1", port), 1).close()
                    break
                except OSError:
                    if time.time() > deadline:
                        raise TimeoutError("devnode did not listen")
                    time.sleep(0.05)
        return self

    def backend(self):
        return {"kind": "r1", "cstore_url": f"http://127.0.0.1:{self.cstore_port}",
                "r1fs_url": f"http://127.0.0.1:{self.r1fs_port}"}

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
