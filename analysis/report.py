"""The benchmark report: targets, a table, per-class results and plots for one run folder.

A run folder holds either one comparison (baseline_results.json and one
ray_results_<N>workers.json, as written by ./scripts/run-benchmark.sh) or a sweep: one
sub-folder per Ray worker count, each holding such a pair (./scripts/experiments/scaling-benchmark.sh).
Each Ray run is compared with the baseline in its own folder, which used the same global
batch. Writes, into the run folder, REPORT.md, speedup.png, epoch_times.png and
learning_curves_<N>workers.png, and prints whether each target holds.

Run (from the repository root, inside .venv):
    python -m analysis.report --run-dir results/latest

Takes a few seconds. The targets and their thresholds: analysis/targets.py. This module
assembles REPORT.md; run_folder.py reads the run folder, tables.py and plots.py draw the
tables and plots, monitoring_report.py the time series of a monitored run.
"""

import argparse
import json
import os
import sys
import time

from analysis import compare, monitoring_report, plots
from analysis.run_folder import find_pairs, true_test_labels, workers_text
from analysis.tables import (TABLE_FORMATS, epoch_section, format_table, markdown_table, per_class_section,
                             report_runs, results_table)
from analysis.targets import evaluate_targets, format_targets
from harness import calibrate, results, steady_state

REPORT_FILE = "REPORT.md"

BASELINE_CHOICE = (
    "Each Ray configuration with N workers is compared with a plain Keras run at the same "
    "global batch (per-worker batch x N), on the CPUs of one Ray worker: both take the same "
    "optimizer steps over the same examples, so the throughput ratio, the speedups and the "
    "accuracy difference all come from one recipe. A sweep therefore runs one baseline per "
    "worker count, unless SINGLE_BASELINE=1 reuses the first configuration's for all: "
    "throughput per core barely depends on the batch, so the speedups stay honest, but the "
    "accuracy of another global batch is not comparable and is then not judged.")


def _machine_section(pairs):
    host, baseline = pairs[0].baseline.get("host") or {}, pairs[0].baseline
    family = f" (family {host['cpu_family']}, model {host.get('cpu_model_number')})" if host.get("cpu_family") else ""
    per_core = baseline["images_per_second"] / baseline["cpus_per_worker"] if baseline.get("images_per_second") else None
    lines = ["## Machine", "",
             f"- CPU: {host.get('cpu_model', 'unknown')}{family}, {host.get('logical_cores', '?')} logical cores"
             + (f"; the baseline trained {per_core:.1f} images/s per core at batch {baseline['global_batch_size']}"
                if per_core else ""),
             f"- Memory: {host.get('memory_gib', '?')} GiB",
             f"- Platform: {host.get('platform', 'unknown')} (host {host.get('hostname', '?')})"]
    for pair in pairs:
        cluster = pair.ray.get("cluster") or {}
        nodes = cluster.get("nodes") or []
        with_cpus = [node for node in nodes if node.get("cpus")]
        workers = pair.ray.get("workers", [])
        hosts = sorted({worker.get("hostname", "?") for worker in workers})
        lines.append(f"- Ray cluster for {workers_text(pair.num_workers)}: {len(nodes)} nodes, {len(with_cpus)} of "
                     f"them with CPUs ({cluster.get('total_cpus', '?')} in all); the workers ran on "
                     f"{len({worker.get('node_id') for worker in workers})} node(s) of host(s) {', '.join(hosts) or '?'}; "
                     f"final weights identical on every worker: {pair.ray.get('weights_identical')}")
        cores, asked = host.get("logical_cores"), pair.num_workers * (pair.ray.get("cpus_per_worker") or 1)
        if cores and asked > cores:
            lines.append(f"- **Oversubscribed**: {workers_text(pair.num_workers)} x {pair.ray.get('cpus_per_worker')} "
                         f"CPU(s) asked for {asked} CPUs on {cores} logical cores (ALLOW_OVERSUBSCRIBE=1). The "
                         "workers shared cores, so this measures oversubscription, not data parallelism.")
    return lines


def _versions_section(pairs):
    import matplotlib
    import pandas
    import sklearn

    names = {"python": "Python", "tensorflow": "TensorFlow", "keras": "tf-keras", "ray": "Ray", "numpy": "NumPy"}
    versions = {}
    for record in [pairs[0].baseline] + [pair.ray for pair in pairs]:
        for key, value in (record.get("versions") or {}).items():
            if value is not None:
                versions.setdefault(key, set()).add(str(value))
    ordered = [key for key in names if key in versions] + sorted(set(versions) - set(names))
    listed = [f"{names.get(key, key)} {' / '.join(sorted(versions[key]))}" for key in ordered]
    listed += [f"pandas {pandas.__version__}", f"matplotlib {matplotlib.__version__}",
               f"scikit-learn {sklearn.__version__} (report)"]
    return ["## Versions", "", ", ".join(listed)]


