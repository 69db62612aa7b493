"""Static checks of k8s/*.yaml and docker/Dockerfile; no cluster needed.

Core kinds (the Service, and the RayCluster's pod templates wrapped as Pods) are
validated offline against the Kubernetes JSON schemas of kubernetes-validate. The
RayCluster (a CRD, so not in those schemas) is checked field by field: versions, labels,
ports, image, and the resource arithmetic stated at the top of ray-cluster.yaml.
"""

import json
import os
import re
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
CLUSTER_FILE = REPO_ROOT / "k8s" / "ray-cluster.yaml"
SERVICE_FILE = REPO_ROOT / "k8s" / "ray-service.yaml"
STORAGE_FILE = REPO_ROOT / "k8s" / "checkpoint-storage.yaml"
MONITORING_VALUES_FILE = REPO_ROOT / "k8s" / "kube-prometheus-stack-values.yaml"
DOCKERFILE = REPO_ROOT / "docker" / "Dockerfile"

# Two minikube nodes, as setup-minikube.sh starts them (NODE_CPUS=4, NODE_MEMORY=8192).
NODE_COUNT, NODE_CPUS, NODE_MEMORY_GIB = 2, 4.0, 8.0
# What Kubernetes itself takes (see the table in ray-cluster.yaml): the control-plane
# node carries kube-system, metrics-server and the KubeRay operator; node 2 only the
# kubelet, runtime and CNI.
CONTROL_PLANE_ALLOWANCE = {"cpu": 1.25, "memory": 1.5}
OTHER_NODE_ALLOWANCE = {"cpu": 0.25, "memory": 0.5}

MEMORY_UNITS = {"Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "K": 10 ** 3, "M": 10 ** 6, "G": 10 ** 9}


def cpu(quantity) -> float:
    text = str(quantity)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


def gib(quantity) -> float:
    match = re.fullmatch(r"(\d+)([KMG]i?)?", str(quantity))
    assert match, f"unexpected memory quantity {quantity!r}"
    return int(match.group(1)) * MEMORY_UNITS.get(match.group(2) or "", 1) / 2 ** 30


@pytest.fixture(scope="module")
def cluster():
    documents = [doc for doc in yaml.safe_load_all(CLUSTER_FILE.read_text()) if doc]
    assert len(documents) == 1
    return documents[0]


@pytest.fixture(scope="module")
def service():
    documents = [doc for doc in yaml.safe_load_all(SERVICE_FILE.read_text()) if doc]
    assert len(documents) == 1
    return documents[0]


@pytest.fixture(scope="module")
def head(cluster):
    return cluster["spec"]["headGroupSpec"]


@pytest.fixture(scope="module")
def workers(cluster):
    groups = cluster["spec"]["workerGroupSpecs"]
    assert len(groups) == 1, "one worker group (the GPU variant stays commented out)"
    return groups[0]


def container(group):
    containers = group["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def requirement_pin(package: str) -> str:
    for line in (REPO_ROOT / "requirements.txt").read_text().splitlines():
        match = re.match(rf"{re.escape(package)}(\[[^\]]*\])?==(\S+)", line.strip())
        if match:
            return match.group(2)
    raise AssertionError(f"{package} is not pinned in requirements.txt")


def shell_default(path: str, name: str) -> str:
    match = re.search(rf'{name}:=?-?([^}}"]+)\}}', (REPO_ROOT / path).read_text())
    assert match, f"no default for {name} in {path}"
    return match.group(1)


# ---- schema validation of core kinds ----------------------------------------------

def test_service_is_a_valid_kubernetes_object():
    for document in yaml.safe_load_all(SERVICE_FILE.read_text()):
        kubernetes_validate.validate(document, kubernetes_validate.latest_version(), strict=True)


@pytest.mark.parametrize("group_path", ["head", "workers"])
def test_raycluster_pod_templates_are_valid_pod_specs(cluster, group_path):
    spec = cluster["spec"]
    group = spec["headGroupSpec"] if group_path == "head" else spec["workerGroupSpecs"][0]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"template-{group_path}"},
           "spec": group["template"]["spec"]}
    kubernetes_validate.validate(pod, kubernetes_validate.latest_version(), strict=True)


