"""Tests of scripts/install-monitoring.sh with fake kubectl and helm (tests/fakes/fake-tool.sh).

The fake world, its rules and its call log are those of tests/test_k8s_scripts.py. Each test
asserts on the exact calls and messages; none reaches a cluster, Helm's repositories or the
network. The dashboards in the fake head pod are a few bytes of JSON made here, not Ray's.
"""

import json
import tarfile

import pytest

from test_k8s_scripts import HEAD_POD_QUERY, FakeWorld, system_bin, world  # noqa: F401 (fixtures)

HEAD = "ray-training-cluster-head-x7k2p"
REPO_URL = "https://prometheus-community.github.io/helm-charts"
GRAFANA_HOST = "http://prometheus-grafana.prometheus-system.svc:80"
DASHBOARDS_DIR = "/tmp/ray/session_latest/metrics/grafana/dashboards"
CRDS = ("alertmanagerconfigs alertmanagers podmonitors probes prometheusagents prometheuses "
        "prometheusrules scrapeconfigs servicemonitors thanosrulers").split()
LABEL = "app.kubernetes.io/part-of=ray-parallel-training-demo"


def dashboards_tar(world: FakeWorld, names=("default_grafana_dashboard.json", "train_grafana_dashboard.json")):
    """A tar stream of the head pod's dashboards folder, as `tar -C DIR -cf - .` writes it."""
    source = world.root.parent / f"pod-dashboards-{len(names)}"
    source.mkdir(exist_ok=True)
    for name in names:
        (source / name).write_text(json.dumps({"uid": name[:-5], "title": name, "panels": []}))
    archive = world.root.parent / f"pod-dashboards-{len(names)}.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(source, arcname=".")
    return archive


def monitoring_rules(world: FakeWorld, grafana_host=GRAFANA_HOST, crd_owner=None):
    """A cluster with a running Ray head and no monitoring yet; Helm answers every call."""
    world.rule("kubectl", "config current-context", output="minikube")
    world.rule("kubectl", "*--field-selector status.phase=Running*", output=HEAD)
    world.rule("kubectl", "*exec * -- printenv RAY_GRAFANA_HOST", output=grafana_host)
    world.rule("kubectl", f"*exec * -- tar -C {DASHBOARDS_DIR} -cf - .", output=f"@{dashboards_tar(world)}")
    if crd_owner is None:
        world.rule("kubectl", "*get crd prometheuses.monitoring.coreos.com*", code=1,
                   output='Error from server (NotFound): customresourcedefinitions "prometheuses.monitoring.coreos.com" not found')
    else:
        world.rule("kubectl", "*get crd prometheuses.monitoring.coreos.com*", output=crd_owner)


PREPARE_CALLS = [
    "kubectl config current-context",
    "kubectl config current-context",
    "kubectl --context minikube --request-timeout=10s get nodes",
    HEAD_POD_QUERY.format(flags="--context minikube"),
    f"kubectl --context minikube --namespace default exec {HEAD} -c ray-head -- printenv RAY_GRAFANA_HOST",
    f"kubectl --context minikube --namespace default exec {HEAD} -c ray-head -- tar -C {DASHBOARDS_DIR} -cf - .",
]
CRD_QUERY = ("kubectl --context minikube get crd prometheuses.monitoring.coreos.com "
             "--output jsonpath={.metadata.labels.app\\.kubernetes\\.io/part-of}")
HELM_INSTALL = (f"helm upgrade --install prometheus kube-prometheus-stack --repo {REPO_URL} --version 88.5.3 "
                "--namespace prometheus-system --create-namespace --kube-context minikube "
                "--values <repo>/k8s/kube-prometheus-stack-values.yaml --wait --timeout 600s")
LABEL_CRDS = ("kubectl --context minikube label crd "
              + " ".join(f"{crd}.monitoring.coreos.com" for crd in CRDS) + f" {LABEL} --overwrite")
WAIT_PROMETHEUS = ("kubectl --context minikube --namespace prometheus-system wait --for=condition=Available "
                   "prometheuses.monitoring.coreos.com/prometheus-kube-prometheus-prometheus --timeout=600s")
