"""Monitoring (MONITORING=1): live per-worker metrics, a real Prometheus on the local cluster,
Grafana's provisioning, and REPORT.md's time series from Prometheus' HTTP API.

The happy path shares the session's one monitored smoke benchmark (conftest's `smoke_run`);
its Prometheus has stopped with the run, so the tests re-open its data folder with a real
Prometheus (analysis.prometheus.reopened_prometheus) and ask the HTTP API. The failure
paths start no cluster: they stop at the first check that fails, or drive the functions of
scripts/lib/monitoring.sh from a small bash script. Tests that need Prometheus skip without it
(.ci/run installs Debian's package).
"""

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time

import jsonschema
import pytest
import yaml

from conftest import REPO_ROOT, SMOKE_PORTS, cluster_processes, free_port, interruptible, run, taken_port
from analysis import monitoring_report, prometheus
from harness import live_metrics

SCRIPT = str(REPO_ROOT / "scripts" / "run-benchmark.sh")
MONITORING_SH = REPO_ROOT / "scripts" / "lib" / "monitoring.sh"
DASHBOARD = REPO_ROOT / "monitoring" / "grafana" / "data_parallel_training.json"
needs_prometheus = pytest.mark.skipif(shutil.which("prometheus") is None,
                                      reason="prometheus is not installed (Debian/Ubuntu: apt install prometheus)")


@pytest.fixture(scope="module")
def stored(smoke_run):
    """The smoke run's Prometheus data, re-opened: (url, state of monitoring.json)."""
    assert smoke_run["returncode"] == 0, (smoke_run["stdout"] + smoke_run["stderr"])[-5000:]
    monitoring = smoke_run["run_dir"] / "monitoring"
    state = json.loads((monitoring / "monitoring.json").read_text())
    with prometheus.reopened_prometheus(str(monitoring / "prometheus")) as url:
        yield url, state


def _window(state):
    return state["started_at"], state["stopped_at"], state["scrape_interval_seconds"]


# ---------------------------------------------------------------- the monitored smoke run


@needs_prometheus
def test_a_monitored_smoke_run_completes_and_stops_prometheus_with_the_cluster(smoke_run):
    assert smoke_run["returncode"] == 0, (smoke_run["stdout"] + smoke_run["stderr"])[-5000:]
    port = SMOKE_PORTS["PROMETHEUS_PORT"]
    assert f"Prometheus: http://127.0.0.1:{port} scrapes the cluster's nodes every 2 s" in smoke_run["stdout"]
    assert "prom_metrics_service_discovery.json" in smoke_run["stdout"]
    assert "Prometheus stopped; its data stays in" in smoke_run["stdout"]
    assert "Local cluster stopped." in smoke_run["stdout"]
    monitoring = smoke_run["run_dir"] / "monitoring"
    state = json.loads((monitoring / "monitoring.json").read_text())
    assert state["stopped"] == "clean" and state["stopped_at"] >= state["started_at"]
    assert any((monitoring / "prometheus").iterdir())
    # Nothing of the run is left: no Prometheus on its data, no cluster process, a free port.
    assert cluster_processes(str(monitoring)) == []
    assert cluster_processes(smoke_run["cluster_dir"]) == []
    assert not prometheus.answers(f"http://127.0.0.1:{port}", timeout=1)


@needs_prometheus
def test_prometheus_holds_our_per_worker_metric_for_both_ranks_and_rays_node_cpu(stored):
    url, state = stored
    start, end, step = _window(state)
    throughput = prometheus.query_range(url, "ray_demo_train_images_per_second", start, end, step)
    assert {labels["rank"] for labels, _ in throughput} == {"0", "1"}
    for labels, points in throughput:
        assert re.fullmatch(r"[0-9a-f]{8}", labels["node"]) and all(value > 0 for _, value in points)
    # The two workers ran on two different worker nodes.
    assert len({labels["node"] for labels, _ in throughput}) == 2
    # Ray's node CPU metric, from every node: the head and the two worker nodes.
    cpu = prometheus.query_range(url, "ray_node_cpu_utilization", start, end, step)
    assert len({labels["instance"] for labels, _ in cpu}) == 3
    assert all(0 <= value <= 100 for _, points in cpu for _, value in points)