def test_schema_validation_catches_a_broken_pod_spec(head):
    broken = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "broken"},
              "spec": {"containers": [{"name": "x", "image": "y", "ports": [{"containerPort": "http"}]}]}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, kubernetes_validate.latest_version(), strict=True)


# ---- versions -----------------------------------------------------------------------

def test_ray_version_agrees_across_raycluster_requirements_and_dockerfile_base_image(cluster):
    ray_pin = requirement_pin("ray")
    # The default is the amd64 tag; build-and-push.sh adds Ray's -aarch64 suffix on arm64
    # (tests/test_k8s_scripts.py checks both choices).
    base = re.search(r"^ARG RAY_BASE_IMAGE=rayproject/ray:(\S+)\nFROM \$\{RAY_BASE_IMAGE\}$",
                     DOCKERFILE.read_text(), re.MULTILINE)
    assert base, "docker/Dockerfile must start FROM the official rayproject/ray image, named in ARG RAY_BASE_IMAGE"
    assert cluster["spec"]["rayVersion"] == ray_pin == "2.60.0"
    assert base.group(1) == f"{ray_pin}-py311-cpu"


def test_dockerfile_installs_the_same_requirements_and_bakes_in_the_training_code():
    text = DOCKERFILE.read_text()
    assert "COPY --chown=ray:users requirements.txt" in text
    assert "pip install --no-cache-dir -r requirements.txt" in text
    for package in ("lesson", "harness", "analysis", "tools"):
        assert re.search(rf"COPY .*{package}/ \./{package}/", text)
    assert "TF_USE_LEGACY_KERAS=1" in text
    assert "WORKDIR /home/ray/app" in text


def test_kuberay_chart_version_is_pinned():
    version = shell_default("scripts/install-ray.sh", "KUBERAY_VERSION")
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), version


# ---- RayCluster fields ----------------------------------------------------------------

def test_raycluster_uses_the_v1_api_and_the_cluster_name_the_scripts_use(cluster):
    assert cluster["apiVersion"] == "ray.io/v1"
    assert cluster["kind"] == "RayCluster"
    assert cluster["metadata"]["name"] == shell_default("scripts/lib/k8s.sh", "RAY_CLUSTER_NAME")
    # The scripts pass --namespace, which must not fight a namespace in the file.
    assert "namespace" not in cluster["metadata"]


def test_head_offers_no_cpus_to_ray_and_serves_the_dashboard_on_all_interfaces(head):
    assert head["rayStartParams"]["num-cpus"] == "0"
    assert head["rayStartParams"]["dashboard-host"] == "0.0.0.0"


def test_worker_replicas_lie_between_min_and_max_replicas_with_at_least_one_worker(workers):
    # The docs ask learners to edit `replicas`; any value within these bounds must pass the
    # suite, and the arithmetic tests below check every count up to maxReplicas.
    assert 1 <= workers["minReplicas"] <= workers["replicas"] <= workers["maxReplicas"]


def test_head_ports_are_named_gcs_server_dashboard_and_client(head):
    ports = {port["name"]: port["containerPort"] for port in container(head)["ports"]}
    assert ports == {"gcs-server": 6379, "dashboard": 8265, "client": 10001, "metrics": 8080}


@pytest.mark.parametrize("group_name", ["head", "workers"])
def test_ray_serves_its_metrics_on_the_port_named_metrics(request, group_name):
    # k8s/ray-monitors.yaml scrapes the port of that name (tests/test_monitoring.py).
    group = request.getfixturevalue(group_name)
    ports = {port["name"]: port["containerPort"] for port in container(group)["ports"]}
    assert ports["metrics"] == int(group["rayStartParams"]["metrics-export-port"])