APPLY_MONITORS = "kubectl --context minikube --namespace default apply --filename <repo>/k8s/ray-monitors.yaml"


def configmap_calls(name, file_name, path):
    """The three kubectl calls of one dashboard's ConfigMap (a pipeline: any order in the log)."""
    return [
        f"kubectl --context minikube --namespace prometheus-system create configmap {name} "
        f"--from-file={file_name}={path} --dry-run=client --output yaml",
        f"kubectl --context minikube label --local --filename - grafana_dashboard=1 {LABEL} --output yaml",
        "kubectl --context minikube --namespace prometheus-system apply --server-side --force-conflicts "
        "--field-manager install-monitoring --filename -",
    ]


def test_install_monitoring_installs_the_pinned_chart_monitors_and_every_dashboard_in_order(world):
    monitoring_rules(world)
    result = world.script("scripts/install-monitoring.sh")
    assert result.returncode == 0, result.stderr
    calls = world.calls()
    fixed = PREPARE_CALLS + [CRD_QUERY, HELM_INSTALL, LABEL_CRDS, WAIT_PROMETHEUS, APPLY_MONITORS]
    assert calls[:len(fixed)] == fixed
    work_dir = next(call for call in calls if "create configmap" in call).split("=", 2)[2].split("/dashboards/")[0]
    expected = (configmap_calls("grafana-dashboard-default", "default_grafana_dashboard.json",
                                f"{work_dir}/dashboards/default_grafana_dashboard.json")
                + configmap_calls("grafana-dashboard-train", "train_grafana_dashboard.json",
                                  f"{work_dir}/dashboards/train_grafana_dashboard.json")
                + configmap_calls("grafana-dashboard-data-parallel-training", "data_parallel_training.json",
                                  "<repo>/monitoring/grafana/data_parallel_training.json"))
    assert sorted(calls[len(fixed):]) == sorted(expected)
    assert "Copied 2 Grafana dashboards of Ray from ray-training-cluster-head-x7k2p" in result.stdout
    assert ("ConfigMaps in namespace 'prometheus-system'): grafana-dashboard-default grafana-dashboard-train "
            "grafana-dashboard-data-parallel-training\n") in result.stdout
    assert "./scripts/open-dashboard.sh" in result.stdout
    assert result.stderr == ""
    assert not list(world.root.parent.glob("ray-dashboards.*")), "the copied dashboards are removed"


def test_install_monitoring_installs_the_chart_from_its_url_when_helm_has_no_repository_configured(world):
    # The fake's first matching rule wins: any `helm repo list` or `helm search repo` would fail.
    world.rule("helm", "repo list*", code=1, output="Error: no repositories to show")
    world.rule("helm", "search repo *", code=1, output="Error: no repositories configured")
    world.rule("helm", "repo update*", code=1, output="Error: no repositories found. You must add one before updating")
    monitoring_rules(world)
    result = world.script("scripts/install-monitoring.sh")
    assert result.returncode == 0, result.stderr
    calls = world.calls()
    assert calls[:len(PREPARE_CALLS) + 2] == PREPARE_CALLS + [CRD_QUERY, HELM_INSTALL]
    assert [call for call in calls if call.startswith("helm")] == [HELM_INSTALL]
    assert result.stderr == ""


def test_install_monitoring_says_the_chart_version_may_not_exist_when_helm_cannot_install_it(world):
    world.rule("helm", "upgrade --install *", code=1,
               output=f'Error: chart "kube-prometheus-stack" version "99.0.0" not found in {REPO_URL} repository')
    monitoring_rules(world)
    result = world.script("scripts/install-monitoring.sh", MONITORING_CHART_VERSION="99.0.0")
    assert result.returncode == 1
    assert HELM_INSTALL.replace("88.5.3", "99.0.0") in world.calls()
    assert f'version "99.0.0" not found in {REPO_URL} repository' in result.stderr, "Helm's own error is shown"
    assert ("Helm could not install kube-prometheus-stack 99.0.0 (Helm's error and the state of its pods are above). "
            "No pods: the chart could not be downloaded (check your network), or the version 99.0.0 may not exist. "
            f"Check it: helm show chart kube-prometheus-stack --repo {REPO_URL} --version 99.0.0   "
            f"(to list the versions: helm repo add prometheus-community {REPO_URL}; "
            "helm search repo prometheus-community/kube-prometheus-stack --versions)   "
            "and set MONITORING_CHART_VERSION to one that exists") in result.stderr