@needs_prometheus
def test_every_live_metric_is_exported_for_both_ranks_and_images_per_second_follows_from_step_time(stored):
    url, state = stored
    start, end, step = _window(state)
    for name in live_metrics.METRIC_NAMES:
        found = prometheus.query_range(url, f"ray_{name}", start, end, step)
        assert {labels["rank"] for labels, _ in found} == {"0", "1"}, name
    # Each worker's smoke batch is 32 images: images/s is 32 / the mean step time of the same update.
    pairs = prometheus.query_range(url, "ray_demo_train_images_per_second * ray_demo_train_step_seconds",
                                          start, end, step)
    assert pairs and all(value == pytest.approx(32, rel=1e-6) for _, points in pairs for _, value in points)
    epochs = prometheus.query(url, f"max(max_over_time(ray_demo_train_epoch[{end - start}s]))", at=end)
    assert epochs and epochs[0][1] == 1


@needs_prometheus
def test_the_workers_log_what_their_live_metrics_cost(smoke_run):
    for rank in (0, 1):
        match = re.search(rf"ray worker {rank}/2 live metrics: (\d+) updates of 10 gauges, [\d.]+ ms in all, "
                          r"([\d.]+)% of fit\(\)", smoke_run["stdout"])
        assert match, smoke_run["stdout"][-3000:]
        assert int(match.group(1)) >= 1 and float(match.group(2)) < 1.0


@needs_prometheus
def test_the_head_node_started_with_the_runs_prometheus_as_its_metrics_source(smoke_run):
    # Ray writes its Grafana data source from RAY_PROMETHEUS_HOST, as the head node saw it.
    datasource = (smoke_run["cluster_dir"] + "/ray-head/session_latest/metrics/grafana/provisioning/"
                  "datasources/default.yml")
    with open(datasource, encoding="utf-8") as source:
        assert yaml.safe_load(source)["datasources"][0]["url"] == f"http://127.0.0.1:{SMOKE_PORTS['PROMETHEUS_PORT']}"


@needs_prometheus
def test_the_report_plots_throughput_and_cpu_per_process_from_prometheus(smoke_run):
    run_dir = smoke_run["run_dir"]
    report = (run_dir / "REPORT.md").read_text()
    section = report.split("## Live metrics (Prometheus)", 1)[1].split("\n## ", 1)[0]
    assert "![Per-worker images/s and step time against time](monitoring_training.png)" in section
    assert "![CPU per Ray process against time](monitoring_cpu.png)" in section
    assert "- Rank 0: " in section and "- Rank 1: " in section and "Ray's own processes" in section
    assert "Incomplete" not in section and "Not available" not in section
    for picture in (monitoring_report.TRAINING_PLOT, monitoring_report.CPU_PLOT):
        assert (run_dir / picture).read_bytes().startswith(b"\x89PNG"), picture


@needs_prometheus
def test_every_query_of_our_grafana_dashboard_returns_data_of_the_smoke_run(stored):
    url, state = stored
    start, end, step = _window(state)
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expression = target["expr"].replace("$SessionName", ".+")
            assert prometheus.query_range(url, expression, start, end, step), (panel["title"], expression)


# ---------------------------------------------------------------- the Grafana dashboard, statically

# What Grafana needs of a provisioned dashboard and what the Ray dashboard's embedding and our
# docs rely on (checked once against grafana-foundation-sdk's dashboard, timeseries, stat and
# Prometheus query JSON schemas, which are not vendored here).
DASHBOARD_SCHEMA = {
    "type": "object",
    "required": ["uid", "title", "schemaVersion", "panels", "templating", "annotations", "time"],
    "properties": {
        "uid": {"type": "string", "pattern": "^[A-Za-z0-9_-]{8,40}$"},
        "title": {"const": "Data-parallel training"},
        "schemaVersion": {"type": "integer", "minimum": 27},
        "time": {"type": "object", "required": ["from", "to"]},
        "templating": {"type": "object", "required": ["list"], "properties": {"list": {"type": "array", "items": {
            "type": "object", "required": ["name", "type", "current"],
            "properties": {"type": {"enum": ["query", "datasource", "custom", "constant", "interval", "textbox"]},
                           "current": {"type": "object", "required": ["text", "value"]}}}}}},
        "panels": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["id", "type", "title", "description", "datasource", "gridPos", "targets",
                                           "fieldConfig", "options"],
            "properties": {
                "id": {"type": "integer"},
                "type": {"enum": ["timeseries", "stat"]},
                "datasource": {"const": {"type": "prometheus", "uid": "${datasource}"}},
                "gridPos": {"type": "object", "required": ["x", "y", "w", "h"], "additionalProperties": False,
                            "properties": {"x": {"type": "integer", "minimum": 0, "maximum": 23},
                                           "y": {"type": "integer", "minimum": 0},
                                           "w": {"type": "integer", "minimum": 1, "maximum": 24},
                                           "h": {"type": "integer", "minimum": 1}}},
                "fieldConfig": {"type": "object", "required": ["defaults", "overrides"]},
                "targets": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["refId", "expr", "legendFormat", "datasource"],
                    "properties": {"expr": {"type": "string", "minLength": 1}}}}}}},
    },
}


