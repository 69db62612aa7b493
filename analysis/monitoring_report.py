"""REPORT.md's time series of a monitored run (MONITORING=1), read from Prometheus' HTTP API.

Two plots, drawn with matplotlib so that they need no Grafana:
- monitoring_training.png: each worker's images per second, and its step time with the part
  spent in the gradient all-reduce, against time (harness/live_metrics.py exports them);
- monitoring_cpu.png: the cores each kind of process used against time, stacked: the Ray
  Train workers, then Ray's own processes (raylets, GCS, dashboard, agents, Ray Train's
  controller and helper actors), the driver and Prometheus itself, under the whole machine's
  busy cores. Ray's `ray_component_cpu_percentage` gives CPU per process (its `Component`
  label), sampled by each node's agent every 5 s; `ray_node_cpu_utilization` the machine's;
  Prometheus' own `process_cpu_seconds_total` (it scrapes itself) what the monitoring costs.

Where the data comes from: run-benchmark.sh writes the report before its EXIT trap stops the
run's Prometheus, so the report asks that running server (monitoring/monitoring.json has its
address): nothing is started, and no second process opens the data folder while Prometheus
writes it. When it does not answer (a report written again after the run, or a Prometheus
that died during it), a throwaway Prometheus re-opens the data folder, read for the report
only, on a free port. A Prometheus that died during the run leaves a note that the series
are incomplete.

Run (from the repository root, inside .venv); report.py calls `report_section`:
    python -m analysis.report --run-dir results/latest
"""

import contextlib
import glob
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

MONITORING_DIR = "monitoring"
STATE_FILE = "monitoring.json"
TRAINING_PLOT = "monitoring_training.png"
CPU_PLOT = "monitoring_cpu.png"
# Ray reports the dashboard agent twice: as "agent" and as the process "ray::DashboardAgent".
DUPLICATE_COMPONENTS = {"ray::DashboardAgent"}
# Ray's own processes, by the Component label of ray_component_cpu_percentage; the Ray Train
# workers and the driver are counted apart. Order: the stacking order of the plot.
PROMETHEUS_GROUP = "Prometheus (the monitoring)"
# How long a node metric's last sample stands for it (see collect).
HOLD = "10s"
RAY_OWN_GROUPS = ("raylets", "GCS", "dashboard", "agents", "Ray Train's controller and helper actors")


class MonitoringError(Exception):
    """Prometheus could not be asked (not running, not installed, or an error answer)."""


# ---------------------------------------------------------------- Prometheus' HTTP API


def answers(url, timeout=3):
    """True when a Prometheus answers a query at url."""
    try:
        query(url, "vector(1)", timeout=timeout)
        return True
    except MonitoringError:
        return False


def _get(url, path, params, timeout):
    address = f"{url}{path}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(address, timeout=timeout) as response:
            body = json.load(response)
    except urllib.error.HTTPError as error:  # Prometheus says why in its JSON body
        try:
            body = json.load(error)
        except ValueError:
            raise MonitoringError(f"{address}: HTTP {error.code}") from error
    except (OSError, ValueError) as error:
        raise MonitoringError(f"{address}: {error}") from error
    if body.get("status") != "success":
        raise MonitoringError(f"{address}: {body.get('errorType')}: {body.get('error')}")
    return body["data"]


def query(url, expression, at=None, timeout=10):
    """An instant query: [(labels, value)]."""
    params = {"query": expression} | ({"time": at} if at is not None else {})
    return [(item["metric"], float(item["value"][1])) for item in _get(url, "/api/v1/query", params, timeout)["result"]]


