"""Peak memory of the processes that will share each Kubernetes pod, read from /proc.

Used by scripts/measure-pod-memory.sh, which runs the benchmark on the local multi-node Ray
cluster. Each local Ray node stands for one pod of k8s/ray-cluster.yaml: the head node (GCS,
raylet, dashboard and its agents, plus the baseline and the Ray driver, which run in the head
pod on Kubernetes) and each worker node (raylet, agents and one Ray Train worker).

    python -m tools.pod_memory sample --cluster-dir DIR --phase NAME --out FILE
        samples every process of the cluster in DIR until SIGTERM, then writes FILE (JSON)
    python -m tools.pod_memory report --headroom 25 --out memory.json FILE...
        prints the table of peaks per pod and the pod sizes with that headroom

Linux only (it reads /proc); standard library only.

What is measured, per process: the peak resident set (VmHWM: everything the process had in
RAM at its busiest, shared libraries and shared memory included) and, sampled, the peak of
its private plus shared-memory pages (RssAnon + RssShmem: what the kernel cannot drop under
pressure; file pages such as TensorFlow's libraries can be re-read, shmem is Ray's object
store). A pod's peak is the largest sample of what its cgroup would be charged for: the private and
shared-memory pages of all its processes plus the file pages of its largest process once (all
processes map the same libraries); the report also gives the plain sum of the processes' peak
RSS, an upper bound that counts the libraries once per process.
"""

import argparse
import json
import math
import os
import re
import signal
import sys
import time

