"""The scripts' kubectl commands run through a real kubectl, against objects shaped like KubeRay's.

tests/test_k8s_scripts.py checks, with a fake kubectl, which commands the scripts send. Here
a real kubectl runs them: it parses every flag, sends the requests, and evaluates each
jsonpath, --sort-by, --output name and --dry-run=client itself, against a Kubernetes API server
on 127.0.0.1 (tests/kube_api.py) that holds objects as KubeRay v1.7.0 makes them (the labels of
ray-operator/controllers/ray/common/pod.go labelPod, the token Secret of raycluster_controller.go
createAuthSecret, the RayJob status of apis/ray/v1/rayjob_types.go). What reaches the scripts is
kubectl's real output, so their parsing of it is tested too. The functions run as the scripts
define them (sourced from scripts/, or a whole script), and the messages' suggested commands are
read from the scripts' text. test_every_kubectl_query_of_the_scripts_is_run_here finds each
jsonpath, selector and dry-run in scripts/ and docker/ and fails on one no test here runs.

kubectl: KUBECTL=/path, else the one on PATH (.ci/run installs Debian's kubernetes-client, a
v1.20 kubectl, where none is installed). Without one, every test here is skipped with that reason.
"""

import base64
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from kube_api import FakeKubeAPI, label_matches
from test_k8s_scripts import FakeWorld, system_bin  # noqa: F401 (system_bin is a fixture)

REPO_ROOT = Path(__file__).resolve().parent.parent
KUBECTL = os.environ.get("KUBECTL") or shutil.which("kubectl")
CLUSTER = "ray-training-cluster"
DEMO_LABEL = {"app.kubernetes.io/part-of": "ray-parallel-training-demo"}

pytestmark = pytest.mark.skipif(
    KUBECTL is None, reason="no kubectl binary: install Debian's kubernetes-client (.ci/run does) or set KUBECTL")


class RealKubectl:
    """A FakeWorld whose kubectl is the real one (each call logged), pointed at a FakeKubeAPI."""

    def __init__(self, world, api):
        self.world, self.api = world, api
        world.remove_tool("kubectl")
        wrapper = world.bin / "kubectl"
        wrapper.write_text("#!/usr/bin/env bash\n"
                           "printf 'kubectl %s\\n' \"${*//$'\\n'/\\\\n}\" >>\"$FAKE_LOG\"\n"
                           f'exec "{KUBECTL}" "$@"\n')
        wrapper.chmod(0o755)
        world.env["KUBECONFIG"] = str(api.kubeconfig(world.root.parent / "kubeconfig"))

    def bash(self, *lines, **settings):
        """Run bash lines in the temporary repo, with the scripts' libraries at hand."""
        return self.world.run("\n".join(lines), **settings)

    def ran(self, *needles):
        """Fail unless some kubectl call of this test held each needle (the script's query ran)."""
        calls = self.world.tool_calls("kubectl")
        for needle in needles:
            assert any(needle in call for call in calls), f"no kubectl call held {needle!r}: {calls}"


@pytest.fixture
def kube(tmp_path, system_bin):  # noqa: F811 (the fixture imported above)
    api = FakeKubeAPI()
    yield RealKubectl(FakeWorld(tmp_path, system_bin), api)
    api.stop()


def functions_of(world, script):
    """A copy of SCRIPT without its closing `main "$@"`, to source its functions from."""
    text = (world.root / script).read_text()
    assert text.rstrip().endswith('main "$@"'), script
    copy = world.root / script.replace(".sh", ".functions.sh")
    copy.write_text(text.rstrip()[: -len('main "$@"')])
    return copy.relative_to(world.root)


def ray_pod(name, node_type, cluster=CLUSTER, phase="Running", ready=True, ip="10.244.1.5", owner=None, **status):
    """A Ray pod as KubeRay 1.7.0 labels it (common/pod.go labelPod), with its status."""
    labels = {"ray.io/is-ray-node": "yes", "ray.io/cluster": cluster, "ray.io/node-type": node_type,
              "ray.io/group": "headgroup" if node_type == "head" else "workers",
              "ray.io/identifier": f"{cluster}-{node_type}", "app.kubernetes.io/name": "kuberay",
              "app.kubernetes.io/created-by": "kuberay-operator"}
    container = "ray-head" if node_type == "head" else "ray-worker"
    conditions = [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": str(ready)}]
    metadata = {"name": name, "labels": labels}
    if owner:
        metadata["ownerReferences"] = [{"apiVersion": "ray.io/v1", "kind": "RayCluster", "name": cluster,
                                        "uid": owner["metadata"]["uid"], "controller": True}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata,
            "spec": {"containers": [{"name": container, "image": "ray-training-demo:ray2.60.0-py311"}]},
            "status": {"phase": phase, "podIP": ip, "conditions": conditions,
                       "containerStatuses": [{"name": container, "ready": ready, "state": {"running": {}}}],
                       **status}}


def crd(name, labels=None):
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": name, "labels": labels or {}}}


def secret(name, namespace, **data):
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
            "data": {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}}