@pytest.mark.parametrize("group_name", ["head", "workers"])
def test_containers_run_the_loaded_image_with_legacy_keras_and_nothing_mounted_over_the_code(
        request, group_name):
    group = request.getfixturevalue(group_name)
    spec = container(group)
    assert spec["image"] == shell_default("scripts/lib/k8s.sh", "IMAGE")
    assert not spec["image"].endswith(":latest") and ":" in spec["image"]
    assert spec["imagePullPolicy"] == "Never"
    assert {"name": "TF_USE_LEGACY_KERAS", "value": "1"} in spec["env"]
    assert spec["workingDir"] == "/home/ray/app"
    for mount in spec.get("volumeMounts", []):
        assert not mount["mountPath"].startswith("/home/ray"), mount


@pytest.mark.parametrize("group_name", ["head", "workers"])
def test_dev_shm_is_a_memory_backed_empty_dir_that_holds_the_object_store(request, group_name):
    group = request.getfixturevalue(group_name)
    mounts = {mount["mountPath"]: mount["name"] for mount in container(group)["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in group["template"]["spec"]["volumes"]}
    shm = volumes[mounts["/dev/shm"]]["emptyDir"]
    assert shm["medium"] == "Memory"
    object_store_gib = int(group["rayStartParams"]["object-store-memory"]) / 2 ** 30
    assert object_store_gib <= gib(shm["sizeLimit"])


@pytest.mark.parametrize("group_name", ["head", "workers"])
def test_requests_equal_limits(request, group_name):
    resources = container(request.getfixturevalue(group_name))["resources"]
    assert resources["requests"] == resources["limits"]


def test_worker_ray_cpus_match_the_container_cpu_limit(workers):
    limit = cpu(container(workers)["resources"]["limits"]["cpu"])
    assert limit == int(limit), "Ray counts whole CPUs"
    assert int(workers["rayStartParams"]["num-cpus"]) == int(limit)


def test_head_has_the_cpus_of_a_worker_for_the_baseline_beside_the_ray_head_processes(head, workers):
    # The baseline runs in the head with the CPUs of one worker; add 0.5 CPU of headroom.
    worker_cpus = cpu(container(workers)["resources"]["limits"]["cpu"])
    assert cpu(container(head)["resources"]["limits"]["cpu"]) >= worker_cpus + 0.5


def test_workers_prefer_to_spread_over_nodes_without_requiring_it(workers):
    spec = workers["template"]["spec"]
    constraints = spec["topologySpreadConstraints"]
    assert constraints and all(c["whenUnsatisfiable"] == "ScheduleAnyway" for c in constraints)
    # The pod's own cluster, whatever its name (a RayJob's cluster is named after the RayJob).
    assert constraints[0]["labelSelector"]["matchLabels"] == {"ray.io/node-type": "worker"}
    assert constraints[0]["matchLabelKeys"] == ["ray.io/cluster"]
    affinity = spec.get("affinity", {})
    for kind in ("podAntiAffinity", "podAffinity", "nodeAffinity"):
        assert "requiredDuringSchedulingIgnoredDuringExecution" not in affinity.get(kind, {})


# ---- resource arithmetic ----------------------------------------------------------------

def requests(group):
    values = container(group)["resources"]["requests"]
    return cpu(values["cpu"]), gib(values["memory"])


@pytest.fixture(scope="module")
def submitter(ray_job):
    """The RayJob's submitter pod, shaped like a Ray group for container() and requests()."""
    return {"template": ray_job["spec"]["submitterPodTemplate"]}


def monitoring_containers(values):
    """(name, resources) of each container kube-prometheus-stack runs with these values."""
    grafana = values["grafana"]
    sidecars = [kind for kind in ("dashboards", "datasources") if grafana["sidecar"][kind]["enabled"]]
    return ([("prometheus-operator", values["prometheusOperator"]["resources"]),
             ("prometheus", values["prometheus"]["prometheusSpec"]["resources"]),
             ("config-reloader", values["prometheusOperator"]["prometheusConfigReloader"]["resources"]),
             ("grafana", grafana["resources"])]
            + [(f"grafana-sidecar-{kind}", grafana["sidecar"]["resources"]) for kind in sidecars])


@pytest.fixture(scope="module")
def monitoring_values():
    return yaml.safe_load(MONITORING_VALUES_FILE.read_text())


@pytest.fixture(scope="module")
def monitoring(monitoring_values):
    """What monitoring asks for in all, (CPU, GiB): every container of the chart's pods."""
    resources = [resources["requests"] for _, resources in monitoring_containers(monitoring_values)]
    return sum(cpu(item["cpu"]) for item in resources), sum(gib(item["memory"]) for item in resources)


def test_head_and_max_workers_and_the_store_the_submitter_and_kubernetes_fit_two_nodes_in_sum(
        head, workers, store, submitter, monitoring):
    head_cpu, head_memory = requests(head)
    worker_cpu, worker_memory = requests(workers)
    extras = [requests(store), requests(submitter), monitoring]
    total_cpu = (head_cpu + workers["maxReplicas"] * worker_cpu + sum(extra[0] for extra in extras)
                 + CONTROL_PLANE_ALLOWANCE["cpu"] + OTHER_NODE_ALLOWANCE["cpu"])
    total_memory = (head_memory + workers["maxReplicas"] * worker_memory + sum(extra[1] for extra in extras)
                    + CONTROL_PLANE_ALLOWANCE["memory"] + OTHER_NODE_ALLOWANCE["memory"])
    assert total_cpu <= NODE_COUNT * NODE_CPUS
    assert total_memory <= NODE_COUNT * NODE_MEMORY_GIB
    # The table at the top of ray-cluster.yaml states the same totals.
    assert re.search(rf"#\s+total\s+{total_cpu:.1f}\s+{total_memory:.1f} GiB", CLUSTER_FILE.read_text())


def test_every_worker_count_up_to_max_replicas_fits_each_node(head, workers, store, submitter, monitoring):
    # The head is on the control-plane node; the workers spread one per node, and an odd one
    # goes to the emptier node (the one without the head), as do the checkpoint store and
    # monitoring (their nodeAffinity prefers a node without the control plane) and the
    # RayJob's submitter.
    head_cpu, head_memory = requests(head)
    worker_cpu, worker_memory = requests(workers)
    (store_cpu, store_memory), (submitter_cpu, submitter_memory) = requests(store), requests(submitter)
    monitoring_cpu, monitoring_memory = monitoring
    for count in range(workers["minReplicas"], workers["maxReplicas"] + 1):
        beside_head, on_other_node = count // NODE_COUNT, -(-count // NODE_COUNT)
        assert CONTROL_PLANE_ALLOWANCE["cpu"] + head_cpu + beside_head * worker_cpu <= NODE_CPUS, count
        assert (CONTROL_PLANE_ALLOWANCE["memory"] + head_memory + beside_head * worker_memory
                <= NODE_MEMORY_GIB), count
        assert (OTHER_NODE_ALLOWANCE["cpu"] + on_other_node * worker_cpu + store_cpu + submitter_cpu
                + monitoring_cpu <= NODE_CPUS), count
        assert (OTHER_NODE_ALLOWANCE["memory"] + on_other_node * worker_memory + store_memory
                + submitter_memory + monitoring_memory <= NODE_MEMORY_GIB), count
    preferred = store["template"]["spec"]["affinity"]["nodeAffinity"]
    assert "requiredDuringSchedulingIgnoredDuringExecution" not in preferred
    term = preferred["preferredDuringSchedulingIgnoredDuringExecution"][0]["preference"]["matchExpressions"][0]
    assert term == {"key": "node-role.kubernetes.io/control-plane", "operator": "DoesNotExist"}


def preflight_memory_figures():
    """The MiB preflight.sh counts for each pod and for Kubernetes (its `readonly` line)."""
    text = (REPO_ROOT / "scripts" / "preflight.sh").read_text()
    line = re.search(r"^readonly KUBERNETES_MEMORY=.*$", text, re.MULTILINE)
    assert line, "preflight.sh names the memory of each pod on one readonly line"
    return {name: int(value) for name, value in re.findall(r"(\w+_MEMORY)=(\d+)", line.group(0))}


def test_preflight_counts_the_memory_the_pods_monitoring_and_kubernetes_ask_for(head, workers, store, monitoring):
    # preflight.sh (run by setup-minikube.sh) refuses a Docker with less memory than
    # Kubernetes, the head, `replicas` workers (read from ray-cluster.yaml) and the store.
    figures = preflight_memory_figures()
    assert figures["HEAD_MEMORY"] == limit_mib(head)
    assert figures["WORKER_MEMORY"] == limit_mib(workers)
    assert figures["STORE_MEMORY"] == limit_mib(store)
    assert figures["MONITORING_MEMORY"] >= monitoring[1] * 1024
    allowance_mib = (CONTROL_PLANE_ALLOWANCE["memory"] + OTHER_NODE_ALLOWANCE["memory"]) * 1024
    assert figures["KUBERNETES_MEMORY"] >= allowance_mib
    assert int(shell_default("scripts/setup-minikube.sh", "NODE_MEMORY")) / 1024 == NODE_MEMORY_GIB
    assert float(shell_default("scripts/setup-minikube.sh", "NODE_CPUS")) == NODE_CPUS


def test_gpu_variant_is_documented_as_a_commented_out_worker_group():
    text = CLUSTER_FILE.read_text()
    assert "# - groupName: gpu-workers" in text
    assert "nvidia.com/gpu" in text and "use_gpu=True" in text


# ---- Service ---------------------------------------------------------------------------

def test_service_exposes_only_the_dashboard_on_a_fixed_node_port(service, cluster):
    """Not the GCS, not the Ray Client: the dashboard alone, which asks for the token."""
    assert service["kind"] == "Service" and service["spec"]["type"] == "NodePort"
    ports = {port["name"]: (port["port"], port["targetPort"], port["nodePort"])
             for port in service["spec"]["ports"]}
    assert ports == {"dashboard": (8265, "dashboard", 30265)}


def test_the_raycluster_runs_with_token_authentication(cluster):
    """KubeRay 1.7.0 then creates the token's Secret and gives every Ray container
    RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (its raycluster_controller.go and common/pod.go)."""
    assert cluster["spec"]["authOptions"] == {"mode": "token"}


def test_service_selects_the_head_by_kuberay_labels(service, cluster):
    assert service["spec"]["selector"] == {
        "ray.io/cluster": cluster["metadata"]["name"], "ray.io/node-type": "head"}


# ---- checkpoint storage (CHECKPOINTS=1) ---------------------------------------------------

@pytest.fixture(scope="module")
def storage_documents():
    return {doc["kind"]: doc for doc in yaml.safe_load_all(STORAGE_FILE.read_text()) if doc}


@pytest.fixture(scope="module")
def store(storage_documents):
    """The store's Deployment spec, shaped like a Ray group for container() and requests()."""
    return storage_documents["Deployment"]["spec"]


def test_checkpoint_storage_is_a_secret_a_deployment_and_a_service_all_valid(storage_documents):
    assert sorted(storage_documents) == ["Deployment", "Secret", "Service"]
    for document in storage_documents.values():
        kubernetes_validate.validate(document, kubernetes_validate.latest_version(), strict=True)
        # The scripts pass --namespace: the store lives beside the RayCluster.
        assert "namespace" not in document["metadata"]


def test_the_ray_pods_reach_the_store_by_its_service_and_read_its_secret_optionally(
        cluster, head, workers, storage_documents):
    service, secret = storage_documents["Service"], storage_documents["Secret"]
    port = service["spec"]["ports"][0]["port"]
    for group in (head, workers):
        env = {item["name"]: item for item in container(group)["env"]}
        assert env["AWS_ENDPOINT_URL"]["value"] == f"http://{service['metadata']['name']}:{port}"
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            reference = env[key]["valueFrom"]["secretKeyRef"]
            assert reference["name"] == secret["metadata"]["name"] and reference["key"] == key
            assert key in secret["stringData"]
            # Without CHECKPOINTS=1 the Secret does not exist; the pods must start anyway.
            assert reference["optional"] is True


def test_the_store_serves_its_pods_with_the_secret_keys_on_a_pinned_image(store, storage_documents):
    spec = container(store)
    assert spec["image"].startswith("quay.io/minio/minio:RELEASE.") and not spec["image"].endswith(":latest")
    env = {item["name"]: item["valueFrom"]["secretKeyRef"] for item in spec["env"]}
    secret = storage_documents["Secret"]["metadata"]["name"]
    assert env["MINIO_ROOT_USER"] == {"name": secret, "key": "AWS_ACCESS_KEY_ID"}
    assert env["MINIO_ROOT_PASSWORD"] == {"name": secret, "key": "AWS_SECRET_ACCESS_KEY"}
    # MinIO refuses a root password shorter than 8 characters.
    assert len(storage_documents["Secret"]["stringData"]["AWS_SECRET_ACCESS_KEY"]) >= 8
    assert spec["resources"]["requests"] == spec["resources"]["limits"]
    selector = storage_documents["Service"]["spec"]["selector"]
    assert store["selector"]["matchLabels"] == selector
    assert store["template"]["metadata"]["labels"].items() >= selector.items()
    assert spec["ports"][0]["containerPort"] == storage_documents["Service"]["spec"]["ports"][0]["targetPort"]


def test_the_scripts_keep_checkpoints_in_a_bucket_of_the_store():
    path = shell_default("scripts/lib/k8s.sh", "K8S_CHECKPOINT_PATH")
    assert path.startswith("s3://") and path.count("/") >= 3, path
    for name in ("ray-checkpoint-storage", "app.kubernetes.io/name=ray-checkpoint-storage"):
        assert name in (REPO_ROOT / "scripts" / "install-ray.sh").read_text()


# ---- RayJob (k8s/ray-job.yaml as run-rayjob.sh submits it) -------------------------------

@pytest.fixture(scope="module")
def ray_job():
    rendered = subprocess.run([str(REPO_ROOT / "scripts" / "run-rayjob.sh"), "--dry-run"], cwd=REPO_ROOT,
                              capture_output=True, text=True, check=True,
                              # One worker fits every documented `replicas` (1 to maxReplicas).
                              env=dict(os.environ, NUM_WORKERS="1")).stdout
    return yaml.safe_load(rendered)


def test_rayjob_deletes_its_cluster_after_a_grace_period_and_never_retries(ray_job):
    spec = ray_job["spec"]
    assert ray_job["apiVersion"] == "ray.io/v1" and ray_job["kind"] == "RayJob"
    assert spec["shutdownAfterJobFinishes"] is True
    # Long enough to copy the results out of the head pod, short enough to free the nodes.
    assert 60 <= spec["ttlSecondsAfterFinished"] <= 900
    assert spec["backoffLimit"] == 0 and spec["submitterConfig"]["backoffLimit"] == 0
    assert spec["submissionMode"] == "K8sJobMode"
    assert ray_job["metadata"]["labels"]["app.kubernetes.io/part-of"] == "ray-parallel-training-demo"


def test_rayjob_cluster_follows_kuberays_rules_for_a_rayjob(ray_job, cluster):
    cluster_spec = ray_job["spec"]["rayClusterSpec"]
    # KubeRay refuses upgradeStrategy in a RayJob's cluster (ValidateRayClusterUpgradeOptions),
    # and without autoscaling every worker group needs minReplicas and maxReplicas.
    assert "upgradeStrategy" not in cluster_spec and cluster["spec"]["upgradeStrategy"] == {"type": "Recreate"}
    for group in cluster_spec["workerGroupSpecs"]:
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]


def test_rayjob_submitter_is_a_valid_small_guaranteed_pod_on_the_loaded_image(ray_job):
    template = ray_job["spec"]["submitterPodTemplate"]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "submitter"}, "spec": template["spec"]}
    kubernetes_validate.validate(pod, kubernetes_validate.latest_version(), strict=True)
    submitter = container({"template": template})
    assert submitter["image"] == shell_default("scripts/lib/k8s.sh", "IMAGE")
    assert submitter["imagePullPolicy"] == "Never"
    assert submitter["resources"]["requests"] == submitter["resources"]["limits"]
    assert "command" not in submitter, "KubeRay fills in the ray job submit command"