def _settings_section(pairs):
    first = pairs[0].ray
    lines = ["## Settings", "",
             f"- Data: {first['dataset']}, {first['train_size']} training / {first['test_size']} test images, "
             f"seed {first.get('seed')}",
             f"- Epochs: {first.get('epochs_requested', first['epochs_completed'])}; batch "
             f"{first['batch_size_per_worker']} per worker; {first['cpus_per_worker']} CPU(s) per Ray worker and "
             f"for the baseline; learning rate {first.get('learning_rate')}",
             "- Configurations: " + "; ".join(
                 f"{pair.ray_label} against {pair.baseline_label}" for pair in pairs)]
    calibration = read_calibration(pairs[0].folder)
    if calibration:
        lines.append(f"- Training-set size chosen by calibration (`harness/calibrate.py`): the baseline's step ran "
                     f"{calibration['images_per_second']:.1f} images/s on {calibration['cpus']} CPU(s), so "
                     f"{calibration['train_size']} images for about {calibration['expected_baseline_training_seconds']:.0f} s "
                     f"of baseline training (the aim: {calibration['target_seconds']:.0f} s)")
    lines += ["", "Commands run:", "", "```"]
    for pair in pairs:
        lines += [pair.baseline.get("command", "?")]
        lines += [pair.tensorflow_alone.get("command", "?")] if pair.tensorflow_alone else []
        lines += [pair.ray.get("command", "?")]
    lines += ["```", "", "### How the baselines were chosen", "", BASELINE_CHOICE]
    return lines


def read_calibration(folder):
    """calibration.json of a run folder whose training-set size was calibrated, else None."""
    path = os.path.join(folder, calibrate.CALIBRATION_FILE)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as source:
        return json.load(source)


def _definitions():
    return [
        "- Images/s: steady-state training throughput, over the epochs that the "
        f"{steady_state.SETTLED_WITHIN:.0%} rule counts (Per-epoch speed, below); empty when a run did not settle.",
        "- Speedup (images/s): Ray images/s / baseline images/s; Efficiency: that speedup / workers.",
        "- Speedup (train time): baseline training time / Ray training time (training steps only); "
        "end to end: the same with the total times, start-up and evaluation included.",
        "- Each Ray row is compared with the plain Keras row above it (same global batch). A speedup "
        "below 1.00x means Ray was slower.",
    ]


def build_report(run_dir, pairs, targets, per_class, monitoring=()):
    name = os.path.basename(os.path.normpath(os.path.realpath(run_dir)))
    lines = [f"# Benchmark report: {name}", "",
             "Plain Keras baseline against Ray Train data-parallel training (MultiWorkerMirroredStrategy), "
             f"measured side by side in this run. Written {time.strftime('%Y-%m-%d %H:%M:%S %Z')} by "
             f"`.venv/bin/python -m analysis.report --run-dir {_shown_path(run_dir)}`.", "",
             "## Targets", "",
             markdown_table(_targets_frame(targets)), ""]
    lines += _machine_section(pairs) + [""] + _versions_section(pairs) + [""] + _settings_section(pairs)
    lines += ["", "## Results", "", markdown_table(results_table(pairs), TABLE_FORMATS), ""]
    lines += _definitions()
    for pair in pairs:
        for warning in pair.comparison["warnings"]:
            lines.append(f"- **Warning ({pair.ray_label})**: {warning}")
    lines += ["", f"![Speedup against workers]({plots.SPEEDUP_PLOT})", ""] + epoch_section(pairs)
    lines += [f"![Time per epoch per configuration, the counted epochs solid]({plots.EPOCH_TIMES_PLOT})", ""]
    lines += _breakdown_section(pairs) + [""] + _tensorflow_alone_section(pairs) + _break_even_section(pairs)
    lines += ["## Learning curves", ""]
    for pair in pairs:
        lines += [f"![Accuracy and loss per epoch, {pair.ray_label}]({plots.learning_curves_file(pair)})", ""]
    lines += list(monitoring)  # the time series of a MONITORING=1 run (monitoring_report.py)
    lines += ["## Per-class results", ""]
    lines += per_class
    return "\n".join(lines).rstrip() + "\n"


def _shown_path(path):
    """A path as a user would type it from the repository root (relative when inside it)."""
    real, root = os.path.realpath(path), os.path.realpath(results.REPO_ROOT)
    return os.path.relpath(real, root) if real.startswith(root + os.sep) else path