def manifest(path):
    return yaml.safe_load((REPO_ROOT / path).read_text())


# ------------------------------------------------------------------ install-ray.sh

def test_install_ray_creates_the_namespace_applies_the_cluster_and_counts_kuberays_ready_pods(kube):
    for index, node_type in enumerate(["head", "worker", "worker"]):
        pod = ray_pod(f"{CLUSTER}-{node_type}-{index}", node_type)
        pod["metadata"]["namespace"] = "ray-demo"
        kube.api.put(pod)
    kube.api.put({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "minikube"}})
    result = kube.world.script("scripts/install-ray.sh", SKIP_IMAGE_BUILD=1, RAY_NAMESPACE="ray-demo",
                               POLL_INTERVAL=1)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Ray is up: head Ready, 2/2 workers Ready." in result.stdout
    assert kube.api.get("Namespace", "ray-demo")["metadata"]["name"] == "ray-demo"
    cluster = kube.api.get("RayCluster", CLUSTER, "ray-demo")
    assert cluster["spec"] == manifest("k8s/ray-cluster.yaml")["spec"], "the manifest, as kubectl sent it"
    kube.ran("create namespace ray-demo --dry-run=client --output yaml", "jsonpath={.spec.workerGroupSpecs[0].replicas}",
             f"--selector ray.io/cluster={CLUSTER},ray.io/node-type=worker")


def test_the_wait_for_pods_names_what_each_pod_that_is_not_ready_waits_for(kube):
    oom = ray_pod("w-oom", "worker", ready=False)
    oom["status"]["containerStatuses"][0]["lastState"] = {"terminated": {"reason": "OOMKilled", "exitCode": 137}}
    image = ray_pod("w-image", "worker", phase="Pending", ready=False)
    image["status"]["containerStatuses"][0]["state"] = {"waiting": {"reason": "ErrImageNeverPull"}}
    pending = ray_pod("w-pending", "worker", phase="Pending", ready=False)
    pending["status"]["conditions"][0] = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                          "message": "0/2 nodes are available: 2 Insufficient memory."}
    for pod in (ray_pod("h", "head"), oom, image, pending, ray_pod("other", "worker", cluster="another")):
        kube.api.put(pod)
    for name, time in (("late", "2026-01-01T00:00:09Z"), ("early", "2026-01-01T00:00:01Z")):
        kube.api.put({"apiVersion": "v1", "kind": "Event", "metadata": {"name": name}, "lastTimestamp": time,
                      "involvedObject": {"kind": "Pod", "name": "w-pending"}, "reason": "FailedScheduling"})
    result = kube.bash("source scripts/lib/common.sh && source scripts/lib/k8s.sh && load_k8s_settings",
                       f"explain_pods minikube default ray.io/cluster={CLUSTER}")
    lines = result.stderr.splitlines()
    assert "Pod w-oom: Running (OOMKilled)" in lines
    assert "Pod w-image: Pending (ErrImageNeverPull)" in lines
    assert "Pod w-pending: Pending" in lines
    assert "  -> Pending, not scheduled: 0/2 nodes are available: 2 Insufficient memory. Lower 'replicas'" \
           in result.stderr
    assert not any(line.startswith(("Pod h:", "Pod other:")) for line in lines), "Ready, or another cluster's"
    events = result.stderr.split("recent events")[1]
    assert events.index("early") < events.index("late"), "--sort-by=.lastTimestamp: the newest last"
    kube.ran('{.status.conditions[?(@.type=="PodScheduled")].message}', "--sort-by=.lastTimestamp")


