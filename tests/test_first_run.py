"""Tests of scripts/first-run-minikube.sh (the whole Minikube path, timed, with a diagnostics
bundle on failure) and of its masking step (scripts/lib/diagnostics.sh's mask_secrets).

The fake world, its rules and its call log are those of tests/test_k8s_scripts.py: fake
minikube, kubectl, helm and docker first on PATH. Where a test is about the order of the steps,
the step scripts themselves are replaced by stand-ins that record their call; where it is about
a real failure, the real preflight.sh, setup-minikube.sh and install-ray.sh run against the
fakes. The fakes' outputs carry planted secrets, which must not reach the bundle. Nothing here
reaches a cluster, Docker or the network.
"""

import re
import signal
import subprocess
import tarfile
import time

from conftest import interruptible
from test_k8s_scripts import FakeWorld, system_bin, world  # noqa: F401 (fixtures)

SCRIPT = "scripts/first-run-minikube.sh"
STEPS = ["preflight", "setup-minikube", "install-ray", "benchmark-smoke", "delete-raycluster",
         "rayjob-smoke", "install-ray-again", "install-monitoring", "cleanup"]
STEP_SCRIPTS = ("preflight", "setup-minikube", "install-ray", "run-benchmark", "run-rayjob",
                "install-monitoring", "cleanup")
DELETE_RAYCLUSTER = ("kubectl --context minikube --namespace default delete raycluster ray-training-cluster "
                     "--ignore-not-found --cascade=foreground --timeout=300s")
STUB_CALLS = [
    "preflight.sh",
    "setup-minikube.sh",
    "install-ray.sh",
    "TARGET=minikube run-benchmark.sh --smoke-test",
    DELETE_RAYCLUSTER,
    "TARGET=minikube run-rayjob.sh --smoke-test",
    "install-ray.sh",
    "install-monitoring.sh",
    "cleanup.sh",
]
# Planted in the fakes' outputs: none may reach the bundle.
RAY_TOKEN = "planted-ray-token-5f3a9c"
GRAFANA_PASSWORD = "planted-grafana-password-77"
GRAFANA_PASSWORD_BASE64 = "cGxhbnRlZC1ncmFmYW5hLXBhc3N3b3JkLTc3"
SECRETS = (RAY_TOKEN, GRAFANA_PASSWORD, GRAFANA_PASSWORD_BASE64)
KUBE = "kubectl --context minikube --request-timeout=20s"
BUNDLE_CALLS = [
    "minikube version",
    "kubectl version --client",
    "helm version --short",
    "docker version",
    f"{KUBE} get nodes -o wide",
    f"{KUBE} get pods --all-namespaces -o wide",
    f"{KUBE} get rayclusters,rayjobs --all-namespaces",
    f"{KUBE} get events --all-namespaces --sort-by=.lastTimestamp",
    f"{KUBE} --namespace ray-system logs deployment/kuberay-operator --all-containers --tail=200",
    f"{KUBE} --namespace default logs --selector ray.io/node-type=head --all-containers --prefix --tail=200",
    f"{KUBE} --namespace default logs --selector ray.io/node-type=worker --all-containers --prefix --tail=200",
    "minikube -p minikube logs --length 200",
]


def stub_steps(world: FakeWorld):
    """Replace the step scripts by stand-ins that record "[TARGET=...] NAME ARGS" in the call log;
    the one named in STUB_FAIL prints a planted token and fails, STUB_SLEEP makes one wait."""
    for name in STEP_SCRIPTS:
        path = world.root / "scripts" / f"{name}.sh"
        path.write_text(
            "#!/usr/bin/env bash\n"
            'name="$(basename "$0")"\n'
            'printf \'%s%s%s\\n\' "${TARGET:+TARGET=$TARGET }" "$name" "${*:+ $*}" >>"$FAKE_LOG"\n'
            'echo "$name: done"\n'
            'if [[ "${STUB_SLEEP:-}" == "$name" ]]; then echo "$name: waiting"; sleep 30; fi\n'
            'if [[ "${STUB_FAIL:-}" == "$name" ]]; then\n'
            f'  echo "$name: the job failed, RAY_AUTH_TOKEN={RAY_TOKEN}" >&2\n'
            "  exit 3\n"
            "fi\n")
        path.chmod(0o755)


def run_folder(world: FakeWorld):
    folders = sorted((world.root / "results").glob("*-first-run"))
    assert len(folders) == 1, folders
    assert re.fullmatch(r"\d{8}-\d{6}-first-run", folders[0].name)
    return folders[0]