def _breakdown_section(pairs):
    """Where each training step's time went, per configuration (step_timing.py)."""
    lines = ["## Where each step's time goes", "",
             "Milliseconds per training step, the epochs after the first, averaged over every step of every "
             "worker: input (waiting for the batch, and Keras' dispatch), compute (forward and backward "
             "pass), the gradient all-reduce (wall time, and in brackets the CPU time the process spent "
             "in it: the rest of the wall time it waited for the other workers), the optimizer, and "
             "other (metrics, Keras' bookkeeping). The parts add up to the measured step; unaccounted "
             "is the share of the step the four timed parts leave out.", "",
             "| Configuration | Global batch | Input | Compute | All-reduce (CPU) | Optimizer | Other | "
             "Step | Unaccounted |", "|:---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for label, record in report_runs(pairs):
        breakdown = record.get("step_breakdown")
        if not breakdown:
            lines.append(f"| {label} | {record['global_batch_size']} | – | – | – | – | – | – | not recorded |")
            continue
        per_step = breakdown["seconds_per_step"]

        def ms(part):
            return f"{per_step[part] * 1000:.0f}"

        lines.append(f"| {label} | {record['global_batch_size']} | {ms('input')} | {ms('compute')} | "
                     f"{ms('allreduce')} ({ms('allreduce_cpu')}) | {ms('optimizer')} | {ms('other')} | "
                     f"{ms('step')} | {breakdown['unaccounted_share']:.1%} |")
    return lines


def _tensorflow_alone_section(pairs):
    """What Ray costs, and buys, on top of TensorFlow: the control run without Ray."""
    pairs = [pair for pair in pairs if pair.tensorflow_alone is not None]
    if not pairs:
        return []
    lines = ["## What Ray costs on top of TensorFlow", "",
             "The same training as N plain processes with `TF_CONFIG` written by hand and no Ray "
             "(`harness/tensorflow_alone.py`; `TENSORFLOW_ALONE=0` skips it). Ray adds placing the "
             "workers on nodes, restarting them after a failure and one command for any number of "
             "machines; this splits the gap from N times the baseline:", ""]
    for pair in pairs:
        alone = pair.tensorflow_alone
        lines.append(f"- {pair.ray_label}: {compare.gap_sentence(pair.comparison)}. Start-up to the first "
                     f"batch {pair.ray['startup_seconds']:.1f} s with Ray, {alone['startup_seconds']:.1f} s "
                     f"without; end to end {compare.faster_or_slower(pair.comparison['speedup_end_to_end'])} "
                     f"with Ray, {compare.faster_or_slower(pair.comparison['tensorflow_alone_speedup_end_to_end'])} "
                     "without, against the baseline.")
    return lines + [""]


def _break_even_section(pairs):
    lines = ["## When Ray pays off", "",
             "The Ray run costs more before and after its training (start-up, validation, evaluation, "
             "teardown: the fixed overhead) and trains faster once it runs. From the two measured in "
             "this run, end-to-end time against training length (assuming more data per epoch at the "
             "measured rates, with the same start-up, validation and evaluation):", ""]
    for pair in pairs:
        overhead = pair.comparison["fixed_overhead_seconds"]
        if None in overhead.values():
            lines.append(f"- {pair.ray_label}: {compare.break_even_sentence(pair.comparison)}.")
            continue
        lines.append(f"- {pair.ray_label}: fixed overhead {overhead['ray']:.0f} s against "
                     f"{overhead['baseline']:.0f} s; {compare.break_even_sentence(pair.comparison)}.")
    return lines + ["", f"![End-to-end time against training length]({plots.BREAK_EVEN_PLOT})", ""]


def _targets_frame(targets):
    import pandas as pd

    rows = [{"Target": target["target"],
             "Measured": " ".join([target["measured"]] + [f"**Too short**: {warning}" for warning in target["warnings"]]),
             "Result": target["result"]} for target in targets]
    return pd.DataFrame(rows).set_index("Target")


def write_report(run_dir, data_dir=None):
    """Write REPORT.md and the plots into run_dir. Returns (report path, pairs, targets)."""
    pairs = find_pairs(run_dir)
    targets = evaluate_targets(pairs)
    per_class = []
    for pair in pairs:
        for label, record in ((pair.baseline_label, pair.baseline), (pair.ray_label, pair.ray)):
            try:
                labels = true_test_labels(record, data_dir)
            except ValueError as error:  # DatasetError included: the report is still useful
                per_class += [f"### {label}", "", f"Not available: {error}", ""]
                continue
            per_class.append(per_class_section(label, record, labels))
    plots.write_plots(pairs, run_dir)
    path = os.path.join(run_dir, REPORT_FILE)
    text = build_report(run_dir, pairs, targets, per_class, monitoring_report.report_section(run_dir))
    temporary = path + ".tmp"
    with open(temporary, "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(temporary, path)
    return path, pairs, targets


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", required=True,
                        help="a run folder: results/<run> or results/latest")
    parser.add_argument("--data-dir", default=None,
                        help="CIFAR-10 cache, to rebuild the test labels of cifar10 runs (default .data/)")
    args = parser.parse_args(argv)
    try:
        path, pairs, targets = write_report(args.run_dir, args.data_dir)
    except ValueError as error:
        print(f"report: error: {error}", file=sys.stderr)
        return 2
    print(format_table(pairs))
    print(format_targets(targets))
    print(f"Report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