def query_range(url, expression, start, end, step):
    """A range query: [(labels, [(unix time, value), ...])]."""
    data = _get(url, "/api/v1/query_range", {"query": expression, "start": start, "end": end, "step": step}, 30)
    return [(item["metric"], [(float(moment), float(value)) for moment, value in item["values"]])
            for item in data["result"]]


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def reopened_prometheus(data_dir, timeout=60):
    """A throwaway Prometheus on a free port over a run's data folder; yields its URL.

    It scrapes nothing, and its long retention keeps Prometheus from deleting old runs' data.
    """
    binary = shutil.which("prometheus")
    if binary is None:
        raise MonitoringError("'prometheus' is not installed or not on PATH, so the run's data cannot be "
                              "re-opened (Debian/Ubuntu: 'sudo apt install prometheus'; macOS: "
                              "'brew install prometheus').")
    if not os.path.isdir(data_dir):
        raise MonitoringError(f"{data_dir} holds no Prometheus data.")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="prometheus-reopen-") as scratch:
        config = os.path.join(scratch, "prometheus.yml")
        with open(config, "w", encoding="utf-8") as out:
            out.write("# No scrape targets: this Prometheus only serves stored data.\nglobal: {}\n")
        with open(os.path.join(scratch, "prometheus.log"), "w", encoding="utf-8") as log:
            process = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={data_dir}",
                                        "--storage.tsdb.retention.time=100y", f"--web.listen-address=127.0.0.1:{port}"],
                                       stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + timeout
            while not answers(url, timeout=1):
                if process.poll() is not None or time.time() > deadline:
                    with open(os.path.join(scratch, "prometheus.log"), encoding="utf-8") as log:
                        tail = log.read()[-1500:]
                    raise MonitoringError(f"A Prometheus over {data_dir} did not start:\n{tail}")
                time.sleep(0.3)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# ---------------------------------------------------------------- the series


def _state(folder):
    with open(os.path.join(folder, MONITORING_DIR, STATE_FILE), encoding="utf-8") as source:
        return json.load(source)


def monitored_folders(run_dir):
    """The folders of run_dir (itself, or a sweep's sub-folders) that hold a monitored run."""
    candidates = [run_dir] + sorted(glob.glob(os.path.join(run_dir, "*")))
    return [folder for folder in candidates
            if os.path.isfile(os.path.join(folder, MONITORING_DIR, STATE_FILE))]


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


# ---------------------------------------------------------------- plots and text


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and in CI
    import matplotlib.pyplot as plt

    return plt


def _mark_ray_start(axes, ray_start, origin, label=False):
    if ray_start is None:
        return
    axes.axvline(ray_start - origin, color="grey", linestyle=":", linewidth=1)
    if label:
        axes.annotate("Ray Train starts", (ray_start - origin, 1), xycoords=("data", "axes fraction"),
                      xytext=(3, -12), textcoords="offset points", fontsize=7, color="grey")


def plot_training(series, origin, ray_start, path):
    """Images/s per worker, and step time with its all-reduce part, against time."""
    plt = _pyplot()
    figure, (throughput_axes, step_axes) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for index, rank in enumerate(sorted(series["images_per_second"])):
        color = f"C{index}"
        points = sorted(series["images_per_second"][rank])
        throughput_axes.plot([moment - origin for moment, _ in points], [value for _, value in points], "o-",
                             color=color, markersize=3, label=f"rank {rank}")
        for name, style, what in (("step_seconds", "-", "step"), ("allreduce_seconds", "--", "all-reduce (wall)"),
                                  ("allreduce_cpu_seconds", ":", "all-reduce (CPU)")):
            points = sorted(series[name].get(rank, []))
            step_axes.plot([moment - origin for moment, _ in points], [value for _, value in points], style,
                           color=color, label=f"rank {rank}, {what}")
    throughput_axes.set_ylabel("images/s of the worker")
    throughput_axes.set_title("Each worker's throughput (the first step traces the graph)")
    step_axes.set_ylabel("seconds per step (mean over ~1 s)")
    step_axes.set_xlabel("seconds since Prometheus started (dotted line: Ray Train starts)")
    step_axes.set_title("Step time, and the part spent in the gradient all-reduce")
    for axes in (throughput_axes, step_axes):
        _mark_ray_start(axes, ray_start, origin)
        axes.grid(alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize=7, ncol=2)
    _save(plt, figure, path)


def _cpu_order(cpu):
    workers = sorted(group for group in cpu if group.startswith("Ray Train worker"))
    return (workers + [group for group in RAY_OWN_GROUPS if group in cpu]
            + [group for group in ("driver", PROMETHEUS_GROUP) if group in cpu])