# ---- memory sizes from the measurement (docs/results/pod_memory/, measure-pod-memory.sh) ----

MEASURED = REPO_ROOT / "docs" / "results" / "pod_memory"


def measurement(name):
    """(examples, head's baseline-phase peak, head's Ray-phase peak, worker's peak), MiB."""
    summary = json.loads((MEASURED / name / "memory.json").read_text())
    sizes = re.search(r"TRAIN_SIZE=(\d+) TEST_SIZE=(\d+)", summary["recipe"])
    examples = int(sizes.group(1)) + int(sizes.group(2))
    head_by_phase = summary["pods"]["head pod"]["peak_mib_by_phase"]
    return examples, head_by_phase["baseline"], head_by_phase["ray"], summary["pods"]["worker pod"]["peak_mib"]


def limit_mib(group):
    return gib(container(group)["resources"]["limits"]["memory"]) * 1024


def max_examples(cluster):
    return int(cluster["metadata"]["annotations"]["ray-parallel-training-demo/max-examples"])


def test_pods_have_25_percent_headroom_over_the_measured_peaks_of_the_default_recipe(head, workers):
    examples, head_baseline, head_ray, worker_peak = measurement("default")
    assert examples == 4096 + 1024
    assert limit_mib(head) >= 1.25 * max(head_baseline, head_ray)
    assert limit_mib(workers) >= 1.25 * worker_peak