def test_the_head_pod_is_the_running_head_of_our_cluster_and_nothing_when_none_runs(kube):
    for pod in (ray_pod("ours-head", "head"), ray_pod("ours-worker", "worker"),
                ray_pod("theirs-head", "head", cluster="another"),
                ray_pod("new-head", "head", phase="Pending", ready=False)):
        kube.api.put(pod)
    source = "source scripts/lib/common.sh && source scripts/lib/k8s.sh && load_k8s_settings"
    found = kube.bash(source, "ray_head_pod --context minikube --request-timeout=5s")
    assert (found.returncode, found.stdout) == (0, "ours-head")
    kube.api.delete(("", "pods", "default", "ours-head"))
    none = kube.bash(source, "ray_head_pod --context minikube")
    assert (none.returncode, none.stdout, none.stderr) == (0, "", ""), "kubectl's index error stays hidden"
    kube.ran("--field-selector status.phase=Running --output jsonpath={.items[0].metadata.name}")


def test_a_changed_spec_is_followed_by_generation_and_a_terminating_pod_is_not_live(kube):
    cluster = {"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": CLUSTER, "generation": 3},
               "spec": {}, "status": {"observedGeneration": 3}}
    going = ray_pod("old-worker", "worker")
    going["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:05Z"
    for obj in (cluster, going, ray_pod("new-head", "head"), ray_pod("new-worker", "worker")):
        kube.api.put(obj)
    source = ("source scripts/lib/common.sh && source scripts/lib/k8s.sh && source scripts/lib/raycluster.sh && "
              f"load_k8s_settings && KUBE_CONTEXT=minikube POLL_INTERVAL=1 POD_READY_TIMEOUT=10")
    live = kube.bash(source, "raycluster_generations; echo; live_ray_pods")
    assert live.stdout.splitlines() == ["3 3", "new-head", "new-worker"]
    # The old head is gone: KubeRay recreated the pods; the old ones left are waited for by name.
    followed = kube.bash(source, 'follow_spec_change old-head "old-head"; echo "RECREATED=$RECREATED"')
    assert followed.returncode == 0, followed.stderr
    assert "RECREATED=1" in followed.stdout and "KubeRay is deleting every Ray pod" in followed.stdout
    kube.ran("jsonpath={.metadata.generation} {.status.observedGeneration}", "wait --for=delete pod/old-head")


def test_the_checkpoint_stores_selector_finds_the_pod_its_deployment_makes(kube):
    text = (REPO_ROOT / "scripts" / "install-ray.sh").read_text()
    selector = re.search(r'explain_pods "\$KUBE_CONTEXT" "\$RAY_NAMESPACE" (app\.kubernetes\.io/\S+)$', text, re.M).group(1)
    deployment = next(doc for doc in yaml.safe_load_all((REPO_ROOT / "k8s" / "checkpoint-storage.yaml").read_text())
                      if doc and doc["kind"] == "Deployment")
    template = deployment["spec"]["template"]
    kube.api.put({"apiVersion": "v1", "kind": "Pod", "spec": template["spec"],
                  "metadata": {"name": "ray-checkpoint-storage-abc12", "labels": template["metadata"]["labels"]},
                  "status": {"phase": "Pending", "containerStatuses": [
                      {"name": "minio", "state": {"waiting": {"reason": "ImagePullBackOff"}}}]}})
    result = kube.bash("source scripts/lib/common.sh && source scripts/lib/k8s.sh && load_k8s_settings",
                       f"explain_pods minikube default {selector}")
    assert "Pod ray-checkpoint-storage-abc12: Pending (ImagePullBackOff)" in result.stderr, result.stderr
    assert "ImagePullBackOff: Kubernetes could not download the pod's image" in result.stderr
    kube.ran(f"get pods --selector {selector}")


# ------------------------------------------------------------------ the Minikube target and the RayJob

def test_the_chaos_victim_is_the_worker_pod_with_the_ray_nodes_ip(kube):
    for pod in (ray_pod("h", "head", ip="10.244.0.9"), ray_pod("w1", "worker", ip="10.244.1.5"),
                ray_pod("w2", "worker", ip="10.244.1.6")):
        kube.api.put(pod)
    source = ("source scripts/lib/common.sh && source scripts/lib/venv.sh && source scripts/lib/recipe.sh && "
              "source scripts/lib/targets.sh && source_target minikube && KUBE_CONTEXT=minikube")
    found = kube.bash(source, 'target_python() { echo "$IP"; }', "target_chaos_victim 0123456789ab",
                      'echo "$CHAOS_VICTIM"', IP="10.244.1.6")
    assert found.stdout.splitlines()[-1] == "w2", found.stderr
    head = kube.bash(source, 'target_python() { echo "$IP"; }', "target_chaos_victim 0123456789ab", IP="10.244.0.9")
    assert head.returncode == 1
    assert f"No worker pod of RayCluster '{CLUSTER}' has IP 10.244.0.9" in head.stderr
    kube.ran("--field-selector status.podIP=10.244.1.6")


def test_the_rayjob_status_is_read_field_by_field_from_kuberays_status(kube):
    kube.api.put({"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"name": "job"},
                  "status": {"jobDeploymentStatus": "Failed", "jobStatus": "FAILED",
                             "rayClusterName": "job-raycluster-x7k2p", "reason": "AppFailed",
                             "message": "Job failed: exit code 1, see the logs"}})
    result = kube.bash("source scripts/lib/common.sh && source scripts/lib/k8s.sh && source scripts/lib/rayjob.sh",
                       "KUBE_CONTEXT=minikube RAY_NAMESPACE=default JOB_NAME=job read_job_status",
                       'printf "%s\\n" "$JOB_DEPLOYMENT" "$JOB_STATUS" "$JOB_CLUSTER" "$JOB_REASON" "$JOB_MESSAGE"')
    assert result.stdout.splitlines() == ["Failed", "FAILED", "job-raycluster-x7k2p", "AppFailed",
                                          "Job failed: exit code 1, see the logs"], result.stderr
    kube.ran("jsonpath={.status.jobDeploymentStatus}|{.status.jobStatus}")


def test_the_rayjob_run_rayjob_renders_is_created_and_cleanup_deletes_the_demos_objects_alone(kube):
    rendered = kube.world.script("scripts/run-rayjob.sh", "--dry-run", "--smoke-test", NUM_WORKERS=2)
    assert rendered.returncode == 0, rendered.stderr
    (kube.world.root.parent / "rayjob.yaml").write_text(rendered.stdout)
    created = kube.bash("kubectl --context minikube --namespace default create --filename ../rayjob.yaml")
    assert created.returncode == 0, created.stderr
    job_name = yaml.safe_load(rendered.stdout)["metadata"]["name"]
    cluster = kube.api.put({"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": CLUSTER}})
    theirs = {"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"name": "theirs"}}
    objects = [crd(f"{plural}.ray.io") for plural in ("rayclusters", "rayjobs", "rayservices", "raycronjobs")]
    objects += [crd("podmonitors.monitoring.coreos.com", DEMO_LABEL), crd("certificates.cert-manager.io"),
                ray_pod("h", "head", owner=cluster), ray_pod("w", "worker", owner=cluster), theirs,
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
                    "name": "grafana-dashboard-ours", "namespace": "prometheus-system",
                    "labels": {"grafana_dashboard": "1", **DEMO_LABEL}}},
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
                    "name": "grafana-dashboard-theirs", "namespace": "prometheus-system",
                    "labels": {"grafana_dashboard": "1"}}}]
    objects += [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
                for name in ("default", "ray-system", "prometheus-system")]
    for path in ("k8s/ray-service.yaml", "k8s/checkpoint-storage.yaml", "k8s/ray-monitors.yaml"):
        objects += [doc for doc in yaml.safe_load_all((REPO_ROOT / path).read_text()) if doc]
    for obj in objects:
        kube.api.put(obj)
    result = kube.world.script("scripts/cleanup.sh")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stderr, "the pods went with their RayCluster"
    deleted = set(kube.api.deleted())
    assert {("RayJob", "default", job_name), ("RayCluster", "default", CLUSTER),
            ("ConfigMap", "prometheus-system", "grafana-dashboard-ours"),
            ("CustomResourceDefinition", "", "podmonitors.monitoring.coreos.com"),
            ("CustomResourceDefinition", "", "rayjobs.ray.io"), ("Namespace", "", "ray-system"),
            ("Service", "default", "ray-head-nodeport"), ("Deployment", "default", "ray-checkpoint-storage"),
            ("PodMonitor", "default", "ray-workers-monitor")} <= deleted
    assert kube.api.get("RayJob", "theirs") and kube.api.get("CustomResourceDefinition", "certificates.cert-manager.io")
    assert kube.api.get("ConfigMap", "grafana-dashboard-theirs", "prometheus-system")
    assert not kube.api.get("Pod", "h") and kube.api.get("Namespace", "default")
    kube.ran("delete rayjobs --selector app.kubernetes.io/part-of=ray-parallel-training-demo",
             "delete crd --selector app.kubernetes.io/part-of=ray-parallel-training-demo",
             f"wait --for=delete pod --selector ray.io/cluster={CLUSTER}", "config get-contexts --output name")


