"""The rehearsed pods' cgroup figures, per phase, against their limits (tools/pod_rehearsal.py's
snapshot and report): each pod's memory peak (memory.max_usage_in_bytes: every page its cgroup
is charged for), its OOM kills (the kernel's, from memory.oom_control, and those of Ray's memory
monitor, from the pod's raylet log) and its CPU quota's throttling (cpu.stat)."""

import json
import os
from pathlib import Path

CFS_PERIOD_US = 100000  # the kubelet's CFS period (100 ms)
CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_PARENT = os.environ.get("REHEARSAL_NAME", "ray-demo-rehearsal")  # rehearse-pods.sh's


def ray_memory_kills(directory, name):
    """How many processes Ray's memory monitor has killed in pod NAME (it reads the pod's cgroup
    and kills a worker at 95% of the limit, before the kernel would): its raylet's log says so."""
    logs = Path(directory) / "pods" / name / "tmp" / "ray"
    return sum(path.read_text(errors="replace").count("Selected to kill")
               for path in logs.glob("session_2*/logs/raylet.out"))


def cgroup_figures(name):
    """One pod's memory and CPU cgroup figures, read now."""
    memory = CGROUP_ROOT / "memory" / CGROUP_PARENT / name
    cpu = CGROUP_ROOT / "cpu" / CGROUP_PARENT / name
    oom = dict(line.split() for line in (memory / "memory.oom_control").read_text().splitlines())
    stat = dict(line.split() for line in (cpu / "cpu.stat").read_text().splitlines())
    return {"memory_peak_bytes": int((memory / "memory.max_usage_in_bytes").read_text()),
            "memory_limit_bytes": int((memory / "memory.limit_in_bytes").read_text()),
            "memory_failcnt": int((memory / "memory.failcnt").read_text()),
            "oom_kills": int(oom.get("oom_kill", 0)),
            "cpu_quota_us": int((cpu / "cpu.cfs_quota_us").read_text()),
            "cpu_periods": int(stat["nr_periods"]), "cpu_throttled_periods": int(stat["nr_throttled"]),
            "cpu_throttled_seconds": int(stat["throttled_time"]) / 1e9}


def snapshot(directory, phase):
    """Add this phase's figures of every pod to DIR/cgroups.json; reset the memory peaks."""
    plan = json.loads((Path(directory) / "plan.json").read_text())
    path = Path(directory) / "cgroups.json"
    phases = json.loads(path.read_text()) if path.exists() else []
    phases.append({"phase": phase, "pods": {pod["name"]: {**cgroup_figures(pod["name"]),
                                                          "ray_memory_kills": ray_memory_kills(directory, pod["name"])}
                                            for pod in plan}})
    path.write_text(json.dumps(phases, indent=2) + "\n")
    for pod in plan:
        (CGROUP_ROOT / "memory" / CGROUP_PARENT / pod["name"] / "memory.max_usage_in_bytes").write_text("0")


def summary(directory):
    """Per pod: the peak of each phase, its limit, the OOM kills and the throttling (CPU figures
    are the counters' growth over each phase); plus the findings in words."""
    plan = {pod["name"]: pod for pod in json.loads((Path(directory) / "plan.json").read_text())}
    phases = json.loads((Path(directory) / "cgroups.json").read_text())
    rows, findings, previous = [], [], {}
    for entry in phases:
        for name, figures in entry["pods"].items():
            before = previous.get(name, {"cpu_periods": 0, "cpu_throttled_periods": 0, "cpu_throttled_seconds": 0.0,
                                         "oom_kills": 0, "ray_memory_kills": 0})
            periods = figures["cpu_periods"] - before["cpu_periods"]
            throttled = figures["cpu_throttled_periods"] - before["cpu_throttled_periods"]
            kills = figures["oom_kills"] - before["oom_kills"]
            ray_kills = figures.get("ray_memory_kills", 0) - before.get("ray_memory_kills", 0)
            rows.append({"phase": entry["phase"], "pod": name, "memory_peak_mib": round(figures["memory_peak_bytes"] / 2**20),
                         "memory_limit_mib": round(figures["memory_limit_bytes"] / 2**20),
                         "memory_used_of_limit": round(figures["memory_peak_bytes"] / figures["memory_limit_bytes"], 3),
                         "oom_kills": kills, "ray_memory_kills": ray_kills, "cpu_limit": figures["cpu_quota_us"] / CFS_PERIOD_US,
                         "cpu_periods": periods, "cpu_throttled_periods": throttled,
                         "cpu_throttled_share": round(throttled / periods, 3) if periods else 0.0,
                         "cpu_throttled_seconds": round(figures["cpu_throttled_seconds"] - before["cpu_throttled_seconds"], 2)})
            if kills or ray_kills:
                group = "headGroupSpec" if plan[name]["node_type"] == "head" else "workerGroupSpecs[0] (workers)"
                who = " and ".join(part for part in (
                    f"the kernel killed {kills} of its processes at the limit" if kills else "",
                    f"Ray's memory monitor killed {ray_kills} at 95% of it" if ray_kills else "") if part)
                findings.append(
                    f"Pod {name} was OOM-killed during the {entry['phase']} phase: {who} (its memory limit is "
                    f"{figures['memory_limit_bytes'] / 2**20:.0f} MiB, its peak {figures['memory_peak_bytes'] / 2**20:.0f} MiB). "
                    f"Raise resources.limits.memory (and requests.memory, equal to it) of the {group} container in "
                    f"k8s/ray-cluster.yaml, or train on fewer examples.")
            previous[name] = figures
    return {"pods": list(plan.values()), "rows": rows, "oom_killed": sorted({row["pod"] for row in rows if row["oom_kills"] or row["ray_memory_kills"]}),
            "findings": findings}


def table(result):
    """The rows as a Markdown table."""
    lines = ["| phase | pod | memory peak / limit (MiB) | of limit | OOM kills (kernel, Ray) | CPU limit | periods throttled | throttled |",
             "|---|---|---|---|---|---|---|---|"]
    for row in result["rows"]:
        lines.append(f"| {row['phase']} | {row['pod']} | {row['memory_peak_mib']} / {row['memory_limit_mib']} | "
                     f"{row['memory_used_of_limit']:.2f} | {row['oom_kills']}, {row['ray_memory_kills']} | {row['cpu_limit']:g} | "
                     f"{row['cpu_throttled_periods']} of {row['cpu_periods']} ({row['cpu_throttled_share']:.0%}) | "
                     f"{row['cpu_throttled_seconds']:.1f} s |")
    return "\n".join(lines)
