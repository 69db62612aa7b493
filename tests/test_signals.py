"""Nothing left behind, on any signal, at any moment: SIGTERM and SIGHUP, each sent to the
script alone (as `kill`, `timeout`'s first signal or a closed terminal would) at a phase of a
real run: the cluster's start, the baseline, the training, the report (SIGINT at Ray's
start-up is tests/test_scaling_benchmark.py's). Between them the four scripts that start a
cluster, the three signals and the five phases are each covered. After each: the script exits at once with 128 + the signal's number, no
process of its cluster is left, its run folder's FAILED names the signal, `latest` does not
move, and the next case starts a cluster on the same ports and folder cleanly, saying that it
found the folder of a cluster whose processes are gone."""

import os
import signal
import subprocess
import threading
import time

import pytest

from conftest import REPO_ROOT, cluster_processes

PORTS = {"RAY_PORT": "6391", "DASHBOARD_PORT": "8271", "CLUSTER_DIR": "/tmp/ray-demo-6391"}
TINY = {"TRAIN_SIZE": "256", "TEST_SIZE": "128", "BATCH_SIZE": "32", "EPOCHS": "2"}
SCRIPTS = REPO_ROOT / "scripts"

# (script, its arguments, extra settings, the line that starts the phase, phase, signal).
# With tests/test_scaling_benchmark.py's Ctrl-C while a sweep's Ray run starts up (SIGINT,
# Ray start-up), the four scripts, the three signals and the five phases are each covered.
CASES = [
    ("experiments/scaling-benchmark.sh", ["--smoke-test"], {"WORKER_COUNTS": "2"}, "1/3 Baseline", "baseline",
     signal.SIGTERM),
    # The committed baseline stands in for one (never read before the signal): the Ray workers' own
    # epoch line is the marker, after the first of two epochs.
    ("run-benchmark.sh", ["--smoke-test"], {"BASELINE_RESULTS": str(REPO_ROOT / "docs" / "results" / "quickstart" /
                                                                    "baseline_results.json"), "EPOCHS": "2"},
     "ray worker 0/2 epoch 1:", "training", signal.SIGTERM),
    ("experiments/levers-benchmark.sh", ["--smoke-test"], {"ROWS": "baseline"}, "The levers table", "report",
     signal.SIGHUP),
    ("experiments/chaos.sh", [], {**TINY, "WAIT_TIMEOUT": "300"}, "Starting head node", "cluster start",
     signal.SIGHUP),
]


def run_until(command, env, marker, signum, results):
    """Start the script, send `signum` to it alone when `marker` is printed; returns
    (exit status, seconds from the signal to the exit, output)."""
    merged = dict(os.environ, **env, RESULTS_DIR=str(results), TARGET="local")
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=merged, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    output, sent = [], []
    killer = threading.Timer(600, process.kill)
    killer.start()
    try:
        for line in process.stdout:
            output.append(line)
            if not sent and marker in line:
                process.send_signal(signum)
                sent.append(time.time())
        status = process.wait(timeout=120)
    finally:
        killer.cancel()
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert sent, f"the phase never came ({marker!r}):\n" + "".join(output[-40:])
    return status, time.time() - sent[0], "".join(output)


@pytest.mark.xdist_group("signals")
@pytest.mark.parametrize("script, arguments, settings, marker, phase, signum", CASES,
                         ids=[f"{case[0].split('/')[-1]}-{case[5].name}-{case[4].replace(' ', '-')}" for case in CASES])
def test_a_signal_at_any_phase_stops_every_process_and_keeps_the_run_folder_truthful(
        tmp_path, script, arguments, settings, marker, phase, signum):
    results = tmp_path / "results"
    # An earlier run that completed: `latest` must still point at it afterwards.
    (results / "20260101-000000-local").mkdir(parents=True)
    (results / "latest").symlink_to("20260101-000000-local")
    # The folder the case before left (its processes gone) is taken for gone, and said so.
    left_before = os.path.isdir(os.path.join(PORTS["CLUSTER_DIR"], "ray-head"))
    status, seconds, output = run_until([str(SCRIPTS / script), *arguments], {**PORTS, **settings}, marker, signum,
                                        results)
    assert status == 128 + signum, output[-3000:]
    if left_before:
        assert "is left from an earlier cluster whose processes are all gone: starting afresh in it." in output
    # Exited at once: a TERM or HUP no longer waits for the training (or the child) to finish.
    assert seconds < 60, f"{seconds:.0f}s from the signal to the exit"
    left = cluster_processes(PORTS["CLUSTER_DIR"])
    assert not left, f"{phase}: left behind:\n" + "\n".join(left)
    if script != "experiments/chaos.sh":  # the chaos demo keeps no run folder
        failed = list(results.glob("*/FAILED"))
        assert len(failed) == 1, sorted(str(path) for path in results.rglob("*"))
        assert failed[0].read_text().strip() == f"Interrupted by {signum.name} (exit status {128 + signum}).", phase
    assert os.readlink(results / "latest") == "20260101-000000-local"
