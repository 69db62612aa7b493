"""The series of a monitored run, from Prometheus, and the numbers REPORT.md gives under its plots.

`collect` asks a Prometheus (analysis/prometheus.py) for each worker's live metrics
(harness/live_metrics.py exports them) and for the cores each kind of process used: Ray's
`ray_component_cpu_percentage`, by its `Component` label, grouped into the Ray Train workers,
Ray's own processes, the driver and Prometheus itself. monitoring_report.py plots them.
"""

from analysis.prometheus import query_range

# Ray reports the dashboard agent twice: as "agent" and as the process "ray::DashboardAgent".
DUPLICATE_COMPONENTS = {"ray::DashboardAgent"}
# Ray's own processes, by the Component label of ray_component_cpu_percentage; the Ray Train
# workers and the driver are counted apart. Order: the stacking order of the plot.
RAY_OWN_GROUPS = ("raylets", "GCS", "dashboard", "agents", "Ray Train's controller and helper actors")
PROMETHEUS_GROUP = "Prometheus (the monitoring)"
# How long a node metric's last sample stands for it (see collect).
HOLD = "10s"


def component_group(component):
    """The group of a ray_component_cpu_percentage Component label (None: left out)."""
    if component in DUPLICATE_COMPONENTS:
        return None
    if component.startswith("ray::RayTrainWorker"):
        return "worker"
    if component == "raylet":
        return "raylets"
    if component == "gcs":
        return "GCS"
    if component.startswith("dashboard"):
        return "dashboard"
    if component in ("agent", "ray::RuntimeEnvAgent"):
        return "agents"
    if component.startswith("ray::"):
        return "Ray Train's controller and helper actors"
    return "driver"


def _on_grid(points, grid):
    """The values of [(time, value)] on the query grid (0 where a series has no point)."""
    values = dict(points)
    return [values.get(moment, 0.0) for moment in grid]


def collect(url, start, end, step):
    """Every series the report draws, from the Prometheus at url, between start and end."""
    grid = [start + step * index for index in range(int((end - start) // step) + 1)]
    series = {"grid": grid}
    # Which metrics port (instance) serves which rank's node: the workers' CPU is labelled by it.
    rank_of_instance = {}
    for name in ("images_per_second", "step_seconds", "allreduce_seconds", "allreduce_cpu_seconds"):
        series[name] = {}
        for labels, points in query_range(url, f"ray_demo_train_{name}", start, end, step):
            series[name].setdefault(labels.get("rank", "?"), []).extend(points)
            rank_of_instance[labels.get("instance")] = labels.get("rank", "?")
    cpu = {}
    # Each node's agent samples the processes every 5 s, and a series missing from a scrape in
    # between reads as a gap: the last value of the past 10 s bridges it.
    for labels, points in query_range(url, f"last_over_time(ray_component_cpu_percentage[{HOLD}])", start, end, step):
        group = component_group(labels.get("Component", ""))
        if group is None:
            continue
        if group == "worker":
            group = f"Ray Train worker, rank {rank_of_instance.get(labels.get('instance'), '?')}"
        totals = cpu.setdefault(group, [0.0] * len(grid))
        for index, value in enumerate(_on_grid(points, grid)):
            totals[index] += value / 100  # percent of one core -> cores
    # Prometheus' own CPU (it scrapes itself): the monitoring's cost, beside what it measures.
    for _, points in query_range(url, f'rate(process_cpu_seconds_total{{job="prometheus"}}[{3 * step}s])',
                                 start, end, step):
        cpu[PROMETHEUS_GROUP] = _on_grid(points, grid)
    series["cpu"] = cpu
    machine = query_range(url, f"max(last_over_time(ray_node_cpu_utilization[{HOLD}]) / 100 "
                               f"* last_over_time(ray_node_cpu_count[{HOLD}]))", start, end, step)
    series["machine_busy"] = machine[0][1] if machine else []
    cores = query_range(url, f"max(last_over_time(ray_node_cpu_count[{HOLD}]))", start, end, step)
    series["cores"] = max((value for _, value in cores[0][1]), default=None) if cores else None
    return series


def _mean(values):
    values = list(values)
    return sum(values) / len(values) if values else None


def cpu_shares(series, start, end):
    """Mean cores of each group between start and end (the Ray run), and the cores."""
    indexes = [index for index, moment in enumerate(series["grid"]) if start <= moment <= end]
    return {group: _mean(values[index] for index in indexes) or 0.0 for group, values in series["cpu"].items()}


def summary_lines(series, ray_start):
    """The numbers under the plots: per-worker throughput and all-reduce share, and CPU shares."""
    lines = []
    for rank in sorted(series["images_per_second"]):
        steady = [value for _, value in sorted(series["images_per_second"][rank])[1:]]  # the first holds tracing
        step = _mean(value for _, value in sorted(series["step_seconds"].get(rank, []))[1:])
        allreduce = _mean(value for _, value in sorted(series["allreduce_seconds"].get(rank, []))[1:])
        if steady and step and allreduce is not None:
            lines.append(f"- Rank {rank}: {_mean(steady):.1f} images/s on average after its first update; the "
                         f"all-reduce took {100 * allreduce / step:.0f}% of its step time.")
    worker_times = [moment for points in series["images_per_second"].values() for moment, _ in points]
    if worker_times and series["cpu"]:
        start = ray_start if ray_start is not None else min(worker_times)
        end = max(worker_times)
        shares = cpu_shares(series, start, end)
        cores = series["cores"] or 1
        own = sum(shares.get(group, 0.0) for group in RAY_OWN_GROUPS)
        workers = sum(value for group, value in shares.items() if group.startswith("Ray Train worker"))
        detail = ", ".join(f"{group} {shares[group]:.2f}" for group in RAY_OWN_GROUPS if group in shares)
        lines.append(f"- From Ray Train's start to the workers' last update ({end - start:.0f} s): the workers "
                     f"used {workers:.2f} cores, Ray's own processes {own:.2f} cores ({100 * own / cores:.0f}% of "
                     f"the machine's {cores:g}): {detail}.")
        if PROMETHEUS_GROUP in shares:
            lines.append(f"- Prometheus itself (the monitoring) used {shares[PROMETHEUS_GROUP]:.3f} cores "
                         f"({100 * shares[PROMETHEUS_GROUP] / cores:.1f}% of the machine) meanwhile.")
    return lines

