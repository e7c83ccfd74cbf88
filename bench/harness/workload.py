"""Instance layouts, snapshot contents and requests: what the apps under test would do."""
import json
import os
import random
import shutil
import subprocess

BIND = "/app/data"


class App:
    """One app's system volume and data volume under <root>/<id>/fixed_volumes/mounts."""

    def __init__(self, root, iid, key, role, fmt="tar.gz", sync=None, extra=None):
        self.id, self.key, self.role, self.fmt = iid, key, role, fmt
        self.sync = sync or {}
        self.extra = extra or {}  # instance-level keys beside SYNC: "signing", "trust"
        mounts = os.path.join(root, iid, "fixed_volumes", "mounts")
        self.system = os.path.join(mounts, "r1en_system")
        self.data = os.path.join(mounts, "data")
        self.control = os.path.join(self.system, "volume-sync")
        os.makedirs(self.system, exist_ok=True)
        os.makedirs(self.data, exist_ok=True)

    def instance(self):
        return {"id": self.id, "container": None, "system_volume": self.system,
                "volumes": {self.data: {"bind": BIND, "mode": "rw"}},
                "SYNC": {"ENABLED": True, "KEY": self.key, "TYPE": self.role, "ARCHIVE_FORMAT": self.fmt, **self.sync},
                **self.extra}

    def write_request(self, seq):
        """Writes request.json by rename (what an app does); returns the time just before."""
        tmp = os.path.join(self.control, ".request.json.tmp")
        with open(tmp, "w") as f:
            json.dump({"archive_paths": [BIND + "/"], "metadata": {"seq": seq}}, f)
        import time
        t0 = time.time()
        os.rename(tmp, os.path.join(self.control, "request.json"))
        return t0


def node_config(work, apps, backend=None, name="node"):
    return {"data_dir": os.path.join(work, f"{name}-state"),
            "control_socket": os.path.join(work, f"{name}.sock"),
            "backend": backend or {"kind": "local"},
            "volume_roots": [os.path.join(work, "edge", "*", "fixed_volumes", "mounts")],
            "limits": {"rescan_interval_s": 3600},
            "instances": [a.instance() for a in apps]}


def clear(d):
    for name in os.listdir(d):
        p = os.path.join(d, name)
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p)
        else:
            os.unlink(p)


WORDS = None


def _text(rng, nbytes):
    global WORDS
    if WORDS is None:
        r = random.Random(7)
        WORDS = ["".join(r.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(r.randint(2, 9))) for _ in range(3000)]
    out, n = [], 0
    while n < nbytes:
        line = " ".join(rng.choices(WORDS, k=12)) + "\n"
        out.append(line)
        n += len(line)
    return "".join(out)[:nbytes]


def _log(rng, nbytes, run):
    out, n = [], 0
    levels = ["INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"]
    while n < nbytes:
        line = (f"2026-11-30T12:{rng.randrange(60):02d}:{rng.randrange(60):02d}.{rng.randrange(1000):03d}Z "
                f"{rng.choice(levels):<5} run={run} req={rng.getrandbits(31):08x} status={500 if rng.random() < 0.1 else 200} "
                f"latency_ms={rng.randint(1, 900)} path=/api/v1/item/{rng.randrange(5000)}\n")
        out.append(line)
        n += len(line)
    return "".join(out)[:nbytes]


def fill_mixed(d, nbytes, run):
    """A new snapshot of nbytes: half random (one file), a quarter structured logs (4 files),
    a quarter small text files (4 KiB below 4 MiB, else 16 KiB), as the earlier latency script did."""
    clear(d)
    rng = random.Random(run)
    with open(os.path.join(d, "weights.bin"), "wb") as f:
        f.write(os.urandom(nbytes // 2))
    os.makedirs(os.path.join(d, "logs"))
    os.makedirs(os.path.join(d, "small"))
    # The logs repeat a 1 MiB block with a run-specific header: generating 25 MiB of log
    # lines in Python would cost more than the sync it feeds.
    per_log = nbytes // 16
    block = _log(rng, min(per_log, 1 << 20), run).encode()
    for i in range(4):
        with open(os.path.join(d, "logs", f"service-{i}.log"), "wb") as f:
            left = per_log
            while left > 0:
                f.write(block[:left])
                left -= len(block)
    small = 4096 if nbytes < (4 << 20) else 16384
    text = _text(rng, min(nbytes // 4, 2 << 20)).encode()
    for i in range(max(1, (nbytes // 4) // small)):
        off = (i * 997) % max(1, len(text) - small)
        with open(os.path.join(d, "small", f"note-{i:05d}.txt"), "wb") as f:
            f.write(b"%d %d\n" % (run, i) + text[off:off + small - 16])
    subprocess.run(["sync", "-f", d], check=True)


def fill_random(d, nbytes, run, chunk=64 << 20):
    """An incompressible snapshot of nbytes in files of 256 MiB."""
    clear(d)
    per_file = 256 << 20
    i, left = 0, nbytes
    while left > 0:
        size = min(per_file, left)
        with open(os.path.join(d, f"blob-{run}-{i:02d}.bin"), "wb") as f:
            n = size
            while n > 0:
                f.write(os.urandom(min(chunk, n)))
                n -= min(chunk, n)
        left -= size
        i += 1
    subprocess.run(["sync", "-f", d], check=True)


def tree_bytes(d):
    total = 0
    for root, _, files in os.walk(d):
        for name in files:
            total += os.path.getsize(os.path.join(root, name))
    return total


def fill_delta_volume(d, nbytes, run, files, file_bytes):
    """A mixed snapshot of about nbytes for the delta section: fill_mixed's content for the
    rest and `files` incompressible files of file_bytes each under blobs/, the files that the
    section changes one per version (a model shard replaced). Returns their paths."""
    fill_mixed(d, nbytes - files * file_bytes, run)
    os.makedirs(os.path.join(d, "blobs"))
    paths = []
    for i in range(files):
        p = os.path.join(d, "blobs", f"shard-{i:02d}.bin")
        with open(p, "wb") as f:
            f.write(os.urandom(file_bytes))
        paths.append(p)
    subprocess.run(["sync", "-f", d], check=True)
    return paths


def replace_random(path):
    """Rewrites the file in place with new random bytes of the same size, durably (its
    directory's entry and mtime stay: only the file's own tar header and content change)."""
    n = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.write(os.urandom(n))
        f.truncate()
        f.flush()
        os.fsync(f.fileno())


def write_log(path, nbytes, run, mode="w"):
    """nbytes of structured log lines (_log's), written (mode "w") or appended ("a") in 8 MiB
    pieces: text that compresses as real logs do, with no repetition for chunking to find."""
    rng = random.Random(run)
    piece = 8 << 20
    with open(path, mode + "b") as f:
        left = nbytes
        while left > 0:
            f.write(_log(rng, min(piece, left), run).encode())
            left -= min(piece, left)
        f.flush()
        os.fsync(f.fileno())
