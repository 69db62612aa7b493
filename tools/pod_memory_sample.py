"""The sampler of tools/pod_memory.py: every process of a local Ray cluster, read from /proc.

`sample` runs until SIGTERM, naming each process of the cluster (its kind, by its command
line) and placing it in the pod its Ray node stands for; then it writes the peaks it saw as
JSON, for pod_memory_report.py. Linux only; standard library only.
"""

import json
import os
import re
import signal
import time

NODE_DIR = re.compile(r"/ray-(head|worker-\d+)/")
# (kind, pattern on "COMM CMDLINE"); the first match names the process. The entry points by
# their module ("training." was their package before issue 18, as in the committed samples of
# docs/results/pod_memory/). Ray names its worker processes after the actor they host; comm
# keeps 15 characters of it ("ray::RayTrainWo").
KINDS = (
    ("baseline", re.compile(r"(?:lesson|training)\.baseline_training")),
    ("driver", re.compile(r"(?:lesson|training)\.ray_training")),
    ("gcs_server", re.compile(r"^\S+ \S*/gcs_server ")),
    ("raylet", re.compile(r"^\S+ \S*/raylet ")),
    ("dashboard", re.compile(r"dashboard/dashboard\.py|ray-dashboard-")),
    ("dashboard agent", re.compile(r"dashboard/agent\.py|^ray::DashboardA")),
    ("runtime env agent", re.compile(r"runtime_env/agent/main\.py|^ray::RuntimeEnv")),
    ("log monitor", re.compile(r"log_monitor\.py")),
    ("autoscaler monitor", re.compile(r"autoscaler/_private/monitor\.py")),
    ("ray client server", re.compile(r"ray\.util\.client\.server")),
    ("training worker", re.compile(r"^ray::RayTrainWo")),
    ("Train controller", re.compile(r"^ray::TrainContr")),
    ("other Ray worker or actor", re.compile(r"^ray::|workers/(setup|default)_worker\.py")),
)
GENERIC_KINDS = ("other", "other Ray worker or actor")
# Started only by `ray start --head`: always in the head pod.
HEAD_ONLY_KINDS = ("gcs_server", "dashboard", "autoscaler monitor", "ray client server")


def read_text(path):
    try:
        with open(path, "rb") as source:
            return source.read()
    except OSError:
        return None


def process_table(marker):
    """{pid: (ppid, "COMM CMDLINE", has_marker)} of every live process."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        stat = read_text(f"/proc/{pid}/stat")
        cmdline = read_text(f"/proc/{pid}/cmdline")
        if stat is None or cmdline is None:
            continue
        ppid = int(stat.rsplit(b")", 1)[1].split()[1])
        comm = (read_text(f"/proc/{pid}/comm") or b"").strip()
        environ = read_text(f"/proc/{pid}/environ") or b""
        text = (comm + b" " + cmdline.replace(b"\0", b" ")).decode(errors="replace").strip()
        table[pid] = (ppid, text, marker in environ.split(b"\0"))
    return table


def memory_of(pid):
    """{field: bytes} of VmHWM, VmRSS, RssAnon, RssFile, RssShmem, or None when the process is gone."""
    status = read_text(f"/proc/{pid}/status")
    if status is None:
        return None
    values = {}
    for line in status.decode(errors="replace").splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem"):
            values[name] = int(rest.split()[0]) * 1024
    return values if "VmHWM" in values else None


def kind_of(text):
    return next((name for name, pattern in KINDS if pattern.search(text)), "other")


def classify(pid, table):
    """(node, kind) of a cluster process: its node from its own or an ancestor's command line.

    Helpers that a process starts (the dashboard's module processes, multiprocessing's
    trackers) count as that process.
    """
    kind, node, current, seen = kind_of(table[pid][1]), None, pid, set()
    while current in table and current not in seen:
        seen.add(current)
        if kind == "other" and current != pid and kind_of(table[current][1]) != "other":
            kind = kind_of(table[current][1])
        match = NODE_DIR.search(table[current][1])
        if match:
            node = match.group(1)
            break
        current = table[current][0]
    if kind in ("baseline", "driver") + HEAD_ONLY_KINDS:
        node = "head"  # the baseline and the driver run in the head pod (kubectl exec or the RayJob)
    return node, kind


def sample(args):
    marker = f"RAY_DEMO_CLUSTER_DIR={args.cluster_dir}".encode()
    stop = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.append(True))
    processes, pods, started = {}, {}, time.time()
    while not stop:
        table = process_table(marker)
        now = time.time() - started
        charged = {}  # node: [private and shared-memory pages of all its processes, largest file pages]
        for pid, (_, cmdline, marked) in table.items():
            # Not the sampler, nor the `timeout` that bounds a phase (it carries the marker too).
            if not marked or pid == os.getpid() or cmdline.startswith("timeout "):
                continue
            memory = memory_of(pid)
            if memory is None:
                continue
            node, kind = classify(pid, table)
            record = processes.setdefault(str(pid), {
                "node": node, "kind": kind, "cmdline": cmdline[:200], "first_seen": now,
                "peak_rss": 0, "peak_private": 0, "peak_private_at": now})
            if kind not in GENERIC_KINDS and record["kind"] != kind:
                record["kind"] = kind  # a Ray worker takes its actor's name once it has one
            record["node"] = record["node"] or node
            record["peak_rss"] = max(record["peak_rss"], memory["VmHWM"])
            private = memory.get("RssAnon", 0) + memory.get("RssShmem", 0)
            if private > record["peak_private"]:
                record["peak_private"], record["peak_private_at"] = private, now
            record["last_private"], record["last_seen"] = private, now
            if record["node"]:
                node = charged.setdefault(record["node"], [0, 0])
                node[0] += private
                node[1] = max(node[1], memory.get("RssFile", 0))
        for node, (private, files) in charged.items():
            if private + files > pods.get(node, {}).get("charged", 0):
                pods[node] = {"charged": private + files, "private": private, "files": files, "at": now}
        time.sleep(args.interval)
    with open(args.out, "w", encoding="utf-8") as out:
        json.dump({"phase": args.phase, "seconds": time.time() - started, "pods": pods,
                   "processes": processes}, out, indent=1)
    return 0
