"""harness/tensorflow_alone.py's failure path (its happy path runs in the smoke run:
tests/test_smoke_run.py)."""

from conftest import REPO_ROOT, run


def test_a_tensorflow_alone_worker_that_fails_stops_the_run_with_a_clear_error(tmp_path):
    """harness/tensorflow_alone.py with a training set larger than the synthetic pool: each
    worker fails while loading the data; the launcher names the workers, says that nothing
    restarts them without Ray, writes no results and exits 2."""
    finished = run([str(REPO_ROOT / ".venv" / "bin" / "python"), "-m", "harness.tensorflow_alone", "--smoke-test",
                    "--train-size", "60000", "--results-dir", str(tmp_path)], cwd=REPO_ROOT, timeout=300)
    assert finished.returncode == 2, finished.stderr[-3000:]
    assert "larger than the synthetic train split" in finished.stderr
    assert "tensorflow_alone: error: TensorFlow-alone worker(s) [0, 1] exited with" in finished.stderr
    assert "nothing restarts it without Ray" in finished.stderr
    assert list(tmp_path.iterdir()) == []
