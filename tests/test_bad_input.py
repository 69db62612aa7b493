"""The bad-input catalogue: every setting that `./scripts/run-benchmark.sh --help` lists, tried
with an empty, a negative, a non-numeric, a huge and an unknown value (those that apply to its
kind). Each must be refused in seconds with one line that names the setting and says what to
do, exit non-zero, and leave the earlier results as they were. The settings are read from
--help, so a new setting without a row here fails the test."""

import concurrent.futures
import os
import re

import pytest

from conftest import REPO_ROOT, run

SCRIPT = str(REPO_ROOT / "scripts" / "run-benchmark.sh")
# Its own ports, so that a value that slipped through could not reach another test's cluster.
SAFE = {"RAY_PORT": "6392", "DASHBOARD_PORT": "8272", "TARGET": "local"}
HUGE = "99999999999999999999"

# The kind of every setting, and the bad values each kind is tried with.
KINDS = {
    "count": ["", "-3", "many", HUGE, "1.5"],
    "count0": ["", "-3", "many", HUGE, "1.5"],
    "number": ["", "-3", "fast", HUGE, "nan"],
    "port": ["", "-3", "http", HUGE, "70000"],
    "choice": ["", "-3", "many", HUGE, "bogus"],
    "folder": ["", "/proc/no-such-folder/x"],
    "file": ["/no/such/baseline_results.json", "/proc"],
    "address": ["-3", "nonsense", "127.0.0.1:" + HUGE, "127.0.0.1:70000"],
    "command": ["", "-3", "no-such-python3.11"],
    "optional-folder": ["/no/such/grafana"],
}
SETTINGS = {
    "PYTHON": "command", "TARGET": "choice", "DATASET": "choice", "TRAIN_SIZE": "count", "TEST_SIZE": "count",
    "EPOCHS": "count", "BATCH_SIZE": "count", "NUM_WORKERS": "count", "CPUS_PER_WORKER": "count",
    "LEARNING_RATE": "number", "LR_SCALING": "choice", "SEED": "count0", "MAX_FAILURES": "count0",
    "DATA_DIR": "folder", "RESULTS_DIR": "folder", "RUN_DIR": "folder-given", "BASELINE_RESULTS": "file",
    "RAY_ADDRESS": "address", "RAY_PORT": "port", "DASHBOARD_PORT": "port", "PIN_CPUS": "choice",
    "ALLOW_OVERSUBSCRIBE": "choice", "DEMO_ALLOCATOR": "choice", "TENSORFLOW_ALONE": "choice", "CHECKPOINT": "choice",
    "CHECKPOINT_DIR": "folder",
    "KEEP_RUNS": "count", "RESUME": "choice", "MONITORING": "choice", "PROMETHEUS_PORT": "port",
    "PROMETHEUS_SCRAPE_SECONDS": "count", "GRAFANA_PORT": "port", "GRAFANA_HOME": "optional-folder",
}
KINDS["folder-given"] = ["/proc/no-such-folder/x"]  # empty RUN_DIR means "a new folder of the script's"


def help_settings():
    text = run([SCRIPT, "--help"]).stdout
    return {match.group(1): match.group(2) for match in re.finditer(r"^\s+([A-Z][A-Z0-9_]*)=(\S*)", text, re.M)}


def cases():
    return [(name, value) for name, kind in SETTINGS.items() for value in KINDS[kind]]


def test_every_setting_of_the_help_is_in_the_catalogue():
    listed = help_settings()
    assert set(listed) == set(SETTINGS), f"add a row: {sorted(set(listed) ^ set(SETTINGS))}"
    # An empty value is tried exactly where the default is not empty.
    for name, default in listed.items():
        assert ("" in KINDS[SETTINGS[name]]) == bool(default), name


def test_every_bad_value_of_every_setting_is_refused_in_seconds_and_touches_no_results(tmp_path):
    results = tmp_path / "results"
    earlier = results / "20260101-000000-local"
    earlier.mkdir(parents=True)
    (earlier / "REPORT.md").write_text("an earlier run\n")
    (results / "latest").symlink_to(earlier.name)
    before = sorted(str(path) for path in results.rglob("*"))

    def attempt(case):
        name, value = case
        env = {**SAFE, "RESULTS_DIR": str(results), name: value}
        finished = run([SCRIPT], env=env, timeout=60)
        return name, value, finished

    with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
        outcomes = list(pool.map(attempt, cases()))
    problems = []
    for name, value, finished in outcomes:
        errors = [line for line in finished.stderr.splitlines() if "ERROR" in line]
        if finished.returncode == 0:
            problems.append(f"{name}={value!r} was accepted")
        elif len(errors) != 1 or name not in errors[0]:
            problems.append(f"{name}={value!r}: expected one ERROR line naming it, got {finished.stderr[-500:]!r}")
    assert not problems, "\n".join(problems)
    assert sorted(str(path) for path in results.rglob("*")) == before
    assert os.readlink(results / "latest") == earlier.name
    print(f"{len(SETTINGS)} settings, {len(outcomes)} bad values")
