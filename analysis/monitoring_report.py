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

Prometheus is asked through analysis/prometheus.py; monitoring_series.py gathers the series
and the numbers under the plots; this module draws the plots and writes the section.
"""

import contextlib
import glob
import json
import os
import time

from analysis import plots
from analysis.monitoring_series import PROMETHEUS_GROUP, RAY_OWN_GROUPS, collect, summary_lines
from analysis.prometheus import MonitoringError, answers, reopened_prometheus

MONITORING_DIR = "monitoring"
STATE_FILE = "monitoring.json"
TRAINING_PLOT = "monitoring_training.png"
CPU_PLOT = "monitoring_cpu.png"


def _state(folder):
    with open(os.path.join(folder, MONITORING_DIR, STATE_FILE), encoding="utf-8") as source:
        return json.load(source)


def monitored_folders(run_dir):
    """The folders of run_dir (itself, or a sweep's sub-folders) that hold a monitored run."""
    candidates = [run_dir] + sorted(glob.glob(os.path.join(run_dir, "*")))
    return [folder for folder in candidates
            if os.path.isfile(os.path.join(folder, MONITORING_DIR, STATE_FILE))]


def _mark_ray_start(axes, ray_start, origin, label=False):
    if ray_start is None:
        return
    axes.axvline(ray_start - origin, color="grey", linestyle=":", linewidth=1)
    if label:
        axes.annotate("Ray Train starts", (ray_start - origin, 1), xycoords=("data", "axes fraction"),
                      xytext=(3, -12), textcoords="offset points", fontsize=7, color="grey")


def plot_training(series, origin, ray_start, path):
    """Images/s per worker, and step time with its all-reduce part, against time."""
    plt = plots.pyplot()
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
    plots.save(plt, figure, path)


def _cpu_order(cpu):
    workers = sorted(group for group in cpu if group.startswith("Ray Train worker"))
    return (workers + [group for group in RAY_OWN_GROUPS if group in cpu]
            + [group for group in ("driver", PROMETHEUS_GROUP) if group in cpu])


def plot_cpu(series, origin, ray_start, path):
    """Cores used by each kind of process, stacked, under the machine's busy cores."""
    plt = plots.pyplot()
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
    plots.save(plt, figure, path)


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