# ------------------------------------------------------------------ install-monitoring.sh and open-dashboard.sh

def test_install_monitoring_tells_its_crds_from_anothers_and_provisions_labelled_dashboards(kube):
    source = f"source {functions_of(kube.world, 'scripts/install-monitoring.sh')} && KUBE_CONTEXT=minikube"
    check = 'note_existing_crds 2>/dev/null; echo "FOREIGN_CRDS=$FOREIGN_CRDS"'
    assert kube.bash(source, check).stdout.strip() == "FOREIGN_CRDS=0", "no CRDs yet: the chart installs them"
    names = re.search(r"MONITORING_CRDS=\(([^)]*)\)", (REPO_ROOT / "scripts/lib/k8s.sh").read_text()).group(1).split()
    for name in names:
        kube.api.put(crd(name, {"app.kubernetes.io/managed-by": "Helm"}))
    labelled = kube.bash(source, "label_crds")
    assert labelled.returncode == 0 and "WARNING" not in labelled.stderr, labelled.stderr
    assert all(kube.api.get("CustomResourceDefinition", name)["metadata"]["labels"] ==
               {"app.kubernetes.io/managed-by": "Helm", **DEMO_LABEL} for name in names)
    assert kube.bash(source, check).stdout.strip() == "FOREIGN_CRDS=0", "ours, by the label"
    kube.api.put(crd("prometheuses.monitoring.coreos.com", {"app.kubernetes.io/part-of": "another-stack"}))
    assert kube.bash(source, check).stdout.strip() == "FOREIGN_CRDS=1"

    work = kube.world.root.parent / "work"
    (work / "dashboards").mkdir(parents=True)
    (work / "dashboards" / "default_grafana_dashboard.json").write_text('{"title": "Default"}')
    provisioned = kube.bash(source, f"WORK_DIR={work} provision_dashboards")
    assert provisioned.returncode == 0, provisioned.stderr
    ours = REPO_ROOT / "monitoring" / "grafana" / "data_parallel_training.json"
    for name, file, text in (("grafana-dashboard-default", "default_grafana_dashboard.json", '{"title": "Default"}'),
                             ("grafana-dashboard-data-parallel-training", ours.name, ours.read_text())):
        config_map = kube.api.get("ConfigMap", name, "prometheus-system")
        assert config_map["data"] == {file: text}
        assert config_map["metadata"]["labels"] == {"grafana_dashboard": "1", **DEMO_LABEL}
    applies = [request for request in kube.api.requests if request["method"] == "PATCH"
               and "/configmaps/" in request["path"]]
    assert len(applies) == 2 and all("apply-patch" in request["content_type"] for request in applies)
    kube.ran("--dry-run=client --output yaml", "label --local --filename - grafana_dashboard=1",
             r"jsonpath={.metadata.labels.app\.kubernetes\.io/part-of}")