def plot_cpu(series, origin, ray_start, path):
    """Cores used by each kind of process, stacked, under the machine's busy cores."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(9, 4.8))
    grid = [moment - origin for moment in series["grid"]]
    order = _cpu_order(series["cpu"])
    labels = [f"{group} (Ray's own)" if group in RAY_OWN_GROUPS else group for group in order]
    if order:
        axes.stackplot(grid, *[series["cpu"][group] for group in order], labels=labels, alpha=0.85)
    busy = series["machine_busy"]
    if busy:
        axes.plot([moment - origin for moment, _ in busy], [value for _, value in busy], "k-", linewidth=1,
                  label="the whole machine (ray_node_cpu_utilization)")
    if series["cores"]:
        axes.axhline(series["cores"], color="grey", linewidth=1)
        axes.set_ylim(0, series["cores"] * 1.35)
    _mark_ray_start(axes, ray_start, origin, label=True)
    axes.set_xlabel("seconds since Prometheus started (before Ray Train: the baseline, outside Ray)")
    axes.set_ylabel("cores")
    axes.set_title("CPU per Ray process (ray_component_cpu_percentage, sampled every 5 s)")
    axes.grid(alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=7, ncol=2, loc="upper left")
    _save(plt, figure, path)


def _save(plt, figure, path):
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


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


# ---------------------------------------------------------------- REPORT.md


def _ray_start(folder):
    for path in glob.glob(os.path.join(folder, "ray_results_*workers.json")):
        with open(path, encoding="utf-8") as source:
            attempts = json.load(source).get("attempts") or []
        if attempts:
            return attempts[0].get("started")
    return None


@contextlib.contextmanager
def _prometheus_for(folder, state):
    """The run's own Prometheus when it answers, else its data re-opened; yields (url, note)."""
    if state.get("stopped") is None and answers(state["prometheus_url"]):
        yield state["prometheus_url"], None
        return
    note = None
    if state.get("stopped") != "clean":
        note = ("**Incomplete**: the run's Prometheus stopped answering before the run ended (see "
                f"`{MONITORING_DIR}/prometheus.log`); the training went on, and the series below end "
                "where Prometheus stopped.")
    with reopened_prometheus(os.path.join(folder, MONITORING_DIR, state.get("data_dir", "prometheus"))) as url:
        yield url, note


def report_section(run_dir):
    """The REPORT.md lines of the monitored runs in run_dir (none when it holds none), with
    their plots written into run_dir."""
    lines = []
    for folder in monitored_folders(run_dir):
        suffix = "" if os.path.samefile(folder, run_dir) else f"_{os.path.basename(folder)}"
        title = "## Live metrics (Prometheus)" + (f": {os.path.basename(folder)}" if suffix else "")
        lines += [title, ""]
        try:
            state = _state(folder)
            with _prometheus_for(folder, state) as (url, note):
                start = state["started_at"]
                end = state.get("stopped_at") or time.time()
                series = collect(url, start, end, state.get("scrape_interval_seconds", 2))
        except (MonitoringError, OSError, ValueError, KeyError) as error:
            lines += [f"Not available: {error}", ""]
            continue
        lines += [note, ""] if note else []
        if not series["images_per_second"]:
            lines += ["Prometheus holds no training metrics (`ray_demo_train_*`) of this run: did the Ray run "
                      "start? The CPU plot still shows Ray's processes.", ""]
        ray_start = _ray_start(folder)
        training_plot, cpu_plot = f"monitoring_training{suffix}.png", f"monitoring_cpu{suffix}.png"
        plot_training(series, start, ray_start, os.path.join(run_dir, training_plot))
        plot_cpu(series, start, ray_start, os.path.join(run_dir, cpu_plot))
        lines += [f"Scraped every {state.get('scrape_interval_seconds', 2)} s by Prometheus from every node of the "
                  f"cluster ({time.strftime('%H:%M:%S', time.localtime(start))} to "
                  f"{time.strftime('%H:%M:%S', time.localtime(end))}); the workers set their gauges about once a "
                  "second (harness/live_metrics.py). Find the moments both workers wait in the all-reduce, and "
                  "Ray's own share of the cores (docs/MONITORING.md).", "",
                  f"![Per-worker images/s and step time against time]({training_plot})", "",
                  f"![CPU per Ray process against time]({cpu_plot})", ""]
        lines += summary_lines(series, ray_start) + [""]
    return lines