def test_the_grafana_dashboard_matches_its_schema_and_uses_only_metrics_that_exist():
    dashboard = json.loads(DASHBOARD.read_text())
    jsonschema.validate(dashboard, DASHBOARD_SCHEMA)
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    # Panels fit the 24-column grid and do not overlap.
    cells = set()
    for panel in dashboard["panels"]:
        position = panel["gridPos"]
        assert position["x"] + position["w"] <= 24, panel["title"]
        area = {(x, y) for x in range(position["x"], position["x"] + position["w"])
                for y in range(position["y"], position["y"] + position["h"])}
        assert not cells & area, f"{panel['title']} overlaps another panel"
        cells |= area
        for target in panel["targets"]:
            refs = [target["refId"] for target in panel["targets"]]
            assert len(refs) == len(set(refs)), panel["title"]
    # The datasource variable the panels use, named as the Ray dashboard's embedding expects.
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    expressions = " ".join(target["expr"] for panel in dashboard["panels"] for target in panel["targets"])
    used = set(re.findall(r"\bray_demo_train_\w+", expressions))
    assert used == {f"ray_{name}" for name in live_metrics.METRIC_NAMES}
    # Ray's own metrics: per-process CPU and the node's CPU, as Ray 2.60 names them.
    assert set(re.findall(r"\bray_(?!demo_)\w+", expressions)) == {
        "ray_component_cpu_percentage", "ray_node_cpu_utilization", "ray_node_cpu_count"}
    for title in ("Images per second, per worker", "Step time and its all-reduce part, per worker",
                  "CPU per Ray process"):
        assert title in {panel["title"] for panel in dashboard["panels"]}


# ---------------------------------------------------------------- failure paths (no cluster)


def test_help_lists_the_monitoring_settings():
    finished = run([SCRIPT, "--help"])
    for setting in ("MONITORING=0", "PROMETHEUS_PORT=9095", "GRAFANA_PORT=3005", "PROMETHEUS_SCRAPE_SECONDS=5"):
        assert setting in finished.stdout, setting
    assert "GRAFANA_HOME=" in finished.stdout
    # The library that implements them says where its settings are documented.
    assert "run-benchmark.sh's --help lists these settings" in MONITORING_SH.read_text()


@pytest.mark.parametrize("env, message", [
    ({"MONITORING": "yes"}, "MONITORING must be one of: 0 1; got 'yes'"),
    ({"PROMETHEUS_PORT": "http"}, "PROMETHEUS_PORT must be a whole number from 1 to 65535, got 'http'"),
    ({"GRAFANA_PORT": "0"}, "GRAFANA_PORT must be a whole number from 1 to 65535, got '0'"),
    ({"PROMETHEUS_SCRAPE_SECONDS": "0.5"}, "PROMETHEUS_SCRAPE_SECONDS must be a whole number from 1 to 3600, got '0.5'"),
])
def test_bad_monitoring_settings_are_refused_at_once(env, message):
    finished = run([SCRIPT], env=env, timeout=60)
    assert finished.returncode == 1 and message in finished.stderr


def _path_without(tool, tmp_path):
    """A PATH with every command of this one but `tool`: links to the rest in a folder of its own."""
    folder = tmp_path / f"bin-without-{tool}"
    folder.mkdir()
    for directory in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for name in os.listdir(directory):
            target = os.path.join(directory, name)
            if name != tool and not (folder / name).exists() and os.access(target, os.X_OK):
                (folder / name).symlink_to(target)
    assert shutil.which(tool, path=str(folder)) is None
    return str(folder)


