"""Static checks of the Minikube monitoring: no cluster, no Helm, no network. (Our Grafana
dashboard, which both targets provision, is checked in test_monitoring.py: its schema, and
every query against a real run's Prometheus.)

- k8s/kube-prometheus-stack-values.yaml: what is switched off, the resources (each
  container's resources and affinity validated with kubernetes-validate inside a Pod),
  the stated total; and, where the charts' source can be read, every key against the
  values.yaml of kube-prometheus-stack at the pinned version and of its Grafana subchart.
- k8s/ray-monitors.yaml: strictly against the PodMonitor CRD of the pinned chart version,
  read like KubeRay's CRDs in tests/test_kuberay_crds.py (skipped, with the reason, where
  the chart's source cannot be read):
    KUBE_PROMETHEUS_STACK_CRD_DIR=/path  a folder holding crd-podmonitors.yaml (the chart's
                                         charts/crds/crds at that version);
    KUBE_PROMETHEUS_STACK_REPO=/path     a clone of prometheus-community/helm-charts: read
                                         at the tag kube-prometheus-stack-<version> with
                                         `git show`; GRAFANA_CHARTS_REPO likewise, a clone of
                                         grafana-community/helm-charts, for the subchart.
- The Ray head's RAY_GRAFANA_HOST / RAY_PROMETHEUS_HOST against the names the chart gives
  its Services (its _helpers.tpl naming rule), and the metrics port the monitors scrape.
"""

import copy
import json
import os
import re
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from test_k8s_manifests import container, cpu, gib, monitoring_containers
from test_kuberay_crds import cel_rule_paths, errors, has_path, strict

REPO_ROOT = Path(__file__).resolve().parent.parent
VALUES_FILE = REPO_ROOT / "k8s" / "kube-prometheus-stack-values.yaml"
MONITORS_FILE = REPO_ROOT / "k8s" / "ray-monitors.yaml"
CLUSTER_FILE = REPO_ROOT / "k8s" / "ray-cluster.yaml"
CHARTS_MIRROR = Path("/work/.mirror/prometheus-community+helm-charts/repo")
GRAFANA_MIRROR = Path("/work/.mirror/grafana-community+helm-charts/repo")
CHART_DIR = "charts/kube-prometheus-stack"


def script_default(path, name):
    match = re.search(rf'{name}="\$\{{{name}:-([^}}]+)\}}"', (REPO_ROOT / path).read_text())
    assert match, f"no default for {name} in {path}"
    return match.group(1)


def lib_setting(name):
    """A value scripts/lib/k8s.sh sets in load_k8s_settings (a default or a fixed name)."""
    text = (REPO_ROOT / "scripts" / "lib" / "k8s.sh").read_text()
    match = re.search(rf'(?:: "\$\{{{name}:=([^}}]+)\}}"|\b{name}=([\w.-]+))', text)
    assert match, f"lib/k8s.sh sets no {name}"
    return match.group(1) or match.group(2)


def lib_array(name):
    text = (REPO_ROOT / "scripts" / "lib" / "k8s.sh").read_text()
    return re.search(rf"\b{name}=\(([^)]*)\)", text).group(1).split()


CHART_VERSION = script_default("scripts/install-monitoring.sh", "MONITORING_CHART_VERSION")


def chart_file(path, repo_env="KUBE_PROMETHEUS_STACK_REPO", mirror=CHARTS_MIRROR,
               tag=f"kube-prometheus-stack-{CHART_VERSION}"):
    """(text, where) of a file of a charts repository at a tag, or (None, why not)."""
    repo = Path(os.environ.get(repo_env, mirror))
    if not repo.exists():
        return None, f"no clone of the chart's repository here: set {repo_env} to one"
    shown = subprocess.run(["git", "-C", str(repo), "show", f"{tag}:{path}"], capture_output=True, text=True)
    if shown.returncode != 0:
        return None, f"git show {tag}:{path} failed in {repo}: {shown.stderr.strip()}"
    return shown.stdout, f"{repo} {tag}:{path}"


# ---------------------------------------------------------------- the chart's values

@pytest.fixture(scope="module")
def values():
    return yaml.safe_load(VALUES_FILE.read_text())


def test_the_values_switch_off_every_component_the_demo_does_not_use(values):
    assert values["alertmanager"]["enabled"] is False
    assert values["nodeExporter"]["enabled"] is False
    assert values["kubeStateMetrics"]["enabled"] is False
    assert values["kubernetesServiceMonitors"]["enabled"] is False
    assert values["defaultRules"]["create"] is False
    assert values["grafana"]["defaultDashboardsEnabled"] is False
    operator = values["prometheusOperator"]
    # The operator's TLS certificate is the Secret the webhooks' Jobs create: off together.
    assert operator["admissionWebhooks"]["enabled"] is False and operator["tls"]["enabled"] is False
    assert operator["kubeletService"]["enabled"] is False
    assert values["crds"]["enabled"] is True, "the PodMonitors need the chart's CRDs"