def test_open_dashboard_finds_grafana_and_prometheus_and_reads_the_login_of_the_charts_secret(kube):
    for name in ("prometheus-grafana", "prometheus-kube-prometheus-prometheus"):
        kube.api.put({"apiVersion": "v1", "kind": "Service",
                      "metadata": {"name": name, "namespace": "prometheus-system"}})
    # The Grafana chart's Secret: <release>-grafana with admin-user and admin-password.
    kube.api.put(secret("prometheus-grafana", "prometheus-system", **{"admin-user": "admin",
                                                                       "admin-password": "s3cr3t pass"}))
    source = ("source scripts/lib/common.sh && source scripts/lib/k8s.sh && source scripts/lib/forwards.sh && "
              "load_k8s_settings && KUBE_CONTEXT=minikube GRAFANA_PORT=3000 PROMETHEUS_PORT=9090")
    result = kube.bash(source, 'add_monitoring_forwards; echo "FORWARDS=$MONITORING_FORWARDS"; print_grafana_login')
    assert "FORWARDS=1" in result.stdout, result.stdout + result.stderr
    assert "Grafana login: admin / s3cr3t pass" in result.stdout
    kube.api.delete(("", "services", "prometheus-system", "prometheus-kube-prometheus-prometheus"))
    alone = kube.bash(source, 'add_monitoring_forwards; echo "FORWARDS=$MONITORING_FORWARDS"')
    assert "FORWARDS=0" in alone.stdout and "are not installed" in alone.stdout
    kube.ran("get service prometheus-grafana prometheus-kube-prometheus-prometheus --output name",
             "--output jsonpath={.data.admin-password}")


