"""tools/pod_memory.py, the sampler and report of scripts/experiments/measure-pod-memory.sh (Linux /proc)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLER = ["-m", "tools.pod_memory"]
MEASURED = REPO_ROOT / "docs" / "results" / "pod_memory"

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads Linux /proc")


def test_the_sampler_finds_a_marked_process_names_it_and_puts_it_in_its_pod(tmp_path):
    cluster_dir = str(tmp_path / "cluster")
    env = dict(os.environ, RAY_DEMO_CLUSTER_DIR=cluster_dir)
    # Stands for the baseline: the sampler knows it by its command line and its marker.
    baseline = subprocess.Popen([sys.executable, "-c", "import time; x = bytearray(64 << 20); time.sleep(30)",
                                 "lesson.baseline_training"], env=env)
    unmarked = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "lesson.ray_training"])
    out = tmp_path / "phase.json"
    sampler = subprocess.Popen([sys.executable, *SAMPLER, "sample", "--cluster-dir", cluster_dir,
                                "--phase", "baseline", "--out", str(out), "--interval", "0.1"], cwd=REPO_ROOT)
    try:
        time.sleep(1.5)
        sampler.send_signal(signal.SIGTERM)
        assert sampler.wait(timeout=10) == 0
    finally:
        for process in (baseline, unmarked):
            process.kill()
            process.wait()
    phase = json.loads(out.read_text())
    assert list(phase["processes"]) == [str(baseline.pid)], "only the cluster's processes"
    record = phase["processes"][str(baseline.pid)]
    assert (record["node"], record["kind"]) == ("head", "baseline")
    assert record["peak_private"] >= 64 << 20 and record["peak_rss"] >= record["peak_private"]
    assert phase["pods"]["head"]["charged"] >= record["peak_private"]


@pytest.mark.parametrize("name, bounded", [("default", False), ("cifar10_size", True)])
def test_the_committed_summary_is_what_the_report_makes_of_the_committed_samples(tmp_path, name, bounded):
    committed = json.loads((MEASURED / name / "memory.json").read_text())
    out = tmp_path / "memory.json"
    command = [sys.executable, *SAMPLER, "report", "--recipe", committed["recipe"], "--out", str(out),
               str(MEASURED / name / "baseline.json"), str(MEASURED / name / "ray.json")]
    printed = subprocess.run(command + (["--bounded"] if bounded else []), capture_output=True, text=True,
                             check=True, cwd=REPO_ROOT).stdout
    assert json.loads(out.read_text()) == committed
    assert printed == (MEASURED / name / "output.txt").read_text()
