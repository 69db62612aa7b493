"""The entry points' bad input (refused in seconds, before any training) and their fail-fast
checks on a real local cluster (a 0-CPU head and two 1-CPU worker nodes, each its own `ray
start`); the strategy-overhead measurement; the pieces of the Ray run that need no cluster.
Both trainings end to end are in test_smoke_run.py (one real benchmark per session)."""

import os
import subprocess
import time

import pytest

from harness import results
from conftest import PYTHON, REPO_ROOT, cluster_processes, run


@pytest.mark.parametrize("flags, message", [
    (["--epochs", "0"], "EPOCHS (--epochs) must be a whole number of at least 1, got '0'."),
    (["--epochs", "-3"], "EPOCHS (--epochs) must be a whole number of at least 1, got '-3'."),
    (["--batch-size", "0"], "BATCH_SIZE (--batch-size) must be a whole number of at least 1, got '0'."),
    (["--batch-size", "ten"], "BATCH_SIZE (--batch-size) must be a whole number of at least 1, got 'ten'."),
    (["--cpus-per-worker", "0"], "CPUS_PER_WORKER (--cpus-per-worker) must be a whole number of at least 1, "
                                 "got '0'."),
    (["--dataset", "imagenet"], "DATASET (--dataset) must be one of synthetic, cifar10; got 'imagenet'."),
    (["--full", "--smoke-test"], "--full and --smoke-test contradict each other"),
    (["--train-size", "10", "--batch-size", "64"], "smaller than one global batch"),
    (["--learning-rate", "fast"], "LEARNING_RATE (--learning-rate) must be a number greater than 0, got 'fast'."),
])
def test_baseline_rejects_bad_flags_with_a_clear_message(tmp_path, flags, message):
    started = time.time()
    finished = run([PYTHON, "-m", "lesson.baseline_training", "--results-dir", str(tmp_path), *flags])
    assert finished.returncode == 2
    assert message in finished.stderr
    assert time.time() - started < 60
    assert not (tmp_path / results.BASELINE_FILE).exists()


def test_baseline_refuses_an_unwritable_results_dir_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    finished = run([PYTHON, "-m", "lesson.baseline_training", "--smoke-test",
                    "--results-dir", str(blocker / "results")])
    assert finished.returncode == 2
    assert "Cannot write results to" in finished.stderr and "--results-dir" in finished.stderr
    assert "epoch 1" not in finished.stdout


@pytest.mark.parametrize("flags, message", [
    (["--num-workers", "0"], "NUM_WORKERS (--num-workers) must be a whole number of at least 1, got '0'."),
    (["--num-workers", "-1"], "NUM_WORKERS (--num-workers) must be a whole number of at least 1, got '-1'."),
    (["--cpus-per-worker", "0"], "CPUS_PER_WORKER (--cpus-per-worker) must be a whole number of at least 1, got '0'."),
    (["--dataset", "mnist"], "DATASET (--dataset) must be one of synthetic, cifar10; got 'mnist'."),
    (["--address", "127.0.0.1:1"], "No Ray cluster answers at 127.0.0.1:1"),
    (["--address", "nonsense"], "is not host:port"),
])
def test_ray_training_rejects_bad_flags_and_dead_addresses_within_seconds(tmp_path, flags, message):
    started = time.time()
    finished = run([PYTHON, "-m", "lesson.ray_training", "--smoke-test", "--results-dir", str(tmp_path),
                    *flags], timeout=120)
    assert finished.returncode == 2, finished.stderr[-2000:]
    assert message in finished.stderr
    assert time.time() - started < 30


def test_ray_run_asking_for_more_workers_than_the_cluster_has_fails_fast(local_cluster, tmp_path):
    started = time.time()
    finished = run([PYTHON, "-m", "lesson.ray_training", "--smoke-test", "--num-workers", "3",
                    "--results-dir", str(tmp_path)], env=local_cluster["env"], timeout=120)
    elapsed = time.time() - started
    assert finished.returncode == 2
    assert "cannot place 3 workers x 1 CPU(s)" in finished.stderr
    assert "2 CPUs in all" in finished.stderr and "at most 2 such workers fit" in finished.stderr
    assert elapsed < 30, f"took {elapsed:.0f}s: Ray must not wait for resources that never come"


def test_ray_run_with_two_cpus_per_worker_on_one_cpu_nodes_fails_fast(local_cluster, tmp_path):
    finished = run([PYTHON, "-m", "lesson.ray_training", "--smoke-test", "--num-workers", "1",
                    "--cpus-per-worker", "2", "--results-dir", str(tmp_path)],
                   env=local_cluster["env"], timeout=120)
    assert finished.returncode == 2
    assert "a worker's CPUs must be on one node, so at most 0 such workers fit" in finished.stderr