# ------------------------------------------------------------------ what the messages tell a user to run

HINT = re.compile(r"kubectl [^'\"\n]*?(?:-l [^\s'\"]+|-o jsonpath='[^']*'(?: \| base64 --decode)?)")


def hints():
    """(file, command) of every kubectl command with a selector or a jsonpath in the scripts' text."""
    return [(str(path.relative_to(REPO_ROOT)), match.group(0))
            for folder in ("scripts", "docker") for path in sorted((REPO_ROOT / folder).rglob("*.sh"))
            for match in HINT.finditer(path.read_text())]


def test_every_command_the_messages_suggest_runs_and_finds_what_it_names(kube):
    cluster = kube.api.put({"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": CLUSTER}})
    token = secret(CLUSTER, "default", auth_token="the-token")  # raycluster_controller.go createAuthSecret
    token["metadata"]["labels"] = {"ray.io/cluster": CLUSTER}
    for obj in (token, secret("prometheus-grafana", "prometheus-system", **{"admin-password": "the-password"}),
                ray_pod("h", "head", owner=cluster), ray_pod("w1", "worker", owner=cluster),
                ray_pod("w2", "worker", owner=cluster), ray_pod("x", "worker", cluster="another")):
        kube.api.put(obj)
    kube.api.logs.update(h="head says hi", w1="worker one says hi", w2="worker two says hi", x="not ours")
    found = hints()
    assert len(found) >= 5, found
    settings = dict(KUBE_CONTEXT="minikube", RAY_NAMESPACE="default", MONITORING_NAMESPACE="prometheus-system",
                    GRAFANA_SERVICE="prometheus-grafana", RAY_CLUSTER_NAME=CLUSTER)
    for file, command in found:
        result = kube.bash(f"set -o pipefail; {command}", **settings)
        assert result.returncode == 0, (file, command, result.stderr)
        output = result.stdout
        expected = ({"the-token"} if "auth_token" in command else {"the-password"} if "admin-password" in command
                    else {"worker one says hi", "worker two says hi"} if " logs " in command
                    else {"h", "w1", "w2"})
        assert all(item in output for item in expected), (file, command, output)
        assert "not ours" not in output and not re.search(r"\bx\b", output), (file, command, output)


# ------------------------------------------------------------------ the diagnostics bundle

def test_the_diagnostics_bundle_holds_the_head_and_worker_logs_and_the_events_in_time_order(kube):
    for obj in (ray_pod("h", "head"), ray_pod("w1", "worker")):
        kube.api.put(obj)
    kube.api.logs.update(h="head line", w1="worker line")
    for name, namespace, time in (("late", "default", "2026-01-01T00:00:09Z"),
                                  ("early", "ray-system", "2026-01-01T00:00:01Z")):
        kube.api.put({"apiVersion": "v1", "kind": "Event", "lastTimestamp": time,
                      "metadata": {"name": name, "namespace": namespace}})
    bundle = kube.world.root.parent / "bundle"
    step_log = kube.world.root.parent / "step.log"
    step_log.write_text("it failed\n")
    result = kube.bash("source scripts/lib/common.sh && source scripts/lib/k8s.sh && source scripts/lib/diagnostics.sh",
                       f"load_k8s_settings && write_diagnostics {bundle} install-ray 1 ./scripts/install-ray.sh "
                       f"{step_log} 50")
    assert result.returncode == 0, result.stderr
    assert "[pod/h/ray-head] head line" in (bundle / "head.log").read_text()
    workers = (bundle / "workers.log").read_text()
    assert "[pod/w1/ray-worker] worker line" in workers and "head line" not in workers
    events = (bundle / "events.txt").read_text()
    assert "early" in events and events.index("early") < events.index("late"), events
    kube.ran("logs --selector ray.io/node-type=head --all-containers --prefix",
             "get events --all-namespaces --sort-by=.lastTimestamp")


# ------------------------------------------------------------------ every query of the scripts has a test here