MIB = 1024 * 1024
NODE_DIR = re.compile(r"/ray-(head|worker-\d+)/")
# (kind, pattern on "COMM CMDLINE"); the first match names the process. Ray names its worker
# processes after the actor they host; comm keeps 15 characters of it ("ray::RayTrainWo").
KINDS = (
    ("baseline", re.compile(r"training\.baseline_training")),
    ("driver", re.compile(r"training\.ray_training")),
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
# The processes that hold the data set, whose memory a bounded run might not have seen peak.
DATA_KINDS = ("baseline", "training worker")
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


def pod_of(node):
    return "head pod" if node == "head" else "worker pod"


def summarize(phases):
    """Per (pod, process kind): the peaks of the busiest such pod. Per pod: its peaks.

    A worker pod's figures are those of the busiest worker node. Processes of one kind in one
    pod (e.g. several Ray actors) are added up.
    """
    rows, pods, borrowed = {}, {}, set()
    for phase in phases:
        per_node = {}
        for record in list(phase["processes"].values()) + agents_missing_on_workers(phase, borrowed):
            if record["node"] is None:
                continue
            entry = per_node.setdefault(record["node"], {}).setdefault(record["kind"], [0, 0, False])
            entry[0] += record["peak_rss"]
            entry[1] += record["peak_private"]
            # A phase stopped early: was this process still growing in its last tenth?
            lifetime = record["last_seen"] - record["first_seen"]
            entry[2] = entry[2] or (phase.get("bounded", False) and record["kind"] in DATA_KINDS
                                    and record["last_seen"] - record["peak_private_at"] < 0.1 * lifetime)
        for node, kinds in per_node.items():
            for kind, (rss, private, rising) in kinds.items():
                row = rows.setdefault((pod_of(node), kind), {"peak_rss": 0, "peak_private": 0, "rising": False})
                row["peak_rss"] = max(row["peak_rss"], rss)
                row["peak_private"] = max(row["peak_private"], private)
                row["rising"] = row["rising"] or rising
            pod = pods.setdefault(pod_of(node), {"charged": 0, "upper": 0})
            sampled = dict(phase.get("pods", {}).get(node, {}))
            extra = sum(record["peak_private"] for record in agents_missing_on_workers(phase, set())
                        if record["node"] == node)
            by_phase = pod.setdefault("by_phase", {})
            if sampled:
                by_phase[phase["phase"]] = max(by_phase.get(phase["phase"], 0), sampled["charged"] + extra)
            if sampled and sampled["charged"] + extra > pod["charged"]:
                pod.update(charged=sampled["charged"] + extra, private=sampled["private"] + extra,
                           files=sampled["files"], phase=phase["phase"])
            pod["upper"] = max(pod["upper"], sum(value[0] for value in kinds.values()))
    return rows, pods, borrowed


def agents_missing_on_workers(phase, borrowed):
    """The head's dashboard and runtime-env agents, copied to each worker node that has none.

    On one machine the worker nodes' agents clash on the ports the head's agents hold (their
    dashboard_agent.log says 'address already in use') and are not measured; in a pod of its
    own every node runs them. Each kind copied is added to `borrowed`.
    """
    records = list(phase["processes"].values())
    copies = []
    for kind in ("dashboard agent", "runtime env agent"):
        head = [record for record in records if record["node"] == "head" and record["kind"] == kind]
        if not head:
            continue
        for node in {record["node"] for record in records if record["node"] not in (None, "head")}:
            if not any(record["node"] == node and record["kind"] == kind for record in records):
                copies.append(dict(head[0], node=node))
                borrowed.add(kind)
    return copies


def mib(value):
    return value / MIB


def pod_size_mib(peak_bytes, headroom_percent):
    """Peak plus headroom, rounded up to a multiple of 256 MiB (what the YAML asks for)."""
    return int(math.ceil(mib(peak_bytes) * (1 + headroom_percent / 100) / 256) * 256)


def report(args):
    phases = []
    for path in args.files:
        with open(path, encoding="utf-8") as source:
            phase = json.load(source)
        phase["bounded"] = args.bounded
        phase["processes"] = {pid: record for pid, record in phase["processes"].items()
                              if not record["cmdline"].startswith("timeout ")}
        for record in phase["processes"].values():
            # Name what the sampler left generic, by the title kept in its command line.
            if record["kind"] in GENERIC_KINDS and kind_of(record["cmdline"]) not in GENERIC_KINDS:
                record["kind"] = kind_of(record["cmdline"])
        phases.append(phase)
    rows, pods, borrowed = summarize(phases)
    lines = [f"Recipe: {args.recipe}",
             "Peak memory per process kind, MiB (several processes of a kind in one pod are added up):",
             f"  {'pod':<11} {'process':<28} {'peak RSS':>9} {'private+shm':>12}"]
    order = {kind: index for index, (kind, _) in enumerate(KINDS)}
    for (pod, kind), row in sorted(rows.items(), key=lambda item: (item[0][0], order.get(item[0][1], 99))):
        note = "  still rising when stopped" if row["rising"] else ""
        lines.append(f"  {pod:<11} {kind:<28} {mib(row['peak_rss']):9.0f} {mib(row['peak_private']):12.0f}{note}")
    if borrowed:
        lines.append(f"  (worker pod {' and '.join(sorted(borrowed))}: the head's figures. On one machine the worker "
                     "nodes' agents clash on the head's ports ('address already in use' in their dashboard_agent.log) "
                     "and are not measured; in a pod of its own each node runs them.)")
    lines += ["",
              "Pod peak = the largest sample of what the pod's cgroup is charged for: the private and",
              "shared-memory pages of all its processes plus its largest process's file pages (the",
              "libraries, which every process maps from the same files), sampled every "
              f"{args.interval} s.",
              f"Pod size = pod peak + {args.headroom}% headroom, rounded up to 256 MiB. For comparison, "
              "the sum of the processes' peak RSS counts the libraries once per process and adds "
              "peaks that did not coincide: an upper bound."]
    sizes = {}
    for pod in ("head pod", "worker pod"):
        if pod not in pods or not pods[pod]["charged"]:
            continue
        figures = pods[pod]
        sizes[pod] = pod_size_mib(figures["charged"], args.headroom)
        lines.append(f"  {pod:<10}  peak {mib(figures['charged']):5.0f} MiB ({mib(figures['private']):.0f} private+shm "
                     f"+ {mib(figures['files']):.0f} files, {figures['phase']} phase)  ->  size {sizes[pod]} MiB"
                     f"   (sum of peak RSS: {mib(figures['upper']):.0f} MiB)")
    text = "\n".join(lines)
    print(text)
    if args.out:
        summary = {"recipe": args.recipe, "headroom_percent": args.headroom, "bounded": args.bounded,
                   "processes": [{"pod": pod, "kind": kind, "peak_rss_mib": round(mib(row["peak_rss"])),
                                  "peak_private_mib": round(mib(row["peak_private"])), "rising": row["rising"]}
                                 for (pod, kind), row in sorted(rows.items())],
                   "pods": {pod: {"peak_mib": round(mib(figures["charged"])), "phase": figures.get("phase"),
                                  "peak_mib_by_phase": {name: round(mib(value))
                                                        for name, value in figures.get("by_phase", {}).items()},
                                  "sum_of_peak_rss_mib": round(mib(figures["upper"])), "size_mib": sizes.get(pod)}
                            for pod, figures in pods.items()}}
        with open(args.out, "w", encoding="utf-8") as out:
            json.dump(summary, out, indent=2)
            out.write("\n")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    sampler = commands.add_parser("sample", help="sample the cluster's processes until SIGTERM")
    sampler.add_argument("--cluster-dir", required=True)
    sampler.add_argument("--phase", required=True)
    sampler.add_argument("--out", required=True)
    sampler.add_argument("--interval", type=float, default=0.5)
    reporter = commands.add_parser("report", help="print the peaks per pod and the pod sizes")
    reporter.add_argument("files", nargs="+")
    reporter.add_argument("--headroom", type=int, default=25)
    reporter.add_argument("--recipe", default="")
    reporter.add_argument("--bounded", action="store_true", help="the phases were stopped early")
    reporter.add_argument("--interval", type=float, default=0.5, help="the sampling interval used")
    reporter.add_argument("--out")
    args = parser.parse_args(argv)
    if not os.path.isdir("/proc/self"):
        print("pod_memory: error: this needs Linux (/proc); run it on a Linux machine or VM.", file=sys.stderr)
        return 2
    return sample(args) if args.command == "sample" else report(args)


if __name__ == "__main__":
    sys.exit(main())
