"""tools/thread_profile.py: each thread's CPU and context switches of the processes it is asked
about, and the machine's most frequent wakers (docs/results/thread_profile/)."""

import subprocess
import time

from conftest import PYTHON, REPO_ROOT, run


def test_a_busy_process_is_found_and_its_thread_measured_beside_the_machines_wakers(tmp_path):
    script = tmp_path / "spin_for_the_profile.py"  # a name no other process of the suite has
    script.write_text("import time\nstart = time.time()\nwhile time.time() - start < 20: pass\n")
    busy = subprocess.Popen([PYTHON, str(script)])
    try:
        finished = run([PYTHON, "-m", "tools.thread_profile", "spin_for_the_profile", "--window", "2", "--wait", "20"],
                       cwd=REPO_ROOT, timeout=60)
    finally:
        busy.kill()
    assert finished.returncode == 0, finished.stderr
    lines = finished.stdout.splitlines()
    header = next(line for line in lines if f"(pid {busy.pid}): " in line)
    assert 0.5 <= float(header.split("): ")[1].split()[0]) <= 2.2  # CPU seconds of a 2-second window
    assert "taken off its core/s" in lines[lines.index(header) + 1]
    assert "Most frequent wakers on the machine:" in lines


def test_no_matching_process_is_an_error_in_words():
    started = time.time()
    finished = run([PYTHON, "-m", "tools.thread_profile", "no-such-process-anywhere", "--wait", "1"],
                   cwd=REPO_ROOT, timeout=60)
    assert finished.returncode == 2 and time.time() - started < 30
    assert "no process whose command line holds 'no-such-process-anywhere' within 1 s" in finished.stderr