def test_pods_keep_25_percent_headroom_up_to_the_max_examples_the_scripts_allow(cluster, head, workers):
    # Memory grows about linearly with the examples held, between the two measurements.
    small, large = measurement("default"), measurement("cifar10_size")
    def estimate(index, examples):
        slope = (large[index] - small[index]) / (large[0] - small[0])
        return small[index] + slope * (examples - small[0])
    limit = max_examples(cluster)
    assert small[0] <= limit < large[0], "the default recipe runs; CIFAR-10 size needs bigger pods"
    assert limit_mib(head) >= 1.25 * max(estimate(1, limit), estimate(2, limit))
    assert limit_mib(workers) >= 1.25 * estimate(3, limit)


def test_the_yaml_states_the_measured_peaks_it_is_sized_from():
    text = CLUSTER_FILE.read_text()
    for name, label in (("default", "default"), ("cifar10_size", "CIFAR-10 size")):
        summary = json.loads((MEASURED / name / "memory.json").read_text())
        head_pod, worker_pod = summary["pods"]["head pod"], summary["pods"]["worker pod"]
        row = (rf"#\s+{re.escape(label)} \([\d +=]+\)\s+{head_pod['peak_mib_by_phase']['baseline']} / "
               rf"{head_pod['peak_mib_by_phase']['ray']}\s+{worker_pod['peak_mib']}\n")
        assert re.search(row, text), f"the table at the top of ray-cluster.yaml should state {name}'s peaks"