def test_strategy_overhead_measures_every_mode_in_its_own_process_with_the_allocator_asked():
    finished = run([PYTHON, "-m", "tools.strategy_overhead", "--steps", "2", "--warmup-steps", "1",
                    "--batch-size", "8", "--allocator", "system"], timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    rows = {tuple(line.split()[:2]): line.split()[2:] for line in finished.stdout.splitlines()[1:]}
    assert set(rows) == {("plain", "system"), ("mirrored", "system"), ("multiworker", "system")}
    for images_per_second, images_per_cpu_second, extra, faults in rows.values():
        assert float(images_per_second) > 0 and float(images_per_cpu_second) > 0 and float(faults) > 0
    assert rows[("plain", "system")][2] == "+0%"


def test_strategy_overhead_compares_each_mode_with_plain_keras_under_the_same_allocator():
    from tools.strategy_overhead import format_table

    def result(mode, allocator, per_cpu_second, faults):
        return {"mode": mode, "allocator": allocator, "images_per_second": per_cpu_second,
                "images_per_cpu_second": per_cpu_second, "page_faults_per_step": faults}

    table = format_table([result("plain", "tuned", 50.0, 80), result("multiworker", "tuned", 40.0, 4500),
                          result("plain", "system", 40.0, 8000), result("multiworker", "system", 40.0, 150000)])
    rows = {tuple(line.split()[:2]): line.split()[2:] for line in table.splitlines()[1:]}
    assert rows[("multiworker", "tuned")][2] == "+25%"  # 50 / 40 - 1, against tuned plain
    assert rows[("multiworker", "system")][2] == "+0%"  # against system plain, not tuned
    assert rows[("multiworker", "system")][3] == "150000"


def test_an_unknown_allocator_setting_is_refused_with_the_choices(tmp_path):
    finished = run([PYTHON, "-m", "lesson.baseline_training", "--smoke-test", "--results-dir", str(tmp_path)],
                   env={"DEMO_ALLOCATOR": "jemalloc"}, timeout=120)
    assert finished.returncode == 2
    assert "DEMO_ALLOCATOR must be one of tuned, system; got 'jemalloc'" in finished.stderr
    assert not any(tmp_path.iterdir())


def test_the_test_shares_of_the_workers_are_put_back_in_the_order_of_the_test_set():
    from harness.results import merge_test_shares

    # 5 test examples over 2 workers: worker 0 had examples 0, 2, 4 and worker 1 had 1, 3.
    workers = [
        {"rank": 1, "test_share": {"count": 2, "loss_sum": 1.0, "correct": 1, "predictions": [11, 13]}},
        {"rank": 0, "test_share": {"count": 3, "loss_sum": 2.0, "correct": 3, "predictions": [10, 12, 14]}},
    ]
    loss, accuracy, predictions = merge_test_shares(workers, 5)
    assert predictions == [10, 11, 12, 13, 14]
    assert loss == pytest.approx(3.0 / 5) and accuracy == pytest.approx(4 / 5)
    with pytest.raises(RuntimeError, match="evaluated 5 test examples, not 6"):
        merge_test_shares(workers, 6)


def test_a_sigint_is_noted_even_when_a_handler_installed_later_swallows_it():
    import os
    import signal

    from harness.interrupts import noting_sigint

    handled = []
    original = signal.signal
    # SIGINT's handler before: Python's default_int_handler, or SIG_IGN when the suite was
    # started as a background job; either way it must be put back.
    before = signal.getsignal(signal.SIGINT)
    with noting_sigint() as interrupted:
        # What Ray Train V2's fit() does: install its own handler, which here swallows it.
        signal.signal(signal.SIGINT, lambda signum, frame: handled.append(signum))
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.2)
    assert handled == [signal.SIGINT] and interrupted.is_set()
    assert signal.getsignal(signal.SIGINT) is before
    assert signal.signal is original, "signal.signal must be put back"


def test_cluster_status_without_a_cluster_address_refuses_instead_of_starting_a_ray_of_its_own():
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    finished = subprocess.run([PYTHON, "-m", "tools.cluster_status"], cwd=REPO_ROOT, env=env, capture_output=True,
                              text=True, timeout=60)
    assert finished.returncode == 2 and "RAY_ADDRESS is not set. Run ./scripts/local-cluster.sh status" in finished.stderr
    assert "Started a local Ray instance" not in finished.stdout + finished.stderr


def test_status_names_each_node_with_its_cpus_and_counts_the_machine_memory_once(local_cluster):
    """`local-cluster.sh status` (tools/cluster_status.py): the head and each worker node by
    name, not anonymous IDs; the memory is the machine's, not the sum over nodes."""
    finished = run([local_cluster["script"], "status"], env=local_cluster["settings"], timeout=120)
    assert finished.returncode == 0, finished.stderr[-2000:]
    lines = finished.stdout.splitlines()
    assert lines[0] == "3 node(s) alive:"
    assert lines[1].split()[0] == "head" and "no CPUs for training" in lines[1]
    for number in (1, 2):
        assert lines[1 + number].split()[:5] == ["worker", str(number), "1", "CPU", "for"], lines
    assert "CPUs in use by Ray tasks: " in finished.stdout and " of 2" in finished.stdout
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    assert f"Memory: this machine has {memory:.1f} GiB, shared by every node" in finished.stdout


def test_every_node_s_log_monitor_looks_for_new_log_files_about_twice_a_second(local_cluster):
    """local-cluster.sh starts each node's log monitor with RAY_LOG_MONITOR_MANY_FILES_THRESHOLD=0:
    it globs for new log files once half a second has passed, not on every pass of its loop,
    ten times a second (half its CPU, docs/results/log_monitor/)."""
    monitors = []
    for line in cluster_processes(local_cluster["cluster_dir"]):
        if "log_monitor.py" in line:
            with open(f"/proc/{line.split()[0]}/environ", "rb") as source:
                monitors.append(source.read().split(b"\0"))
    assert len(monitors) == 3  # the head and two worker nodes
    assert all(b"RAY_LOG_MONITOR_MANY_FILES_THRESHOLD=0" in environ for environ in monitors)
