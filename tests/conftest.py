"""Shared fixtures: the repository, a quiet TensorFlow, and a real local Ray cluster."""

import contextlib
import glob
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

# Ports of the test cluster: not the benchmark's defaults (6380, 8265), so a benchmark
# or a cluster of the developer's can run beside the tests.
TEST_RAY_PORT = int(os.environ.get("TEST_RAY_PORT", "6395"))
TEST_DASHBOARD_PORT = int(os.environ.get("TEST_DASHBOARD_PORT", "8275"))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["TF_USE_LEGACY_KERAS"] = "1"


def run(command, env=None, timeout=600, cwd=REPO_ROOT):
    """Run a command, capture its output, return the CompletedProcess."""
    merged = dict(os.environ)
    merged.update(env or {})
    return subprocess.run(command, cwd=cwd, env=merged, capture_output=True, text=True,
                          timeout=timeout)


def free_port():
    """A port of 127.0.0.1 that nothing listens on (the probe that found it is closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def taken_port():
    """A port of 127.0.0.1 that this test listens on while the block runs: a port another
    process holds, as a script sees it."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def interruptible():
    """For Popen(preexec_fn=...): give the child the default SIGINT action, as a terminal does.

    A suite started as a background job (`./scripts/test.sh &`, nohup) inherits SIGINT
    ignored, and a bash script cannot trap a signal ignored on entry, so without this a
    test's Ctrl-C would not reach the script at all and the test would wait in vain.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def cluster_processes(cluster_dir):
    """Live (not zombie) processes started with this cluster's temp dirs.

    -ww: without it ps cuts each line at 80 columns under pytest, and the temp dir, far
    into a Ray command line, would never match: the check would always pass.
    """
    listing = subprocess.run(["ps", "-ww", "-eo", "pid=,stat=,args="], capture_output=True, text=True).stdout
    return [line for line in listing.splitlines()
            if cluster_dir + "/" in line and not line.split()[1].startswith("Z")]


def actors_started(cluster_dir):
    """How many actors of each class this cluster's current session started: Ray writes
    ':job_id:ID' then ':actor_name:CLASS' at the top of each actor process's log."""
    counts = {}
    for path in glob.glob(os.path.join(cluster_dir, "*", "session_latest", "logs", "worker-*.out")):
        with open(path, encoding="utf-8", errors="replace") as log:
            top = [log.readline().strip() for _ in range(2)]
        for name in (line[len(":actor_name:"):] for line in top if line.startswith(":actor_name:")):
            counts[name] = counts.get(name, 0) + 1
    return counts


@pytest.hookimpl(wrapper=True)  # around pytest-xdist's own hook, which reads the groups
def pytest_collection_modifyitems(config, items):
    """Keep every test of a session-wide cluster or run on one pytest-xdist worker.

    scripts/test.sh runs the suite on three workers (--dist loadgroup): a session fixture is
    made once per worker, so two workers each asking for it would start two clusters on the
    same ports. When pytest-xdist ignores the groups, fail at once rather than far from the cause.
    """
    for item in items:
        for fixture in ("local_cluster", "smoke_run"):
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(pytest.mark.xdist_group(fixture))
                break
    yield
    if not getattr(config.option, "loadgroup", False):  # set on xdist's workers under --dist loadgroup
        return
    lost = [item.nodeid for item in items if item.get_closest_marker("xdist_group") and "@" not in item.nodeid]
    if lost:
        raise pytest.UsageError(f"pytest-xdist did not group {lost[0]} (and {len(lost) - 1} more): this pytest and "
                                "pytest-xdist do not work together (pytest-dev/pytest-xdist issue 1386). "
                                "Install requirements-dev.txt's pins, or run with TEST_WORKERS=0.")


@pytest.fixture(scope="session")
def tf():
    from lesson.workarounds import import_tensorflow

    return import_tensorflow(1)


