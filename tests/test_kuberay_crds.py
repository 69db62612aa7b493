"""Our RayCluster and RayJob checked against the openAPIV3Schema of KubeRay's own CRDs.

The CRDs are not in this repository (they are KubeRay's), and CI reaches no GitHub, so these
tests run only where the CRDs can be read, and are skipped elsewhere with the reason:
- KUBERAY_CRD_DIR=/path/to/crd/bases  a folder holding ray.io_rayclusters.yaml and
  ray.io_rayjobs.yaml (ray-operator/config/crd/bases of a KubeRay checkout at the tag of
  KUBERAY_VERSION in scripts/install-ray.sh, or helm-chart/kuberay-operator/crds);
- KUBERAY_REPO=/path/to/kuberay  a git clone of ray-project/kuberay: the CRDs are read from
  the tag v<KUBERAY_VERSION> with `git show`, whatever is checked out.

The schema is made strict the way the API server is with `kubectl apply` (field validation
Strict, kubectl's default): a field the schema does not know is an error, not silently pruned.
The CRDs' CEL rules (x-kubernetes-validations) are not evaluated here; a test checks that our
manifests set none of the fields that carry one. In CI the pod templates are still validated
against the Kubernetes schemas (tests/test_k8s_manifests.py).
"""

import copy
import functools
import os
import re
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MIRROR = Path("/work/.mirror/ray-project+kuberay/repo")
CRD_FILES = {"RayCluster": "ray.io_rayclusters.yaml", "RayJob": "ray.io_rayjobs.yaml"}


def kuberay_version():
    text = (REPO_ROOT / "scripts" / "install-ray.sh").read_text()
    return re.search(r'KUBERAY_VERSION:-([\d.]+)\}', text).group(1)


def read_crd_text(file_name):
    """The CRD file's text, or None with the reason it cannot be read here."""
    folder = os.environ.get("KUBERAY_CRD_DIR")
    if folder:
        path = Path(folder) / file_name
        return (path.read_text(), str(path)) if path.exists() else (None, f"{path} does not exist")
    repo = Path(os.environ.get("KUBERAY_REPO", DEFAULT_MIRROR))
    if not repo.exists():
        return None, ("no KubeRay CRDs here: set KUBERAY_CRD_DIR to ray-operator/config/crd/bases of a KubeRay "
                      f"v{kuberay_version()} checkout, or KUBERAY_REPO to a kuberay clone")
    tag = f"v{kuberay_version()}"
    source = f"{tag}:ray-operator/config/crd/bases/{file_name}"
    shown = subprocess.run(["git", "-C", str(repo), "show", source], capture_output=True, text=True)
    if shown.returncode != 0:
        return None, f"git show {source} failed in {repo}: {shown.stderr.strip()}"
    return shown.stdout, f"{repo} {source}"


def strict(schema):
    """The schema with unknown fields forbidden wherever Kubernetes would not keep them."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if (node.get("type") == "object" and "properties" in node
                    and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


def cel_rule_paths(schema, path=""):
    """The paths (a.b.c, [] for list items) of every node carrying x-kubernetes-validations."""
    found = []
    if schema.get("x-kubernetes-validations"):
        found.append(path)
    for name, child in schema.get("properties", {}).items():
        found += cel_rule_paths(child, f"{path}.{name}" if path else name)
    if isinstance(schema.get("items"), dict):
        found += cel_rule_paths(schema["items"], path + "[]")
    if isinstance(schema.get("additionalProperties"), dict):
        found += cel_rule_paths(schema["additionalProperties"], path + "{}")
    return found


def has_path(document, path):
    """True when the document sets something at the path (lists and maps: any element)."""
    nodes = [document]
    for part in re.findall(r"[^.\[\]{}]+|\[\]|\{\}", path):
        if part == "[]":
            nodes = [item for node in nodes if isinstance(node, list) for item in node]
        elif part == "{}":
            nodes = [item for node in nodes if isinstance(node, dict) for item in node.values()]
        else:
            nodes = [node[part] for node in nodes if isinstance(node, dict) and part in node]
    return bool(nodes)


@pytest.fixture(scope="module")
def crd_schemas():
    schemas = {}
    for kind, file_name in CRD_FILES.items():
        text, where = read_crd_text(file_name)
        if text is None:
            pytest.skip(where)
        # libyaml when present: the RayJob CRD alone is about a megabyte of YAML.
        crd = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        version = next(item for item in crd["spec"]["versions"] if item["name"] == "v1")
        schemas[kind] = strict(version["schema"]["openAPIV3Schema"])
        print(f"{kind}: {where}")
    return schemas


@functools.lru_cache(maxsize=None)
def rendered_manifests():
    """Our RayCluster, and the RayJob as run-rayjob.sh submits it (--dry-run)."""
    cluster = yaml.safe_load((REPO_ROOT / "k8s" / "ray-cluster.yaml").read_text())
    rendered = subprocess.run([str(REPO_ROOT / "scripts" / "run-rayjob.sh"), "--dry-run"], cwd=REPO_ROOT,
                              capture_output=True, text=True, check=True,
                              # One worker fits every documented `replicas` (1 to maxReplicas).
                              env=dict(os.environ, NUM_WORKERS="1")).stdout
    return {"RayCluster": cluster, "RayJob": yaml.safe_load(rendered)}


def manifests():
    return copy.deepcopy(rendered_manifests())


def errors(schema, document):
    validator = jsonschema.Draft7Validator(schema)
    return [f"{'.'.join(str(part) for part in error.absolute_path)}: {error.message}"
            for error in validator.iter_errors(document)]


@pytest.mark.parametrize("kind", sorted(CRD_FILES))
def test_our_manifest_validates_against_kuberays_own_crd_schema(crd_schemas, kind):
    document = manifests()[kind]
    assert document["apiVersion"] == "ray.io/v1" and document["kind"] == kind
    problems = errors(crd_schemas[kind], document)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("kind", sorted(CRD_FILES))
def test_our_manifest_sets_no_field_whose_cel_rule_goes_unchecked_here(crd_schemas, kind):
    document = manifests()[kind]
    checked = cel_rule_paths(crd_schemas[kind])
    print(f"{kind}: CEL rules at {checked}")
    assert checked, "the CRD has CEL rules; the path walk found none"
    assert [path for path in checked if has_path(document, path)] == []


def test_the_strict_check_catches_a_misspelt_field_deep_in_a_pod_and_a_wrong_type(crd_schemas):
    misspelt = manifests()["RayCluster"]
    container = misspelt["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    container["imagePulPolicy"] = container.pop("imagePullPolicy")
    wrong_type = manifests()["RayCluster"]
    wrong_type["spec"]["workerGroupSpecs"][0]["replicas"] = "2"
    assert any("imagePulPolicy" in problem for problem in errors(crd_schemas["RayCluster"], misspelt))
    assert any("replicas" in problem for problem in errors(crd_schemas["RayCluster"], wrong_type))