QUERIES = {
    "jsonpath": r"jsonpath='?([^']*)'",
    "selector": r"(?:--selector[ =]|\s-l |explain_pods \S+ \S+ )(\"[^\"]*\"|[^\s'\"]+)",
    "field-selector": r"--field-selector[ =](\"[^\"]*\"|\S+)",
    "sort-by": r"--sort-by=(\S+)",
    "output name": r"(get [\w-]+) [^|]*--output name",
    "dry-run": r"(create \w+) [^|]*--dry-run=client",
    "local": r"(label --local)",
}
INSTALL_RAY = "test_install_ray_creates_the_namespace_applies_the_cluster_and_counts_kuberays_ready_pods"
NOT_READY = "test_the_wait_for_pods_names_what_each_pod_that_is_not_ready_waits_for"
HEAD = "test_the_head_pod_is_the_running_head_of_our_cluster_and_nothing_when_none_runs"
SPEC = "test_a_changed_spec_is_followed_by_generation_and_a_terminating_pod_is_not_live"
CHAOS = "test_the_chaos_victim_is_the_worker_pod_with_the_ray_nodes_ip"
RAYJOB = "test_the_rayjob_status_is_read_field_by_field_from_kuberays_status"
CLEANUP = "test_the_rayjob_run_rayjob_renders_is_created_and_cleanup_deletes_the_demos_objects_alone"
MONITORING = "test_install_monitoring_tells_its_crds_from_anothers_and_provisions_labelled_dashboards"
FORWARDS = "test_open_dashboard_finds_grafana_and_prometheus_and_reads_the_login_of_the_charts_secret"
HINTS = "test_every_command_the_messages_suggest_runs_and_finds_what_it_names"
DIAGNOSTICS = "test_the_diagnostics_bundle_holds_the_head_and_worker_logs_and_the_events_in_time_order"
CHARTS = "test_helm_charts.py: test_the_selectors_of_the_scripts_match_the_pods_the_charts_make"
# (file, kind, text as written in the script) -> the test that runs it through a real kubectl.
COVERED = {
    ("scripts/cleanup.sh", "selector", '"ray.io/cluster=$RAY_CLUSTER_NAME"'): CLEANUP,
    ("scripts/cleanup.sh", "selector", "app.kubernetes.io/part-of=ray-parallel-training-demo"): CLEANUP,
    ("scripts/cleanup.sh", "selector", '"$DEMO_LABEL"'): CLEANUP,
    ("scripts/install-monitoring.sh", "jsonpath", r"{.metadata.labels.app\.kubernetes\.io/part-of}"): MONITORING,
    ("scripts/install-monitoring.sh", "selector", "app.kubernetes.io/instance"): CHARTS,
    ("scripts/install-ray.sh", "jsonpath", "{.spec.workerGroupSpecs[0].replicas}"): INSTALL_RAY,
    ("scripts/install-ray.sh", "jsonpath",
     '{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\\n"}{end}'): INSTALL_RAY,
    ("scripts/install-ray.sh", "selector", '"ray.io/cluster=$RAY_CLUSTER_NAME"'): NOT_READY,
    ("scripts/install-ray.sh", "selector", '"ray.io/cluster=$RAY_CLUSTER_NAME,ray.io/node-type=$node_type"'):
        INSTALL_RAY,
    ("scripts/install-ray.sh", "selector", "app.kubernetes.io/name=ray-checkpoint-storage"):
        "test_the_checkpoint_stores_selector_finds_the_pod_its_deployment_makes",
    ("scripts/install-ray.sh", "selector", "app.kubernetes.io/name=kuberay-operator"): CHARTS,
    ("scripts/install-ray.sh", "dry-run", "create namespace"): INSTALL_RAY,
    ("scripts/lib/dashboards.sh", "dry-run", "create configmap"): MONITORING,
    ("scripts/lib/dashboards.sh", "local", "label --local"): MONITORING,
    ("scripts/lib/diagnostics.sh", "selector", "ray.io/node-type=head"): DIAGNOSTICS,
    ("scripts/lib/diagnostics.sh", "selector", "ray.io/node-type=worker"): DIAGNOSTICS,
    ("scripts/lib/diagnostics.sh", "sort-by", ".lastTimestamp"): DIAGNOSTICS,
    ("scripts/lib/forwards.sh", "jsonpath", "{.data.admin-password}"): FORWARDS,
    ("scripts/lib/forwards.sh", "jsonpath", "{.data.auth_token}"): HINTS,
    ("scripts/lib/forwards.sh", "selector", "ray.io/cluster=$RAY_CLUSTER_NAME"): HINTS,
    ("scripts/lib/forwards.sh", "output name", "get service"): FORWARDS,
    ("scripts/lib/k8s.sh", "jsonpath", "{.items[0].metadata.name}"): HEAD,
    ("scripts/lib/k8s.sh", "jsonpath", "".join((
        '{range .items[*]}{.metadata.name}{"|"}{.status.phase}{"|"}',
        '{.status.initContainerStatuses[*].state.waiting.reason}{" "}{.status.containerStatuses[*].state.waiting.reason}',
        '{"|"}{.status.initContainerStatuses[*].lastState.terminated.reason}{" "}',
        '{.status.containerStatuses[*].state.terminated.reason}{" "}',
        '{.status.containerStatuses[*].lastState.terminated.reason}{"|"}',
        '{.status.conditions[?(@.type=="PodScheduled")].reason}{"|"}',
        '{.status.conditions[?(@.type=="PodScheduled")].message}{"|"}',
        '{.status.conditions[?(@.type=="Ready")].status}{"\\n"}{end}'))): NOT_READY,
    ("scripts/lib/k8s.sh", "selector", '"ray.io/cluster=$RAY_CLUSTER_NAME,ray.io/node-type=head"'): HEAD,
    ("scripts/lib/k8s.sh", "selector", '"$selector"'): NOT_READY,
    ("scripts/lib/k8s.sh", "field-selector", "status.phase=Running"): HEAD,
    ("scripts/lib/k8s.sh", "sort-by", ".lastTimestamp"): NOT_READY,
    ("scripts/lib/raycluster.sh", "jsonpath", "{.metadata.generation} {.status.observedGeneration}"): SPEC,
    ("scripts/lib/raycluster.sh", "jsonpath",
     '{range .items[*]}{.metadata.name}{" "}{.metadata.deletionTimestamp}{"\\n"}{end}'): SPEC,
    ("scripts/lib/raycluster.sh", "selector", '"ray.io/cluster=$RAY_CLUSTER_NAME"'): SPEC,
    ("scripts/lib/rayjob.sh", "jsonpath",
     "{.status.jobDeploymentStatus}|{.status.jobStatus}|{.status.rayClusterName}|{.status.reason}|{.status.message}"):
        RAYJOB,
    ("scripts/lib/rayjob.sh", "selector", '"ray.io/cluster=$JOB_CLUSTER"'): NOT_READY,
    ("scripts/targets/minikube.sh", "jsonpath", "{.items[0].metadata.name}"): CHAOS,
    ("scripts/targets/minikube.sh", "selector", "ray.io/cluster=$RAY_CLUSTER_NAME"): HINTS,
    ("scripts/targets/minikube.sh", "selector", "ray.io/cluster=$RAY_CLUSTER_NAME,ray.io/node-type=worker"): HINTS,
    ("scripts/targets/minikube.sh", "selector", '"ray.io/cluster=$RAY_CLUSTER_NAME,ray.io/node-type=worker"'): CHAOS,
    ("scripts/targets/minikube.sh", "field-selector", '"status.podIP=$ip"'): CHAOS,
}