def test_install_monitoring_needs_a_running_ray_head_and_says_to_install_ray_first(world):
    world.rule("kubectl", "*--field-selector status.phase=Running*", output="")
    monitoring_rules(world)
    result = world.script("scripts/install-monitoring.sh")
    assert result.returncode == 1
    assert ("No running Ray head pod of RayCluster 'ray-training-cluster' in namespace 'default'. "
            "Ray writes its Grafana dashboards there") in result.stderr
    assert "run ./scripts/install-ray.sh first, then this script" in result.stderr
    assert world.calls() == PREPARE_CALLS[:4]


def test_install_monitoring_warns_that_a_head_started_without_ray_grafana_host_needs_install_ray(world):
    monitoring_rules(world, grafana_host="")
    result = world.script("scripts/install-monitoring.sh")
    assert result.returncode == 0, result.stderr
    assert f"The Ray head runs without RAY_GRAFANA_HOST={GRAFANA_HOST}" in result.stderr
    assert "KubeRay then deletes every Ray pod and creates it anew" in result.stderr
    assert "restart the Ray pods with k8s/ray-cluster.yaml's settings first: ./scripts/install-ray.sh" in result.stdout


def test_install_monitoring_stops_with_kubectls_reason_when_the_dashboards_cannot_be_copied(world):
    world.rule("kubectl", "*exec * -- tar *", code=1, output='error: unable to upgrade connection: container not found ("ray-head")')
    monitoring_rules(world)
    result = world.script("scripts/install-monitoring.sh")
    assert result.returncode == 1
    assert (f"Could not copy Ray's Grafana dashboards out of the head pod {HEAD} ({DASHBOARDS_DIR}): "
            'error: unable to upgrade connection: container not found ("ray-head")') in result.stderr
    assert f"kubectl --context minikube -n default logs {HEAD}" in result.stderr
    assert not any(call.startswith("helm") for call in world.calls())


def test_install_monitoring_stops_when_the_head_pod_has_no_dashboards(world):
    empty = dashboards_tar(world, names=())
    world.rule("kubectl", "*exec * -- tar *", output=f"@{empty}")
    monitoring_rules(world)
    result = world.script("scripts/install-monitoring.sh")
    assert result.returncode == 1
    assert f"The head pod {HEAD} has no Grafana dashboards in {DASHBOARDS_DIR}" in result.stderr
    assert not any(call.startswith("helm") for call in world.calls())


def test_install_monitoring_leaves_crds_of_another_installation_unlabelled(world):
    monitoring_rules(world, crd_owner="")
    result = world.script("scripts/install-monitoring.sh")
    assert result.returncode == 0, result.stderr
    assert "already has the Prometheus Operator's CRDs" in result.stderr and "cleanup.sh will leave them" in result.stderr
    assert not any(" label crd " in call for call in world.calls())


def test_install_monitoring_rerun_keeps_the_labels_of_the_crds_it_installed(world):
    monitoring_rules(world, crd_owner="ray-parallel-training-demo")
    result = world.script("scripts/install-monitoring.sh")
    assert result.returncode == 0, result.stderr
    assert LABEL_CRDS in world.calls()
    assert "another installation" not in result.stderr