@pytest.fixture(scope="session")
def local_cluster(tmp_path_factory):
    """A real Ray cluster on this machine: a 0-CPU head and two 1-CPU worker nodes.

    Yields the environment a driver needs to reach it (address and auth token).
    """
    cluster_dir = f"/tmp/ray-demo-test-{TEST_RAY_PORT}"
    settings = {"NUM_WORKERS": "2", "CPUS_PER_WORKER": "1", "RAY_PORT": str(TEST_RAY_PORT),
                "DASHBOARD_PORT": str(TEST_DASHBOARD_PORT), "CLUSTER_DIR": cluster_dir}
    script = str(REPO_ROOT / "scripts" / "local-cluster.sh")
    run([script, "stop"], env=settings)  # a cluster left over from an interrupted run
    started = run([script, "start"], env=settings, timeout=180)
    assert started.returncode == 0, started.stdout + started.stderr
    env_line = run([script, "env"], env=settings).stdout
    driver_env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": f"{cluster_dir}/auth_token",
                  "RAY_ADDRESS": f"127.0.0.1:{TEST_RAY_PORT}", "TF_USE_LEGACY_KERAS": "1",
                  "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    assert f"RAY_ADDRESS=127.0.0.1:{TEST_RAY_PORT}" in env_line
    yield {"env": driver_env, "settings": settings, "script": script, "cluster_dir": cluster_dir}
    run([script, "stop"], env=settings)


@pytest.fixture(scope="session")
def s3_server():
    """A local S3-compatible server (moto's), standing in for the in-cluster MinIO store of
    k8s/checkpoint-storage.yaml; yields the environment variables that point a driver at it."""
    port = free_port()
    server = subprocess.Popen([str(Path(PYTHON).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert server.poll() is None and time.time() < deadline, "moto_server did not start"
            time.sleep(0.2)
    yield {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "ray-demo",
           "AWS_SECRET_ACCESS_KEY": "ray-demo-checkpoints"}
    server.terminate()
    server.wait(timeout=30)


# Ports of the shared smoke benchmark: free of the test cluster's (6395), test_run_benchmark's
# (6396), test_fault_tolerance's (6397, 6398, 6390) and the scaling benchmark's (6399); the
# Prometheus and Grafana ports are not their defaults either, so a monitored benchmark of the
# developer's can run beside the tests.
SMOKE_PORTS = {"RAY_PORT": "6394", "DASHBOARD_PORT": "8274", "PROMETHEUS_PORT": "9194", "GRAFANA_PORT": "3194"}


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """One `MONITORING=1 ./scripts/run-benchmark.sh --smoke-test` for the whole session (a real
    Ray run is the slowest kind of test): tests of the smoke benchmark share it instead of each
    starting its own.

    Yields a dict: run_dir (the run's folder, a Path), results_dir, stdout, stderr, returncode,
    cluster_dir and env (the settings it ran with). Monitoring needs `prometheus` on PATH;
    without it the run still completes, unmonitored.
    """
    results_dir = tmp_path_factory.mktemp("smoke-run") / "results"
    cluster_dir = f"/tmp/ray-demo-{SMOKE_PORTS['RAY_PORT']}"
    env = {"MONITORING": "1", "RESULTS_DIR": str(results_dir), "TARGET": "local", **SMOKE_PORTS}
    run([str(REPO_ROOT / "scripts" / "local-cluster.sh"), "stop"],
        env={"RAY_PORT": SMOKE_PORTS["RAY_PORT"]})  # a cluster left over from an interrupted session
    finished = run([str(REPO_ROOT / "scripts" / "run-benchmark.sh"), "--smoke-test"], env=env, timeout=900)
    latest = results_dir / "latest"
    run_dir = latest.resolve() if latest.exists() else next(iter(sorted(results_dir.glob("*-local-smoke"))), None)
    yield {"run_dir": run_dir, "results_dir": results_dir, "stdout": finished.stdout, "stderr": finished.stderr,
           "returncode": finished.returncode, "cluster_dir": cluster_dir, "env": env}