def table_rows(text: str) -> dict:
    """{step: (seconds, result)} of the timing table in TEXT."""
    rows = {}
    for line in text.splitlines():
        match = re.match(r"^([a-z-]+)\s+(\d+|-)\s+(\S.*)$", line)
        if match and match.group(1) in STEPS:
            rows[match.group(1)] = (match.group(2), match.group(3))
    return rows


def bundle_texts(folder) -> dict:
    """{name: text} of every file of the diagnostics folder and of its .tar.gz."""
    texts = {path.name: path.read_text() for path in (folder / "diagnostics").iterdir()}
    with tarfile.open(folder / "diagnostics.tar.gz") as archive:
        for member in archive.getmembers():
            if member.isfile():
                texts["tar:" + member.name] = archive.extractfile(member).read().decode()
    return texts


def failing_operator_rules(world: FakeWorld):
    """A healthy 2-node profile whose operator chart cannot be installed, and fakes whose
    outputs for the bundle hold the planted token and password."""
    world.rule("docker", "info --format {{.NCPU}}*", output=f"16 {64 * 1024 ** 3}")
    world.rule("docker", "version", output="Client: Docker Engine - Community\n Version: 28.5.1")
    world.rule("minikube", "version*", output="minikube version: v1.37.0")
    world.rule("kubectl", "version --client", output="Client Version: v1.34.1")
    world.rule("helm", "version --short", output="v3.19.0+g3d8990f")
    world.rule("kubectl", "config current-context", output="minikube")
    world.rule("minikube", "-p minikube node list", output="minikube\t192.168.49.2\nminikube-m02\t192.168.49.3")
    world.rule("kubectl", "--context minikube get nodes --no-headers",
               output="minikube       Ready   control-plane   5m   v1.34.0\n"
                      "minikube-m02   Ready   <none>          4m   v1.34.0")
    world.rule("helm", "upgrade --install kuberay-operator *", code=1,
               output="Error: INSTALLATION FAILED: context deadline exceeded")
    world.rule("kubectl", "* get nodes -o wide",
               output="NAME           STATUS   ROLES           INTERNAL-IP\n"
                      "minikube       Ready    control-plane   192.168.49.2\n"
                      "minikube-m02   Ready    <none>          192.168.49.3")
    world.rule("kubectl", "* get pods --all-namespaces -o wide",
               output="NAMESPACE    NAME                               READY   STATUS\n"
                      "ray-system   kuberay-operator-6b8f7c9d4-x2lqk   0/1     CrashLoopBackOff")
    world.rule("kubectl", "* get events --all-namespaces *",
               output="ray-system   Warning   BackOff   pod/kuberay-operator-6b8f7c9d4-x2lqk   "
                      f"Back-off restarting failed container; env RAY_AUTH_TOKEN={RAY_TOKEN}")
    world.rule("kubectl", "* logs deployment/kuberay-operator *",
               output='{"level":"error","msg":"reconcile failed","secret":{"apiVersion":"v1","data":'
                      f'{{"auth_token":"{RAY_TOKEN}"}}}}}}\n'
                      f"apiVersion: v1\ndata:\n  admin-password: {GRAFANA_PASSWORD_BASE64}\n  admin-user: YWRtaW4=\n"
                      "kind: Secret")
    world.rule("kubectl", "* logs --selector ray.io/node-type=head *",
               output=f"[pod/ray-training-cluster-head-x7k2p/ray-head] auth_token: {RAY_TOKEN}")
    world.rule("kubectl", "* logs --selector ray.io/node-type=worker *",
               output=f"[pod/ray-training-cluster-worker-a1/ray-worker] GF_SECURITY_ADMIN_PASSWORD={GRAFANA_PASSWORD}")
    world.rule("minikube", "-p minikube logs *", code=1,
               output=f"E1001 kubelet: unable to pull, password: {GRAFANA_PASSWORD}\nX Exiting due to GUEST_STATUS")


# ----------------------------------------------------------------------------------
# every step passes
# ----------------------------------------------------------------------------------