def test_install_monitoring_explains_the_pods_when_helm_fails(world):
    world.rule("helm", "upgrade --install *", code=1, output="Error: context deadline exceeded")
    world.rule("kubectl", "*get pods --selector app.kubernetes.io/instance --output jsonpath=*",
               output="prometheus-grafana-5d8f7|Pending| | |Unschedulable|0/2 nodes are available: 2 Insufficient memory.|False")
    monitoring_rules(world)
    result = world.script("scripts/install-monitoring.sh")
    assert result.returncode == 1
    assert "Pod prometheus-grafana-5d8f7: Pending" in result.stderr
    assert "0/2 nodes are available: 2 Insufficient memory." in result.stderr
    assert "Helm could not install kube-prometheus-stack 88.5.3" in result.stderr
    assert "stopped while installing the kube-prometheus-stack chart" in result.stderr
    assert "./scripts/cleanup.sh" in result.stderr


def test_install_monitoring_explains_the_pods_when_prometheus_never_becomes_available(world):
    world.rule("kubectl", "*wait --for=condition=Available*", code=1,
               output="error: timed out waiting for the condition")
    monitoring_rules(world)
    result = world.script("scripts/install-monitoring.sh", POD_READY_TIMEOUT=5)
    assert result.returncode == 1
    assert "Prometheus was not available within 5s" in result.stderr
    assert "logs deployment/prometheus-kube-prometheus-operator" in result.stderr
    assert world.calls()[-1] == ("kubectl --context minikube --namespace prometheus-system get events "
                                 "--sort-by=.lastTimestamp")


def test_install_monitoring_stops_when_the_monitors_cannot_be_applied(world):
    world.rule("kubectl", "*apply --filename *ray-monitors.yaml", code=1,
               output='error: resource mapping not found for name: "ray-head-monitor"')
    monitoring_rules(world)
    result = world.script("scripts/install-monitoring.sh")
    assert result.returncode == 1
    assert "kubectl apply of k8s/ray-monitors.yaml failed" in result.stderr
    assert "kubectl get crd podmonitors.monitoring.coreos.com" in result.stderr


def test_install_monitoring_refuses_a_namespace_that_ray_cluster_yaml_does_not_point_at(world):
    monitoring_rules(world)
    result = world.script("scripts/install-monitoring.sh", MONITORING_NAMESPACE="monitoring")
    assert result.returncode == 1
    assert "MONITORING_NAMESPACE is 'monitoring', but RAY_GRAFANA_HOST in k8s/ray-cluster.yaml names another" in result.stderr
    assert world.calls() == PREPARE_CALLS[:2]


def test_install_monitoring_refuses_a_kube_context_that_is_not_the_minikube_profile(world):
    world.rule("kubectl", "config current-context", output="prod-cluster")
    result = world.script("scripts/install-monitoring.sh")
    assert result.returncode == 1
    assert "current context is 'prod-cluster', not the minikube profile 'minikube'" in result.stderr
    assert world.calls() == ["kubectl config current-context"]


@pytest.mark.parametrize("tool, where", [("helm", "https://helm.sh/docs/intro/install/"),
                                         ("kubectl", "https://kubernetes.io/docs/tasks/tools/")])
def test_install_monitoring_names_a_missing_tool_and_where_to_get_it(world, tool, where):
    world.remove_tool(tool)
    result = world.script("scripts/install-monitoring.sh")
    assert result.returncode == 1
    assert f"'{tool}' is not installed or not on PATH. Install it: {where}" in result.stderr
    assert world.calls() == []


def test_install_monitoring_fails_with_clear_message_when_the_cluster_does_not_answer(world):
    world.rule("kubectl", "config current-context", output="minikube")
    world.rule("kubectl", "*get nodes", code=1, output="The connection to the server was refused")
    result = world.script("scripts/install-monitoring.sh")
    assert result.returncode == 1
    assert "Cannot reach the cluster of context 'minikube'" in result.stderr
    assert not any(call.startswith("helm") for call in world.calls())


def test_install_monitoring_help_prints_usage_and_calls_nothing(world):
    result = world.script("scripts/install-monitoring.sh", "--help")
    assert result.returncode == 0
    assert "MONITORING_CHART_VERSION=88.5.3" in result.stdout
    assert "Helm fetches the chart straight from" in result.stdout
    assert f"{REPO_URL} (no 'helm repo add')" in result.stdout
    assert world.calls() == []
