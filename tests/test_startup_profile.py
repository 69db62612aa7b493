"""tools/startup_profile.py: the CPU each process used between a Ray run's trainer start and its
first batch (docs/PERFORMANCE.md "Start-up" quotes its profiles, docs/results/startup_profile/)."""

import json

from conftest import PYTHON, REPO_ROOT, run
from tools import startup_profile
from tools.startup_profile import TICKS


def entry(time, busy_ticks, idle_ticks, **processes):
    return {"time": time, "machine": (busy_ticks + idle_ticks, idle_ticks),
            "processes": {pid: (ticks, name) for name, (pid, ticks) in processes.items()}}


def test_a_window_counts_each_process_from_its_first_sample_inside_it_to_its_last():
    samples = [
        entry(0.0, 0, 0, controller=(1, 0)),                      # before the window
        entry(1.0, 100, 100, controller=(1, TICKS)),
        entry(2.0, 250, 150, controller=(1, 2 * TICKS), worker=(2, TICKS // 2)),  # the worker starts
        entry(3.0, 400, 200, worker=(2, 3 * TICKS)),             # the controller has exited
        entry(9.0, 900, 900, worker=(2, 9 * TICKS)),              # after the window
    ]
    profile = startup_profile.window_profile(samples, 1.0, 3.0)
    assert profile["seconds"] == 2.0
    assert profile["busy"] == 0.75  # 300 busy ticks of 400
    # The controller: 1 s from the first sample inside to its last; the worker: all 3 s, since it began inside.
    assert profile["by_process"] == {"worker": 3.0, "controller": 1.0} and profile["cpu_seconds"] == 4.0


def test_processes_are_named_as_ray_names_its_actors_or_by_their_module_or_script():
    assert startup_profile.process_name("ray::TrainController.run") == "ray::TrainController"
    assert startup_profile.process_name("/v/bin/python -m lesson.ray_training --epochs 1") == "python -m lesson.ray_training"
    assert startup_profile.process_name("/v/bin/python -u /v/ray/_private/log_monitor.py --x") == "log_monitor.py"
    # The raylet's path holds "python3.11", and its flags name Ray's worker scripts.
    assert startup_profile.process_name("/v/lib/python3.11/site-packages/ray/core/src/ray/raylet/raylet "
                                        "--raylet_socket=/s --python_worker_command=/v/bin/python "
                                        "/v/ray/_private/workers/setup_worker.py") == "raylet"


def test_a_real_command_is_sampled_and_its_cpu_found_in_the_window_of_the_json_it_wrote(tmp_path):
    # The command burns a second of CPU (however long that takes on a busy machine), then writes a
    # Ray results JSON whose window is that time.
    script = ("import json, time\nstart, cpu = time.time(), time.process_time()\n"
              "while time.process_time() - cpu < 1.0: pass\n"
              f"json.dump({{'attempts': [{{'first_batch': time.time()}}], 'trainer_start_to_first_batch_seconds': "
              f"time.time() - start}}, open({str(tmp_path / 'ray_results_2workers.json')!r}, 'w'))\n")
    (tmp_path / "burn_a_second.py").write_text(script)  # a name no other process of the suite has
    out = tmp_path / "profile.json"
    finished = run([PYTHON, "-m", "tools.startup_profile", "--results-dir", str(tmp_path), "--out", str(out), "--",
                    PYTHON, str(tmp_path / "burn_a_second.py")], cwd=REPO_ROOT, timeout=60)
    assert finished.returncode == 0, finished.stderr
    profile = json.loads(out.read_text())
    # Sampled every 0.2 s: up to a sample's interval is lost at each end of the window.
    assert profile["seconds"] >= 0.5 and profile["busy"] > 0
    assert 0.5 <= profile["by_process"]["burn_a_second.py"] <= 1.2  # a Python process: named by its script
    assert "Trainer start to first batch:" in finished.stdout


def test_no_results_json_is_an_error_in_words(tmp_path):
    finished = run([PYTHON, "-m", "tools.startup_profile", "--results-dir", str(tmp_path), "--",
                    PYTHON, "-c", "pass"], cwd=REPO_ROOT, timeout=60)
    assert finished.returncode == 2
    assert "no ray_results_*workers.json in" in finished.stderr


def test_the_training_window_runs_from_the_first_batch_for_the_epochs_training_time(tmp_path):
    (tmp_path / "ray_results_2workers.json").write_text(json.dumps({
        "attempts": [{"first_batch": 1000.0}], "trainer_start_to_first_batch_seconds": 12.5,
        "epoch_times_seconds": [30.0, 20.0, 21.0]}))
    assert startup_profile.ray_window(str(tmp_path)) == (987.5, 1000.0)
    assert startup_profile.ray_window(str(tmp_path), "training") == (1000.0, 1071.0)