def test_first_run_runs_every_step_in_order_and_prints_and_keeps_the_timing_table(world):
    stub_steps(world)
    result = world.script(SCRIPT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert world.calls() == STUB_CALLS
    rows = table_rows(result.stdout)
    assert list(rows) == STEPS
    assert all(result_text == "ok" and seconds.isdigit() for seconds, result_text in rows.values()), rows
    assert re.search(r"^step\s+seconds\s+result$", result.stdout, re.M)
    assert re.search(r"^total\s+\d+$", result.stdout, re.M)
    folder = run_folder(world)
    assert table_rows((folder / "timings.txt").read_text()) == rows
    assert "Step 4/9, benchmark-smoke: TARGET=minikube ./scripts/run-benchmark.sh --smoke-test" in result.stdout
    assert (folder / "logs" / "03-install-ray.log").read_text() == "install-ray.sh: done\n"
    assert sorted(path.name for path in (folder / "logs").iterdir())[0] == "01-preflight.log"
    assert not (folder / "FAILED").exists() and not (folder / "diagnostics").exists()
    assert not (world.root / "results" / "latest").exists(), "latest stays the benchmark's or the RayJob's"
    assert "Every step passed" in result.stdout


def test_first_run_with_keep_skips_the_cleanup_and_says_how_to_remove_it_later(world):
    stub_steps(world)
    result = world.script(SCRIPT, KEEP=1, DELETE_TIMEOUT=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert world.calls() == [call.replace("--timeout=300s", "--timeout=60s") for call in STUB_CALLS[:-1]]
    assert table_rows(result.stdout)["cleanup"] == ("-", "skipped (KEEP=1)")
    assert "Remove them: ./scripts/cleanup.sh" in result.stdout


def test_first_run_passes_other_settings_to_the_steps_and_results_next_to_its_folder(world, tmp_path):
    stub_steps(world)
    for name in ("setup-minikube", "cleanup"):
        path = world.root / "scripts" / f"{name}.sh"
        path.write_text(path.read_text().replace(
            'echo "$name: done"', 'echo "$name: NODE_CPUS=${NODE_CPUS:-} DELETE_CLUSTER=${DELETE_CLUSTER:-} '
                                  'RESULTS_DIR=${RESULTS_DIR:-} RUN_DIR=${RUN_DIR:-}"'))
    results = tmp_path / "elsewhere"
    result = world.script(SCRIPT, NODE_CPUS=6, DELETE_CLUSTER=1, RESULTS_DIR=results, RUN_DIR="/tmp/not-theirs")
    assert result.returncode == 0, result.stdout + result.stderr
    expected = f"NODE_CPUS=6 DELETE_CLUSTER=1 RESULTS_DIR={results} RUN_DIR="
    assert f"setup-minikube.sh: {expected}\n" in result.stdout
    assert f"cleanup.sh: {expected}\n" in result.stdout
    assert len(list(results.glob("*-first-run"))) == 1


# ----------------------------------------------------------------------------------
# a step fails
# ----------------------------------------------------------------------------------

def test_first_run_stops_at_a_failed_operator_install_with_a_masked_bundle_naming_the_step(world):
    failing_operator_rules(world)
    result = world.script(SCRIPT)
    assert result.returncode == 1
    folder = run_folder(world)
    rows = table_rows(result.stdout)
    assert rows["preflight"][1] == "ok" and rows["setup-minikube"][1] == "ok"
    assert rows["install-ray"][1] == "FAILED (exit 1)"
    assert [rows[step] for step in STEPS[3:]] == [("-", "not run")] * 6
    assert table_rows((folder / "timings.txt").read_text()) == rows
    # The message names the step and the bundle; the cluster is left for inspection.
    assert "Step 3/9, install-ray, failed (exit status 1): ./scripts/install-ray.sh" in result.stderr
    assert f"Diagnostics, secrets masked: {folder}/diagnostics/" in result.stderr
    assert f"{folder}/diagnostics.tar.gz" in result.stderr
    assert "Step 3/9, install-ray, failed" in (folder / "FAILED").read_text()
    calls = world.calls()
    helm_install = next(index for index, call in enumerate(calls) if call.startswith("helm upgrade --install"))
    assert calls[-len(BUNDLE_CALLS):] == BUNDLE_CALLS
    assert not any(" apply " in call or "uninstall" in call or "delete" in call for call in calls[helm_install:])

    bundle = folder / "diagnostics"
    summary = (bundle / "SUMMARY.txt").read_text()
    assert "Failed step: install-ray (exit status 1)\nIts command: ./scripts/install-ray.sh" in summary
    assert "Helm could not install kuberay-operator 1.7.0" in (bundle / "failed-step.txt").read_text()
    assert "context deadline exceeded" in (bundle / "failed-step.txt").read_text()
    assert "minikube version: v1.37.0" in (bundle / "versions.txt").read_text()
    assert "Client Version: v1.34.1" in (bundle / "versions.txt").read_text()
    assert "v3.19.0+g3d8990f" in (bundle / "versions.txt").read_text()
    assert "Docker Engine - Community" in (bundle / "versions.txt").read_text()
    assert "minikube-m02   Ready    <none>          192.168.49.3" in (bundle / "nodes.txt").read_text()
    assert "kuberay-operator-6b8f7c9d4-x2lqk   0/1     CrashLoopBackOff" in (bundle / "pods.txt").read_text()
    assert "Back-off restarting failed container; env RAY_AUTH_TOKEN=<masked>" in (bundle / "events.txt").read_text()
    assert '"data":{<masked>}' in (bundle / "operator.log").read_text()
    assert "admin-password: <masked>" in (bundle / "operator.log").read_text()
    assert "[pod/ray-training-cluster-head-x7k2p/ray-head] auth_token: <masked>" in (bundle / "head.log").read_text()
    assert "GF_SECURITY_ADMIN_PASSWORD=<masked>" in (bundle / "workers.log").read_text()
    # A collecting command that fails is noted, and the bundle is still complete.
    assert re.search(r"FAILED \(exit 1\) +minikube\.log +minikube -p minikube logs --length 200", summary)
    assert "X Exiting due to GUEST_STATUS" in (bundle / "minikube.log").read_text()
    assert "this command failed with exit status 1" in (bundle / "minikube.log").read_text()
    assert re.search(r"ok +nodes\.txt +kubectl --context minikube", summary)

    texts = bundle_texts(folder)
    assert {name for name in texts if not name.startswith("tar:")} == {
        "SUMMARY.txt", "failed-step.txt", "versions.txt", "nodes.txt", "pods.txt", "ray.txt", "events.txt",
        "operator.log", "head.log", "workers.log", "minikube.log"}
    assert texts["tar:diagnostics/pods.txt"] == texts["pods.txt"]
    for name, text in texts.items():
        for secret in SECRETS:
            assert secret not in text, f"{secret} leaked into {name}"


def test_first_run_masks_a_secret_in_the_failed_steps_own_output(world):
    stub_steps(world)
    result = world.script(SCRIPT, STUB_FAIL="run-rayjob.sh")
    assert result.returncode == 1
    assert world.calls()[:6] == STUB_CALLS[:6]
    assert world.calls()[6:] == BUNDLE_CALLS, "no step after the failed one"
    assert "Step 6/9, rayjob-smoke, failed (exit status 3): TARGET=minikube ./scripts/run-rayjob.sh --smoke-test" \
        in result.stderr
    folder = run_folder(world)
    failed = (folder / "diagnostics" / "failed-step.txt").read_text()
    assert "run-rayjob.sh: the job failed, RAY_AUTH_TOKEN=<masked>" in failed
    assert RAY_TOKEN not in failed
    assert table_rows(result.stdout)["rayjob-smoke"][1] == "FAILED (exit 3)"


def test_first_run_failing_before_any_cluster_still_writes_a_bundle_noting_what_could_not_run(world):
    world.remove_tool("kubectl")
    result = world.script(SCRIPT)
    assert result.returncode == 1
    assert "Step 1/9, preflight, failed (exit status 1): ./scripts/preflight.sh" in result.stderr
    folder = run_folder(world)
    summary = (folder / "diagnostics" / "SUMMARY.txt").read_text()
    assert re.search(r"FAILED \(exit 127\) +nodes\.txt +kubectl --context minikube", summary)
    assert re.search(r"FAILED \(exit 127\) +head\.log +kubectl", summary)
    assert re.search(r"ok +versions\.txt +helm version --short", summary)
    assert "'kubectl' is not installed" in (folder / "diagnostics" / "failed-step.txt").read_text()
    assert not any(call.startswith("minikube start") for call in world.calls())


def test_first_run_interrupted_stops_the_step_and_notes_it_without_a_bundle(world):
    stub_steps(world)
    process = subprocess.Popen(["./" + SCRIPT], cwd=world.root, text=True, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, preexec_fn=interruptible,
                               env=dict(world.env, STUB_SLEEP="install-ray.sh", STEP_GRACE="2"))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "install-ray.sh" not in (world.log.read_text() if world.log.exists() else ""):
        time.sleep(0.1)
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 143, stdout + stderr
    rows = table_rows(stdout)
    assert rows["install-ray"][1] == "interrupted (SIGTERM)"
    assert rows["benchmark-smoke"] == ("-", "not run")
    folder = run_folder(world)
    assert (folder / "FAILED").read_text().startswith("Interrupted by SIGTERM")
    assert not (folder / "diagnostics").exists()
    assert world.calls() == STUB_CALLS[:3]


# ----------------------------------------------------------------------------------
# settings and --help
# ----------------------------------------------------------------------------------

def test_first_run_help_lists_every_step_and_setting_and_calls_nothing(world):
    result = world.script(SCRIPT, "--help")
    assert result.returncode == 0, result.stderr
    for setting in ("RESULTS_DIR=results", "KEEP=0", "DELETE_CLUSTER=0", "DELETE_TIMEOUT=300", "LOG_LINES=200",
                    "MINIKUBE_PROFILE=minikube", "RAY_NAMESPACE=default", "RAY_CLUSTER_NAME=ray-training-cluster",
                    "OPERATOR_NAMESPACE=ray-system"):
        assert setting in result.stdout, setting
    for step in STEPS:
        assert re.search(rf"^  {step} ", result.stdout, re.M), step
    assert "TARGET=minikube ./scripts/run-rayjob.sh --smoke-test" in result.stdout
    assert world.calls() == []
    assert not (world.root / "results").exists()


def test_first_run_rejects_a_bad_setting_before_touching_anything(world):
    result = world.script(SCRIPT, KEEP="yes")
    assert result.returncode == 1
    assert "KEEP must be one of: 0 1; got 'yes'" in result.stderr
    result = world.script(SCRIPT, "--fast")
    assert result.returncode == 1 and "Unknown argument '--fast'" in result.stderr
    assert world.calls() == []
    assert not (world.root / "results").exists()


# ----------------------------------------------------------------------------------
# the masking step
# ----------------------------------------------------------------------------------

def mask(world: FakeWorld, text: str) -> str:
    result = subprocess.run(
        ["bash", "-c", "source scripts/lib/common.sh && source scripts/lib/diagnostics.sh && mask_secrets"],
        cwd=world.root, env=world.env, input=text, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_mask_secrets_hides_tokens_passwords_and_secret_data_and_keeps_everything_else(world):
    planted = (
        f"RAY_AUTH_MODE=token RAY_AUTH_TOKEN={RAY_TOKEN}\n"
        f"  auth_token: {RAY_TOKEN}\n"
        f'{{"kind":"Secret","data":{{"admin-password":"{GRAFANA_PASSWORD_BASE64}"}},"type":"Opaque"}}\n'
        "apiVersion: v1\n"
        "data:\n"
        f"  admin-password: {GRAFANA_PASSWORD_BASE64}\n"
        "  ca.crt: LS0tLS1CRUdJTi==\n"
        "kind: Secret\n"
        "metadata:\n"
        "  name: prometheus-grafana\n"
        "    env:\n"
        "    - name: GF_SECURITY_ADMIN_PASSWORD\n"
        f"      value: {GRAFANA_PASSWORD}\n"
        "    - name: RAY_AUTH_TOKEN\n"
        "      valueFrom:\n"
        "        secretKeyRef:\n"
        "          key: auth_token\n"
        f"GF_SECURITY_ADMIN_PASSWORD={GRAFANA_PASSWORD}; \"password\": \"{GRAFANA_PASSWORD}\", token='{RAY_TOKEN}'\n"
        f"Authorization: Bearer {RAY_TOKEN}\n"
        f'{{"secret":{{"name":"ray"}},"tokens":["{RAY_TOKEN}"],"password":"[{GRAFANA_PASSWORD} x]"}}\n'
        "ray-training-cluster-head-x7k2p   1/1   Running   0   5m\n")
    masked = mask(world, planted)
    for secret in SECRETS:
        assert secret not in masked
    assert masked.splitlines() == [
        "RAY_AUTH_MODE=token RAY_AUTH_TOKEN=<masked>",
        "  auth_token: <masked>",
        '{"kind":"Secret","data":{<masked>},"type":"Opaque"}',
        "apiVersion: v1",
        "data:",
        "  admin-password: <masked>",
        "  ca.crt: <masked>",
        "kind: Secret",
        "metadata:",
        "  name: prometheus-grafana",
        "    env:",
        "    - name: GF_SECURITY_ADMIN_PASSWORD",
        "      value: <masked>",
        "    - name: RAY_AUTH_TOKEN",
        "      valueFrom:",
        "        secretKeyRef:",
        "          key: auth_token",
        "GF_SECURITY_ADMIN_PASSWORD=<masked>; \"password\": \"<masked>\", token='<masked>'",
        "Authorization: Bearer <masked>",
        '{"secret":{"name":"ray"},"tokens":<masked>,"password":"<masked>"}',
        "ray-training-cluster-head-x7k2p   1/1   Running   0   5m",
    ]