def test_every_monitoring_container_is_guaranteed_and_a_valid_kubernetes_container(values):
    affinity = {"prometheus-operator": values["prometheusOperator"]["affinity"],
                "prometheus": values["prometheus"]["prometheusSpec"]["affinity"],
                "config-reloader": values["prometheus"]["prometheusSpec"]["affinity"]}
    for name, resources in monitoring_containers(values):
        assert resources["requests"] == resources["limits"], name
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
               "spec": {"containers": [{"name": name, "image": "example", "resources": resources}],
                        "affinity": affinity.get(name, values["grafana"]["affinity"])}}
        kubernetes_validate.validate(pod, kubernetes_validate.latest_version(), strict=True)


@pytest.mark.parametrize("path", ["prometheusOperator", "prometheus.prometheusSpec", "grafana"])
def test_each_monitoring_pod_prefers_the_node_without_the_control_plane(values, path):
    node = values
    for part in path.split("."):
        node = node[part]
    affinity = node["affinity"]["nodeAffinity"]
    assert "requiredDuringSchedulingIgnoredDuringExecution" not in affinity
    term = affinity["preferredDuringSchedulingIgnoredDuringExecution"][0]["preference"]["matchExpressions"][0]
    assert term == {"key": "node-role.kubernetes.io/control-plane", "operator": "DoesNotExist"}


def test_the_values_file_states_the_total_its_containers_ask_for(values):
    resources = [resources["requests"] for _, resources in monitoring_containers(values)]
    total_cpu_m = round(sum(cpu(item["cpu"]) for item in resources) * 1000)
    total_mib = round(sum(gib(item["memory"]) for item in resources) * 1024)
    assert re.search(rf"#\s+total\s+{total_cpu_m}m\s+{total_mib}Mi\b", VALUES_FILE.read_text())


def chart_keys_problems(ours, theirs, path=""):
    """Keys of `ours` the chart's values do not have; below an empty or free-form value
    (resources: {}, affinity: {}, grafana.ini) anything goes."""
    problems = []
    for key, value in ours.items():
        where = f"{path}.{key}" if path else key
        if key not in theirs:
            problems.append(where)
        elif isinstance(value, dict) and isinstance(theirs[key], dict) and theirs[key] and key != "grafana.ini":
            problems += chart_keys_problems(value, theirs[key], where)
    return problems


def test_every_key_of_the_values_is_one_the_pinned_charts_know(values):
    text, where = chart_file(f"{CHART_DIR}/values.yaml")
    if text is None:
        pytest.skip(where)
    chart_values = yaml.safe_load(text)
    ours = {key: value for key, value in values.items() if key != "grafana"}
    assert chart_keys_problems(ours, chart_values) == []
    # Grafana's keys are the subchart's, at the version kube-prometheus-stack depends on.
    chart = yaml.safe_load(chart_file(f"{CHART_DIR}/Chart.yaml")[0])
    grafana_version = next(item["version"] for item in chart["dependencies"] if item["name"] == "grafana")
    text, where = chart_file("charts/grafana/values.yaml", "GRAFANA_CHARTS_REPO", GRAFANA_MIRROR,
                             f"grafana-{grafana_version}")
    if text is None:
        pytest.skip(where)
    # Under grafana: the subchart's keys, and those kube-prometheus-stack reads itself.
    known = merged(yaml.safe_load(text), chart_values["grafana"])
    assert chart_keys_problems(values["grafana"], known, "grafana") == []


def merged(base, extra):
    """base with extra's keys added, recursively (as Helm merges a parent's values)."""
    result = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result.setdefault(key, value)
    return result


def test_cleanup_deletes_exactly_the_crds_the_pinned_chart_installs():
    text, where = chart_file(f"{CHART_DIR}/charts/crds/Chart.yaml")
    if text is None:
        pytest.skip(where)
    repo = Path(os.environ.get("KUBE_PROMETHEUS_STACK_REPO", CHARTS_MIRROR))
    listing = subprocess.run(["git", "-C", str(repo), "ls-tree", "--name-only",
                              f"kube-prometheus-stack-{CHART_VERSION}:{CHART_DIR}/charts/crds/crds/"],
                             capture_output=True, text=True, check=True).stdout.split()
    names = {re.fullmatch(r"crd-(\w+)\.yaml", file).group(1) + ".monitoring.coreos.com" for file in listing}
    assert set(lib_array("MONITORING_CRDS")) == names


# ---------------------------------------------------------------- the PodMonitors