def scripts_queries():
    found = set()
    for path in sorted(path for folder in ("scripts", "docker") for path in (REPO_ROOT / folder).rglob("*.sh")):
        text = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
        for kind, pattern in QUERIES.items():
            found |= {(str(path.relative_to(REPO_ROOT)), kind, match.group(1)) for match in re.finditer(pattern, text)}
    return found


def test_every_kubectl_query_of_the_scripts_is_run_here():
    found = scripts_queries()
    untested = sorted(found - set(COVERED))
    assert not untested, ("a jsonpath, selector or dry-run in the scripts that no test runs through a real kubectl "
                          f"(add a test in tests/test_real_kubectl.py, and its line in COVERED): {untested}")
    assert not sorted(set(COVERED) - found), "COVERED names a query the scripts no longer hold"
    names = set(globals()) | {"test_helm_charts.py: test_the_selectors_of_the_scripts_match_the_pods_the_charts_make"}
    assert set(COVERED.values()) <= names


@pytest.mark.parametrize("selector, labels, selected", [
    ("a=1,b", {"a": "1", "b": ""}, True), ("a=1,b", {"a": "1"}, False), ("a!=1", {}, True),
    ("a in (1, 2),!c", {"a": "2"}, True), ("a notin (1,2)", {"a": "2"}, False), ("a==1", {"a": "2"}, False)])
def test_the_api_server_of_these_tests_selects_labels_as_kubernetes_does(selector, labels, selected):
    assert label_matches(labels, selector) is selected
