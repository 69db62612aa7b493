"""The report of tools/pod_memory.py: the peaks per pod, and the pod sizes with headroom.

`report` reads the phases pod_memory_sample.py wrote, prints the table of peaks per pod
and process kind and the pod sizes, and writes them as JSON (memory.json, as committed in
docs/results/pod_memory/). Standard library only.
"""

import json
import math

from tools.pod_memory_sample import GENERIC_KINDS, KINDS, kind_of

MIB = 1024 * 1024
# The processes that hold the data set, whose memory a bounded run might not have seen peak.
DATA_KINDS = ("baseline", "training worker")


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