def test_a_missing_prometheus_leaves_the_run_going_and_says_how_to_install_it(tmp_path):
    # CLUSTER_DIR cannot be made, so that the run, having gone on, stops at the cluster's start.
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    finished = run([SCRIPT, "--smoke-test"], timeout=120,
                   env={"MONITORING": "1", "PATH": _path_without("prometheus", tmp_path), "TARGET": "local",
                        "RESULTS_DIR": str(tmp_path / "results"), "RAY_PORT": str(free_port()),
                        "DASHBOARD_PORT": str(free_port()), "CLUSTER_DIR": str(blocker / "cluster")})
    assert "'prometheus' is not installed or not on PATH, so this run goes on without monitoring" in finished.stderr
    assert "sudo apt install prometheus" in finished.stderr and "brew install prometheus" in finished.stderr
    # It went on to the cluster, which fails on its folder here: not on monitoring.
    assert f"Cannot create {blocker / 'cluster'}" in finished.stderr
    assert "Starting head node" not in finished.stdout
    (folder,) = (tmp_path / "results").glob("*-local-smoke")
    assert not (folder / "monitoring").exists()


@needs_prometheus
def test_a_taken_prometheus_port_fails_before_the_cluster_starts_naming_the_setting(tmp_path):
    started = time.time()
    with taken_port() as port:
        finished = run([SCRIPT, "--smoke-test"], timeout=120,
                       env={"MONITORING": "1", "PROMETHEUS_PORT": str(port), "TARGET": "local",
                            "RESULTS_DIR": str(tmp_path), "RAY_PORT": str(free_port()),
                            "DASHBOARD_PORT": str(free_port())})
    assert finished.returncode == 1
    assert f"Prometheus port {port} is already taken" in finished.stderr
    assert f"PROMETHEUS_PORT={port + 1} MONITORING=1" in finished.stderr
    assert "Starting head node" not in finished.stdout and time.time() - started < 60
    (folder,) = tmp_path.glob("*-local-smoke")
    assert f"Prometheus port {port} is already taken" in (folder / "FAILED").read_text()


def _fake_grafana(folder, record):
    """A `grafana-server` that records its arguments and serves HTTP on the port its config names."""
    folder.mkdir(exist_ok=True)
    fake = folder / "grafana-server"
    fake.write_text(f"""#!/usr/bin/env bash
printf '%s\\n' "$@" > {record}
config="${{4:?}}"
port="$(sed -n 's/^http_port = //p' "$config")"
exec python3 -m http.server --bind 127.0.0.1 "$port"
""")
    fake.chmod(0o755)
    return str(folder)


@needs_prometheus
def test_a_taken_grafana_port_fails_before_the_cluster_starts_when_grafana_is_installed(tmp_path):
    fakes = _fake_grafana(tmp_path / "fakes", tmp_path / "grafana-args")
    with taken_port() as port:
        finished = run([SCRIPT, "--smoke-test"], timeout=120,
                       env={"MONITORING": "1", "GRAFANA_PORT": str(port), "PROMETHEUS_PORT": "9197",
                            "PATH": fakes + os.pathsep + os.environ["PATH"], "TARGET": "local",
                            "RESULTS_DIR": str(tmp_path / "results"), "RAY_PORT": str(free_port()),
                            "DASHBOARD_PORT": str(free_port())})
    assert finished.returncode == 1
    assert f"Grafana port {port} is already taken" in finished.stderr and f"GRAFANA_PORT={port + 1}" in finished.stderr
    assert "Starting head node" not in finished.stdout
    assert not (tmp_path / "grafana-args").exists()


def _monitoring_harness(tmp_path, body, env=None, path_prefix=None):
    """Run scripts/lib/monitoring.sh's functions in bash against a stand-in head session folder
    whose service-discovery file lists PROMETHEUS_PORT itself: Prometheus scrapes itself."""
    session = tmp_path / "cluster" / "ray-head" / "session_2026"
    (session / "metrics" / "grafana" / "dashboards").mkdir(parents=True)
    (session.parent / "session_latest").symlink_to(session)
    (tmp_path / "cluster" / "auth_token").write_text("token")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    port = env["PROMETHEUS_PORT"]
    (session / "prom_metrics_service_discovery.json").write_text(
        json.dumps([{"labels": {"job": "ray"}, "targets": [f"127.0.0.1:{port}"]}]))
    script = f"""set -o errexit -o nounset -o pipefail
source {REPO_ROOT}/scripts/lib/common.sh
source {MONITORING_SH}
RAY_AUTH_TOKEN_PATH={tmp_path}/cluster/auth_token
trap stop_monitoring EXIT
check_monitoring_settings
prepare_monitoring {run_dir}
start_monitoring
{body}
"""
    merged = {"MONITORING": "1", **env}
    if path_prefix:
        merged["PATH"] = path_prefix + os.pathsep + os.environ["PATH"]
    return run(["bash", "-c", script], env=merged, timeout=120), run_dir, session