@pytest.fixture(scope="module")
def monitors():
    return [document for document in yaml.safe_load_all(MONITORS_FILE.read_text()) if document]


@pytest.fixture(scope="module")
def podmonitor_schema():
    folder = os.environ.get("KUBE_PROMETHEUS_STACK_CRD_DIR")
    if folder:
        path = Path(folder) / "crd-podmonitors.yaml"
        text, where = (path.read_text(), str(path)) if path.exists() else (None, f"{path} does not exist")
    else:
        text, where = chart_file(f"{CHART_DIR}/charts/crds/crds/crd-podmonitors.yaml")
    if text is None:
        pytest.skip(where)
    crd = next(document for document in yaml.safe_load_all(text)
               if document and document.get("kind") == "CustomResourceDefinition")
    version = next(item for item in crd["spec"]["versions"] if item["name"] == "v1")
    print(f"PodMonitor CRD: {where}")
    return strict(version["schema"]["openAPIV3Schema"])


def test_the_monitors_validate_strictly_against_the_pinned_charts_podmonitor_crd(monitors, podmonitor_schema):
    assert [document["kind"] for document in monitors] == ["PodMonitor", "PodMonitor"]
    for document in monitors:
        assert document["apiVersion"] == "monitoring.coreos.com/v1"
        assert errors(podmonitor_schema, document) == []
        # The CRD's CEL rules are not evaluated here: the monitors set no field that has one.
        assert [path for path in cel_rule_paths(podmonitor_schema) if has_path(document, path)] == []


def test_the_strict_check_catches_a_misspelt_endpoint_field(monitors, podmonitor_schema):
    broken = copy.deepcopy(monitors[0])
    broken["spec"]["podMetricsEndpoints"][0]["prot"] = broken["spec"]["podMetricsEndpoints"][0].pop("port")
    assert any("prot" in problem for problem in errors(podmonitor_schema, broken))


def test_the_monitors_scrape_the_metrics_port_of_the_head_and_of_the_workers(monitors):
    cluster = yaml.safe_load(CLUSTER_FILE.read_text())["spec"]
    groups = {"head": cluster["headGroupSpec"], "worker": cluster["workerGroupSpecs"][0]}
    selected = {}
    for document in monitors:
        # Prometheus selects monitors by its release's name; they select pods beside them.
        assert document["metadata"]["labels"]["release"] == lib_setting("MONITORING_RELEASE")
        assert "namespace" not in document["metadata"] and "namespaceSelector" not in document["spec"]
        node_type = document["spec"]["selector"]["matchLabels"]["ray.io/node-type"]
        ports = {port["name"] for port in container(groups[node_type]).get("ports", [])}
        for endpoint in document["spec"]["podMetricsEndpoints"]:
            assert endpoint["port"] in ports, (node_type, endpoint["port"])
            targets = {item["targetLabel"] for item in endpoint["relabelings"]}
            assert "ray_io_cluster" in targets, "Ray's dashboards filter by it"
        selected[node_type] = document["metadata"]["name"]
    assert set(selected) == {"head", "worker"}


# ---------------------------------------------------------------- the Ray head's settings

def chart_service_names(release):
    """The Services kube-prometheus-stack names after a release (its _helpers.tpl: the
    fullname is the release, or release-kube-prometheus-stack, cut at 26 characters)."""
    fullname = release if "kube-prometheus-stack" in release else f"{release}-kube-prometheus-stack"
    fullname = fullname[:26].rstrip("-")
    return {"grafana": f"{release}-grafana", "prometheus": f"{fullname}-prometheus"}


def test_the_ray_head_points_at_the_charts_grafana_and_prometheus():
    head = container(yaml.safe_load(CLUSTER_FILE.read_text())["spec"]["headGroupSpec"])
    env = {item["name"]: item.get("value") for item in head["env"]}
    release, namespace = lib_setting("MONITORING_RELEASE"), lib_setting("MONITORING_NAMESPACE")
    names = chart_service_names(release)
    assert names == {"grafana": lib_setting("GRAFANA_SERVICE"), "prometheus": lib_setting("PROMETHEUS_SERVICE")}
    # The Grafana subchart's Service listens on port 80; Prometheus' on 9090.
    assert env["RAY_GRAFANA_HOST"] == f"http://{names['grafana']}.{namespace}.svc:80"
    assert env["RAY_PROMETHEUS_HOST"] == f"http://{names['prometheus']}.{namespace}.svc:9090"
    # Where the browser finds Grafana: open-dashboard.sh's forward, at its default port.
    assert env["RAY_GRAFANA_IFRAME_HOST"] == f"http://127.0.0.1:{script_default('scripts/open-dashboard.sh', 'GRAFANA_PORT')}"