@needs_prometheus
def test_a_prometheus_that_dies_during_the_run_leaves_it_going_and_the_report_says_the_series_are_incomplete(tmp_path):
    finished, run_dir, _ = _monitoring_harness(tmp_path, """
sleep 5  # a few scrapes
kill -KILL "$PROMETHEUS_PID"
sleep 1
echo "the training goes on"
""", env={"PROMETHEUS_PORT": "9198", "PROMETHEUS_SCRAPE_SECONDS": "1"})
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert "the training goes on" in finished.stdout
    assert "Prometheus had stopped before the end of the run" in finished.stderr
    assert "its time series are incomplete" in finished.stderr
    state = json.loads((run_dir / "monitoring" / "monitoring.json").read_text())
    assert state["stopped"] == "died"
    # The report re-opens what the killed Prometheus stored, and says it is incomplete.
    section = "\n".join(monitoring_report.report_section(str(run_dir)))
    assert "**Incomplete**: the run's Prometheus stopped answering before the run ended" in section
    assert "holds no training metrics" in section  # no Ray run here
    assert (run_dir / monitoring_report.CPU_PLOT).read_bytes().startswith(b"\x89PNG")


@needs_prometheus
def test_ctrl_c_stops_prometheus_through_the_exit_trap_as_run_benchmark_sets_it(tmp_path):
    session = tmp_path / "cluster" / "ray-head" / "session_2026"
    session.mkdir(parents=True)
    (session.parent / "session_latest").symlink_to(session)
    (session / "prom_metrics_service_discovery.json").write_text("[]")
    (tmp_path / "cluster" / "auth_token").write_text("token")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    # run-benchmark.sh's traps: INT exits 130, EXIT stops monitoring (cleanup).
    script = f"""set -o errexit -o nounset -o pipefail
source {REPO_ROOT}/scripts/lib/common.sh
source {MONITORING_SH}
RAY_AUTH_TOKEN_PATH={tmp_path}/cluster/auth_token
trap stop_monitoring EXIT
trap 'exit 130' INT TERM
prepare_monitoring {run_dir}
start_monitoring
sleep 60 >/dev/null 2>&1 &  # the training, as far as this test goes (its output would hold the pipe)
echo "SLEEP_PID=$! PROMETHEUS_PID=$PROMETHEUS_PID"
wait $!
"""
    process = subprocess.Popen(["bash", "-c", script], cwd=REPO_ROOT, text=True, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, preexec_fn=interruptible,
                               env=dict(os.environ, MONITORING="1", PROMETHEUS_PORT="9196"))
    line = process.stdout.readline()
    while line and not line.startswith("SLEEP_PID="):
        line = process.stdout.readline()
    sleeper, pid = (int(word.split("=")[1]) for word in line.split())
    os.kill(pid, 0)  # Prometheus runs
    process.send_signal(signal.SIGINT)  # to bash alone: its traps must do the rest
    try:
        stdout, stderr = process.communicate(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(sleeper, signal.SIGKILL)
    assert process.returncode == 130, stdout + stderr
    assert "Prometheus stopped; its data stays in" in stdout
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert json.loads((run_dir / "monitoring" / "monitoring.json").read_text())["stopped"] == "clean"


@needs_prometheus
def test_grafana_starts_provisioned_with_rays_dashboards_ours_and_the_runs_prometheus(tmp_path):
    home = tmp_path / "grafana-home"
    (home / "conf").mkdir(parents=True)
    (home / "conf" / "defaults.ini").write_text("")
    record = tmp_path / "grafana-args"
    fakes = _fake_grafana(tmp_path / "fakes", record)
    finished, run_dir, session = _monitoring_harness(tmp_path, """
echo "RAY_PROMETHEUS_HOST=$RAY_PROMETHEUS_HOST RAY_GRAFANA_HOST=$RAY_GRAFANA_HOST RAY_GRAFANA_IFRAME_HOST=$RAY_GRAFANA_IFRAME_HOST"
echo "RAY_metrics_report_interval_ms=$RAY_metrics_report_interval_ms"
echo "GRAFANA_PID=$GRAFANA_PID"
""", env={"PROMETHEUS_PORT": "9199", "GRAFANA_PORT": "3199", "GRAFANA_HOME": str(home)}, path_prefix=fakes)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    # The head node's variables, for the Ray dashboard to read Prometheus and embed Grafana.
    assert ("RAY_PROMETHEUS_HOST=http://127.0.0.1:9199 RAY_GRAFANA_HOST=http://127.0.0.1:3199 "
            "RAY_GRAFANA_IFRAME_HOST=http://127.0.0.1:3199") in finished.stdout
    assert "Grafana: http://127.0.0.1:3199 (dashboard 'Data-parallel training', and Ray's)" in finished.stdout
    # Outside a smoke run Prometheus scrapes every 5 s, and Ray's processes export as often.
    assert "RAY_metrics_report_interval_ms=5000" in finished.stdout
    assert "scrape_interval: 5s" in (run_dir / "monitoring" / "prometheus.yml").read_text()
    grafana = run_dir / "monitoring" / "grafana"
    assert record.read_text().splitlines() == ["--homepath", str(home), "--config", str(grafana / "grafana.ini")]
    ini = (grafana / "grafana.ini").read_text()
    for line in ("http_addr = 127.0.0.1", "http_port = 3199", "allow_embedding = true", "org_role = Viewer",
                 f"provisioning = {grafana / 'provisioning'}", f"data = {grafana / 'data'}"):
        assert line in ini, line
    datasource = yaml.safe_load((grafana / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert datasource["datasources"] == [{"name": "Prometheus", "type": "prometheus", "access": "proxy",
                                          "url": "http://127.0.0.1:9199", "isDefault": True}]
    providers = yaml.safe_load((grafana / "provisioning" / "dashboards" / "dashboards.yml").read_text())["providers"]
    paths = {provider["name"]: provider["options"]["path"] for provider in providers}
    assert paths == {"Ray": str(session / "metrics" / "grafana" / "dashboards"),
                     "Data-parallel training": str(REPO_ROOT / "monitoring" / "grafana")}
    assert DASHBOARD.parent == REPO_ROOT / "monitoring" / "grafana" and DASHBOARD.exists()
    # Stopped with the run.
    pid = int(re.search(r"GRAFANA_PID=(\d+)", finished.stdout).group(1))
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert json.loads((run_dir / "monitoring" / "monitoring.json").read_text())["grafana_url"] == "http://127.0.0.1:3199"


# ---------------------------------------------------------------- live metrics outside Ray


def test_live_metrics_do_nothing_outside_a_ray_train_worker():
    metrics = live_metrics.LiveMetrics(4096)
    assert not metrics.enabled
    metrics.begin(32)
    metrics.step(0.5, None)
    metrics.epoch(1, {"loss": 1.0, "accuracy": 0.5})
    assert metrics.updates == 0 and metrics.summary(10.0) is None


def test_a_bad_demo_live_metrics_value_is_refused(monkeypatch):
    monkeypatch.setenv("DEMO_LIVE_METRICS", "yes")
    with pytest.raises(ValueError, match="DEMO_LIVE_METRICS must be 0 or 1, got 'yes'"):
        live_metrics.LiveMetrics(4096)
    monkeypatch.setenv("DEMO_LIVE_METRICS", "0")
    assert not live_metrics.LiveMetrics(4096, identity=None).enabled


def test_live_metrics_are_set_at_the_first_step_then_at_most_once_a_second_and_at_each_epoch_end(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(live_metrics.time, "perf_counter", lambda: clock[0])
    metrics = live_metrics.LiveMetrics(4096, identity=(0, 2, "abcd1234"))
    metrics.begin(32)
    parts = dict.fromkeys(("input", "compute", "allreduce", "allreduce_cpu", "optimizer", "other"), 0.01)
    for _ in range(10):  # 10 steps of 0.25 s: at 0 s (the first), 1.0 s and 2.0 s
        metrics.step(0.25, parts)
        clock[0] += 0.25
    assert metrics.updates == 3
    metrics.epoch(1, {"loss": 1.0, "accuracy": 0.5})  # the 1 step since 2.0 s
    assert metrics.updates == 4
    assert "4 updates of 10 gauges" in metrics.summary(10.0)


def test_the_metric_names_are_the_ones_the_dashboard_and_the_kubernetes_monitors_rely_on():
    assert sorted(live_metrics.METRIC_NAMES) == sorted((
        "demo_train_images_per_second", "demo_train_step_seconds", "demo_train_compute_seconds",
        "demo_train_allreduce_seconds", "demo_train_allreduce_cpu_seconds", "demo_train_input_seconds",
        "demo_train_optimizer_seconds", "demo_train_epoch", "demo_train_loss", "demo_train_accuracy"))
    assert live_metrics.TAG_KEYS == ("rank", "node")
