"""Tests of the Minikube scripts with fake minikube, kubectl, helm and docker.

Each test copies the scripts, docker/ and k8s/ into a temporary repo, puts
tests/fakes/fake-tool.sh first on PATH under the four tool names (and nothing else of
the real ones), runs a script, and asserts on the exact calls the fakes recorded and on
the messages and exit codes. No test reaches a real cluster, Docker or the network.
"""

import hashlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
import yaml

from conftest import free_port, interruptible, taken_port

REPO_ROOT = Path(__file__).resolve().parent.parent
FAKE_TOOL = REPO_ROOT / "tests" / "fakes" / "fake-tool.sh"
FAKED_TOOLS = ("minikube", "kubectl", "helm", "docker")
IMAGE = "ray-training-demo:ray2.60.0-py311"
HASH_LABEL = "ray-training-demo.content-hash"

HEAD_READY_QUERY = (
    "kubectl --context minikube --namespace default get pods --selector "
    "ray.io/cluster=ray-training-cluster,ray.io/node-type={kind} --output "
    'jsonpath={{range .items[*]}}{{.status.conditions[?(@.type=="Ready")].status}}{{"\\n"}}{{end}}'
)
REPLICAS_QUERY = (
    "kubectl --context minikube --namespace default get raycluster ray-training-cluster "
    "--output jsonpath={.spec.workerGroupSpecs[0].replicas}"
)
HEAD_POD_QUERY = (
    "kubectl {flags} get pods --namespace default --selector "
    "ray.io/cluster=ray-training-cluster,ray.io/node-type=head "
    "--field-selector status.phase=Running --output jsonpath={{.items[0].metadata.name}}"
)


@pytest.fixture(scope="session")
def system_bin(tmp_path_factory):
    """A folder with every command on PATH except the real minikube/kubectl/helm/docker."""
    folder = tmp_path_factory.mktemp("sysbin")
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if not directory or not os.path.isdir(directory) or "/.venv/" in directory + "/":
            continue
        for name in os.listdir(directory):
            target = os.path.join(directory, name)
            link = folder / name
            if name in FAKED_TOOLS or link.exists() or not os.access(target, os.X_OK):
                continue
            if os.path.isfile(target):
                link.symlink_to(target)
    return folder


class FakeWorld:
    """A temporary copy of the repo, fake tools on PATH, their rules and their call log."""

    def __init__(self, root: Path, system_bin: Path):
        self.root = root / "repo"
        self.bin = root / "fakebin"
        self.state = root / "state"
        self.log = root / "calls.log"
        self.rules_file = root / "rules.tsv"
        for folder in ("scripts", "docker", "k8s", "monitoring"):
            shutil.copytree(REPO_ROOT / folder, self.root / folder)
        shutil.copy(REPO_ROOT / "requirements.txt", self.root / "requirements.txt")
        # The scripts read the recipe from the lesson package (lesson/recipe.py); the image
        # holds every code folder. The stand-ins of the other modules are enough to hash.
        for package in ("lesson", "harness", "analysis", "tools"):
            (self.root / package).mkdir()
            (self.root / package / "__init__.py").write_text("")
        for name in ("__init__.py", "recipe.py", "workarounds.py"):
            shutil.copy(REPO_ROOT / "lesson" / name, self.root / "lesson" / name)
        (self.root / "lesson" / "model.py").write_text("LAYERS = 3\n")
        self.bin.mkdir()
        self.state.mkdir()
        self.rules_file.write_text("")
        for tool in FAKED_TOOLS:
            (self.bin / tool).symlink_to(FAKE_TOOL)
        self.env = {
            "PATH": f"{self.bin}{os.pathsep}{system_bin}",
            "HOME": str(root),
            "TMPDIR": str(root),
            "LANG": "C.UTF-8",
            "FAKE_LOG": str(self.log),
            "FAKE_RULES": str(self.rules_file),
            "FAKE_STATE_DIR": str(self.state),
        }

    def rule(self, tool: str, pattern: str, code: int = 0, output: str = ""):
        """Answer calls of TOOL whose joined args match the glob PATTERN."""
        escaped = output.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")
        with self.rules_file.open("a") as rules:
            rules.write(f"{tool}\t{pattern}\t{code}\t{escaped}\n")

    def remove_tool(self, tool: str):
        (self.bin / tool).unlink()

    def run(self, command: str, **settings) -> subprocess.CompletedProcess:
        """Run a bash command line in the temporary repo with extra environment settings."""
        env = dict(self.env, **{key: str(value) for key, value in settings.items()})
        return subprocess.run(
            ["bash", "-c", command], cwd=self.root, env=env,
            capture_output=True, text=True, timeout=60,
        )

    def script(self, path: str, *args: str, **settings) -> subprocess.CompletedProcess:
        return self.run(" ".join([f"./{path}", *args]), **settings)

    def calls(self) -> list:
        """The recorded calls, with the temp repo path and timestamps made stable."""
        if not self.log.exists():
            return []
        text = self.log.read_text().replace(str(self.root), "<repo>")
        text = re.sub(r"run-\d{8}-\d{6}-\d+", "run-<time>", text)
        text = re.sub(r"ray-training-benchmark-\d{8}-\d{6}", "ray-training-benchmark-<time>", text)
        text = re.sub(r"src-[0-9a-f]{12}", "src-<hash>", text)
        text = re.sub(rf"{HASH_LABEL}=[0-9a-f]{{64}}", f"{HASH_LABEL}=<hash>", text)
        text = re.sub(r"ray-image\.[A-Za-z0-9]{6}", "ray-image.<tmp>", text)
        text = re.sub(r"ray-image-tar\.[A-Za-z0-9]{6}", "ray-image-tar.<tmp>", text)
        return text.splitlines()

    def tool_calls(self, tool: str) -> list:
        return [call for call in self.calls() if call.split(" ", 1)[0] == tool]

    def clear_log(self):
        self.log.write_text("")

    def content_hash(self, base_image: str = "rayproject/ray:2.60.0-py311-cpu") -> str:
        """The hash build-and-push.sh should compute, computed independently in Python."""
        files = {
            "./Dockerfile": self.root / "docker" / "Dockerfile",
            "./requirements.txt": self.root / "requirements.txt",
        }
        for path in (path for package in ("lesson", "harness", "analysis", "tools")
                     for path in (self.root / package).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                files["./" + str(path.relative_to(self.root))] = path
        digest = hashlib.sha256(f"base {base_image}\n".encode())
        for name in sorted(files, key=lambda name: name.encode()):
            digest.update(name.encode() + b"\n" + files[name].read_bytes())
        return digest.hexdigest()


@pytest.fixture
def world(tmp_path, system_bin):
    return FakeWorld(tmp_path, system_bin)


def healthy_cluster_rules(world: FakeWorld):
    """A running 2-node profile, kubectl pointed at it."""
    world.rule("kubectl", "config current-context", output="minikube")
    world.rule("minikube", "-p minikube node list",
               output="minikube\t192.168.49.2\nminikube-m02\t192.168.49.3")
    world.rule("kubectl", "--context minikube get nodes --no-headers",
               output="minikube       Ready   control-plane   5m   v1.34.0\n"
                      "minikube-m02   Ready   <none>          4m   v1.34.0")


# ----------------------------------------------------------------------------------
# setup-minikube.sh
# ----------------------------------------------------------------------------------

def fresh_host_rules(world: FakeWorld, cpus: int = 8, memory_mib: int = 17_800):
    world.rule("docker", "info --format {{.NCPU}}*", output=f"{cpus} {memory_mib * 1024 * 1024}")
    world.rule("minikube", "-p minikube node list", code=85,
               output='Profile "minikube" not found.')
    world.rule("kubectl", "--context minikube get nodes --no-headers",
               output="minikube       Ready   control-plane   1m   v1.34.0\n"
                      "minikube-m02   Ready   <none>          1m   v1.34.0")
    world.rule("kubectl", "config current-context", output="minikube")


PREFLIGHT_CALLS = [
    "docker version --format client {{.Client.Version}}",
    "minikube version --short",
    "kubectl version --client",
    "helm version --short",
    "docker info",
    "docker version --format {{.Server.Arch}}",
    "docker info --format {{.NCPU}} {{.MemTotal}}",
    "docker info --format {{.DockerRootDir}}",
]


def test_setup_runs_preflight_then_creates_a_two_node_profile_with_metrics_server_and_waits(world):
    fresh_host_rules(world)
    result = world.script("scripts/setup-minikube.sh")
    assert result.returncode == 0, result.stderr
    assert world.calls() == PREFLIGHT_CALLS + [
        "minikube -p minikube node list",
        "minikube start -p minikube --nodes 2 --cpus 4 --memory 8192 --driver docker",
        "minikube -p minikube addons enable metrics-server",
        "kubectl --context minikube wait --for=condition=Ready node --all --timeout=300s",
        "kubectl --context minikube get nodes --no-headers",
        "kubectl config current-context",
    ]
    assert "MINIKUBE_PROFILE=minikube" in result.stdout
    assert "NODE_MEMORY=8192" in result.stdout
    assert "Next: ./scripts/install-ray.sh" in result.stdout


def test_setup_passes_the_profile_cpus_and_memory_settings_to_minikube_and_preflight(world):
    fresh_host_rules(world, cpus=16, memory_mib=64_000)
    world.rule("minikube", "-p demo node list", code=85)
    world.rule("kubectl", "--context demo get nodes --no-headers",
               output="demo Ready a 1m v\ndemo-m02 Ready b 1m v")
    result = world.script("scripts/setup-minikube.sh", MINIKUBE_PROFILE="demo",
                          NODE_CPUS=6, NODE_MEMORY=12288)
    assert result.returncode == 0, result.stderr
    assert "minikube start -p demo --nodes 2 --cpus 6 --memory 12288 --driver docker" in world.calls()
    assert "NODE_CPUS=6 NODE_MEMORY=12288" in result.stdout, "preflight checks the same sizes"


def test_setup_rerun_on_a_healthy_two_node_profile_is_a_no_op_that_says_so(world):
    healthy_cluster_rules(world)
    result = world.script("scripts/setup-minikube.sh")
    assert result.returncode == 0, result.stderr
    assert "already runs 2 nodes; nothing to start" in result.stdout
    assert world.calls()[len(PREFLIGHT_CALLS):] == [
        "minikube -p minikube node list",
        "minikube -p minikube status",
        "kubectl --context minikube wait --for=condition=Ready node --all --timeout=300s",
        "kubectl --context minikube get nodes --no-headers",
        "kubectl config current-context",
    ]


def test_setup_restarts_a_stopped_two_node_profile_without_recreating_it(world):
    healthy_cluster_rules(world)
    world.rule("minikube", "-p minikube status", code=7, output="host: Stopped")
    result = world.script("scripts/setup-minikube.sh")
    assert result.returncode == 0, result.stderr
    assert "minikube start -p minikube" in world.calls()
    assert not any("--nodes" in call for call in world.calls())


def test_setup_reports_a_profile_with_a_different_node_count_with_the_command_to_fix_it(world):
    world.rule("minikube", "-p minikube node list", output="minikube\t192.168.49.2")
    result = world.script("scripts/setup-minikube.sh")
    assert result.returncode == 1
    assert "already exists with 1 node(s); this demo needs 2" in result.stderr
    assert "minikube delete -p minikube && ./scripts/setup-minikube.sh" in result.stderr
    assert not any(call.startswith("minikube start") for call in world.calls())
    assert not any(call.startswith("minikube delete") for call in world.calls())


def test_setup_creates_nothing_when_preflight_fails(world):
    fresh_host_rules(world, memory_mib=7_900)
    result = world.script("scripts/setup-minikube.sh")
    assert result.returncode == 1
    assert "The preflight checks failed (above); nothing was created" in result.stderr
    assert not any(call.startswith(("minikube start", "minikube delete")) for call in world.calls())


def test_setup_deletes_the_profile_it_created_when_minikube_start_fails(world):
    fresh_host_rules(world)
    world.rule("minikube", "start *", code=80, output="X Exiting due to GUEST_PROVISION")
    result = world.script("scripts/setup-minikube.sh")
    assert result.returncode == 1
    assert "'minikube start' failed" in result.stderr
    assert world.calls()[-1] == "minikube delete -p minikube"


def test_setup_keeps_the_failed_profile_when_asked_to(world):
    fresh_host_rules(world)
    world.rule("minikube", "start *", code=80)
    result = world.script("scripts/setup-minikube.sh", KEEP_ON_FAILURE=1)
    assert result.returncode == 1
    assert "minikube delete -p minikube" not in world.calls()
    assert "KEEP_ON_FAILURE=1" in result.stderr


def test_setup_fails_with_clear_message_when_nodes_never_become_ready(world):
    fresh_host_rules(world)
    world.rule("kubectl", "--context minikube wait *", code=1,
               output="error: timed out waiting for the condition on nodes/minikube-m02")
    result = world.script("scripts/setup-minikube.sh", WAIT_TIMEOUT=1)
    assert result.returncode == 1
    assert "did not become Ready within 1s" in result.stderr
    assert "kubectl --context minikube wait --for=condition=Ready node --all --timeout=1s" in world.calls()
    assert world.calls()[-1] == "minikube delete -p minikube"


def test_setup_rejects_a_non_numeric_node_memory(world):
    result = world.script("scripts/setup-minikube.sh", NODE_MEMORY="8g")
    assert result.returncode == 1
    assert "NODE_MEMORY must be a whole number" in result.stderr
    assert world.calls() == []


def test_setup_help_prints_usage_and_calls_nothing(world):
    result = world.script("scripts/setup-minikube.sh", "--help")
    assert result.returncode == 0
    assert "Usage:" in result.stdout and "NODE_MEMORY=8192" in result.stdout
    assert world.calls() == []


# ----------------------------------------------------------------------------------
# preflight.sh
# ----------------------------------------------------------------------------------

# Bytes of a Docker that holds both default nodes in full (2 x 8192 MiB) and the 1024 MiB
# preflight.sh adds for Docker itself and for loading the image.
ROOMY_DOCKER = 18 * 1024 ** 3


def fake_uname(world: FakeWorld, system: str):
    """Make `uname -s` answer SYSTEM (the real uname stays on PATH behind the fake)."""
    (world.bin / "uname").symlink_to(FAKE_TOOL)
    world.rule("uname", "-s", output=system)


def test_preflight_passes_on_a_big_enough_amd64_docker_and_names_the_base_image_and_versions(world):
    world.rule("docker", "info --format {{.NCPU}}*", output=f"8 {ROOMY_DOCKER}")
    world.rule("kubectl", "version --client", output="Client Version: v1.34.1\nKustomize Version: v5.7.1")
    world.rule("helm", "version --short", output="v3.19.0+g3d8990f")
    result = world.script("scripts/preflight.sh")
    assert result.returncode == 0, result.stderr
    assert world.calls() == PREFLIGHT_CALLS
    assert "ok    kubectl Client Version: v1.34.1\n" in result.stdout
    assert "ok    helm v3.19.0+g3d8990f" in result.stdout
    assert "architecture amd64: the image builds FROM rayproject/ray:2.60.0-py311-cpu\n" in result.stdout
    assert "All checks passed" in result.stdout
    assert "Monitoring" not in result.stderr, "18 GiB hold monitoring too"


def test_preflight_warns_when_docker_lacks_the_memory_monitoring_adds(world):
    # Nodes of 4 GiB (2 x 4096 + 1024 = 9216 MiB) leave the pods' floor as what counts.
    world.rule("docker", "info --format {{.NCPU}}*", output=f"8 {10_000 * 1024 * 1024}")
    result = world.script("scripts/preflight.sh", NODE_MEMORY=4096)
    assert result.returncode == 0, result.stderr
    assert ("Monitoring (./scripts/install-monitoring.sh: Prometheus and Grafana) needs about 1536 MiB more, "
            "11264 MiB in all, and Docker has 10000") in result.stderr


@pytest.mark.parametrize("tool, where", [
    ("docker", "https://docs.docker.com/get-docker/"),
    ("minikube", "https://minikube.sigs.k8s.io/docs/start/"),
    ("kubectl", "https://kubernetes.io/docs/tasks/tools/"),
    ("helm", "https://helm.sh/docs/intro/install/"),
])
def test_preflight_fails_naming_a_missing_tool_and_where_to_get_it_after_checking_the_rest(world, tool, where):
    world.rule("docker", "info --format {{.NCPU}}*", output=f"8 {ROOMY_DOCKER}")
    world.remove_tool(tool)
    result = world.script("scripts/preflight.sh")
    assert result.returncode == 1
    assert f"FAIL  '{tool}' is not installed or not on PATH. Install it: {where}" in result.stderr
    assert "1 check(s) failed" in result.stderr
    checked = {call.split(" ")[0] for call in world.calls()}
    assert checked == {"docker", "minikube", "kubectl", "helm"} - {tool}, "every other check still runs"


@pytest.mark.parametrize("cpus, memory_mib, node_memory, message", [
    (2, 18_000, 8192, "Each node needs 4 CPUs but Docker has only 2. Give Docker more CPUs"),
    (8, 7_900, 8192, "Each node needs 8192 MiB but Docker has only 7900 MiB. Give Docker at least 17408 MiB"),
    (8, 15_800, 8192, "The 2 nodes need 2 x 8192 MiB (NODE_MEMORY) and Docker about 1024 MiB more for itself "
                      "and for loading the image, 17408 MiB, but Docker has only 15800 MiB. "
                      "Give Docker at least 17408 MiB"),
    (8, 9_000, 3072, "need about 9728 MiB together but Docker has only 9000 MiB. Give Docker at least 9728 MiB"),
])
def test_preflight_fails_with_what_to_change_when_docker_is_too_small(world, cpus, memory_mib, node_memory,
                                                                      message):
    fake_uname(world, "Linux")  # the advice of a Mac differs (tests below), and the suite may run on one
    world.rule("docker", "info --format {{.NCPU}}*", output=f"{cpus} {memory_mib * 1024 * 1024}")
    result = world.script("scripts/preflight.sh", NODE_MEMORY=node_memory)
    assert result.returncode == 1
    assert message in result.stderr and "Settings > Resources" in result.stderr
    assert "1 check(s) failed" in result.stderr, "only the check the row is about fails"


def test_preflight_passes_when_docker_holds_both_nodes_and_its_margin(world):
    world.rule("docker", "info --format {{.NCPU}}*", output=f"8 {17_408 * 1024 * 1024}")
    result = world.script("scripts/preflight.sh")
    assert result.returncode == 0, result.stderr
    assert "ok    Docker has 17408 MiB of memory (the nodes need 17408 with Docker's own" in result.stdout


def test_preflight_counts_both_nodes_of_the_node_memory_it_is_given(world):
    # CIFAR-10 size asks for nodes of 11 GiB (k8s/ray-cluster.yaml): 2 x 11264 + 1024 MiB.
    world.rule("docker", "info --format {{.NCPU}}*", output=f"8 {23_000 * 1024 * 1024}")
    result = world.script("scripts/preflight.sh", NODE_MEMORY=11264)
    assert result.returncode == 1
    assert ("The 2 nodes need 2 x 11264 MiB (NODE_MEMORY) and Docker about 1024 MiB more for itself and for "
            "loading the image, 23552 MiB, but Docker has only 23000 MiB") in result.stderr
    smaller = world.script("scripts/preflight.sh", NODE_MEMORY=10240)
    assert smaller.returncode == 0, smaller.stderr


def test_preflight_on_macos_says_how_to_raise_docker_desktops_memory_and_to_what(world):
    # Docker Desktop's default, half of a 16 GB Mac, as `docker info` reports it.
    fake_uname(world, "Darwin")
    world.rule("docker", "info --format {{.NCPU}}*", output=f"8 {7_838 * 1024 * 1024}")
    result = world.script("scripts/preflight.sh")
    assert result.returncode == 1
    assert ("FAIL  Each node needs 8192 MiB but Docker has only 7838 MiB. On macOS, Docker's memory is "
            "Docker Desktop's setting, not the Mac's: in Docker Desktop open Settings > Resources > Advanced, "
            "set Memory to at least 18 GB, then click Apply & restart.") in result.stderr
    assert "NODE_MEMORY; the arithmetic at the top of k8s/ray-cluster.yaml" in result.stderr
    assert "uname -s" in world.calls()


def test_preflight_on_macos_names_the_docker_desktop_setting_that_passes_every_check(world):
    fake_uname(world, "Darwin")
    world.rule("docker", "info --format {{.NCPU}}*", output=f"8 {15_800 * 1024 * 1024}")
    result = world.script("scripts/preflight.sh")
    assert result.returncode == 1
    assert "but Docker has only 15800 MiB. On macOS, Docker's memory is Docker Desktop's setting" in result.stderr
    assert "set Memory to at least 18 GB, then click Apply & restart" in result.stderr
    smaller = world.script("scripts/preflight.sh", NODE_MEMORY=6144)
    assert smaller.returncode == 0, smaller.stderr


def test_preflight_on_linux_gives_no_docker_desktop_memory_figure(world):
    fake_uname(world, "Linux")
    world.rule("docker", "info --format {{.NCPU}}*", output=f"8 {15_800 * 1024 * 1024}")
    result = world.script("scripts/preflight.sh")
    assert result.returncode == 1
    assert "Give Docker at least 17408 MiB (Docker Desktop: Settings > Resources > Advanced > Memory" in result.stderr
    assert "On macOS" not in result.stderr and "Apply & restart" not in result.stderr


def test_preflight_counts_the_worker_pods_that_ray_cluster_yaml_asks_for(world):
    # The docs ask learners to edit `replicas`; the floor follows it (2.25 GiB per worker).
    manifest = world.root / "k8s" / "ray-cluster.yaml"
    manifest.write_text(manifest.read_text().replace("      replicas: 2\n", "      replicas: 3\n", 1))
    world.rule("docker", "info --format {{.NCPU}}*", output=f"8 {11_000 * 1024 * 1024}")
    result = world.script("scripts/preflight.sh", NODE_MEMORY=4096)
    assert result.returncode == 1
    assert ("The Ray pods (3 worker(s), 'replicas' in k8s/ray-cluster.yaml) and Kubernetes need about "
            "12032 MiB together but Docker has only 11000 MiB") in result.stderr
    assert "Or lower 'replicas'." in result.stderr


def test_preflight_fails_on_an_architecture_ray_publishes_no_image_for(world):
    world.rule("docker", "version --format {{.Server.Arch}}", output="ppc64le")
    result = world.script("scripts/preflight.sh")
    assert result.returncode == 1
    assert "architecture 'ppc64le'; Ray publishes images for amd64 and arm64 only" in result.stderr


def test_preflight_names_the_aarch64_base_image_on_arm64(world):
    world.rule("docker", "version --format {{.Server.Arch}}", output="arm64")
    world.rule("docker", "info --format {{.NCPU}}*", output=f"8 {ROOMY_DOCKER}")
    result = world.script("scripts/preflight.sh")
    assert result.returncode == 0, result.stderr
    assert "architecture arm64: the image builds FROM rayproject/ray:2.60.0-py311-cpu-aarch64" in result.stdout


def test_preflight_fails_when_docker_is_not_running(world):
    world.rule("docker", "info", code=1, output="Cannot connect to the Docker daemon")
    result = world.script("scripts/preflight.sh")
    assert result.returncode == 1
    assert "Docker is installed but not running" in result.stderr
    assert "docker info --format {{.NCPU}} {{.MemTotal}}" not in world.calls()


def test_preflight_fails_on_too_little_free_disk_before_the_first_install_and_warns_after_it(world, tmp_path):
    world.rule("docker", "info --format {{.NCPU}}*", output=f"8 {ROOMY_DOCKER}")
    world.rule("docker", "info --format {{.DockerRootDir}}", output=str(tmp_path))
    world.rule("minikube", "-p minikube node list", code="85+once", output='Profile "minikube" not found.')
    first = world.script("scripts/preflight.sh", MIN_FREE_DISK_GB=10 ** 6)
    assert first.returncode == 1
    assert "a first install needs about 1000000 GB" in first.stderr and "docker system prune" in first.stderr
    second = world.script("scripts/preflight.sh", MIN_FREE_DISK_GB=10 ** 6)
    assert second.returncode == 0, second.stderr
    assert "profile 'minikube' exists, so its images are probably in already" in second.stderr


def test_preflight_warns_that_docker_desktops_disk_cannot_be_read_from_the_host(world):
    world.rule("docker", "info --format {{.NCPU}}*", output=f"8 {ROOMY_DOCKER}")
    result = world.script("scripts/preflight.sh")
    assert result.returncode == 0, result.stderr
    assert "Make sure it has 30 GB free" in result.stderr


def test_preflight_warns_when_the_nodes_share_fewer_cpus_than_they_may_use(world):
    world.rule("docker", "info --format {{.NCPU}}*", output=f"6 {ROOMY_DOCKER}")
    result = world.script("scripts/preflight.sh")
    assert result.returncode == 0, result.stderr
    assert "The 2 nodes share 6 CPUs" in result.stderr


# ----------------------------------------------------------------------------------
# docker/build-and-push.sh
# ----------------------------------------------------------------------------------

NODES = ("minikube", "minikube-m02")
def inspect_calls():
    """The check of each node for the image's content-hash label, through `minikube ssh`."""
    inspect = f"docker image inspect --format '{{{{index .Config.Labels \"{HASH_LABEL}\"}}}}' {IMAGE}"
    return [f"minikube -p minikube ssh -n {node} -- {inspect}" for node in NODES]


def saved_tar(folder) -> str:
    """The tar file build-and-push.sh saves the image to under FOLDER (IMAGE_TAR_DIR), as logged."""
    return f"{folder}/ray-image-tar.<tmp>/ray-training-demo-image.tar"


def load_call(world: FakeWorld) -> str:
    """The one `minikube image load` of a run with the default IMAGE_TAR_DIR ($TMPDIR)."""
    return f"minikube -p minikube image load {saved_tar(world.env['TMPDIR'])}"


def record_the_image_tar(world: FakeWorld):
    """Put wrappers before the fake docker and minikube: `docker save --output FILE IMAGE`
    writes "tar of IMAGE" to FILE, and `minikube -p P image load FILE` copies FILE to
    FAKE_STATE_DIR/loaded.tar, so a test sees what was loaded; both then run the fake."""
    real = world.bin.parent / "fakebin-behind"
    real.mkdir()
    hooks = {
        "docker": 'if [[ "$1" == save ]]; then printf "tar of %s\\n" "$4" >"$3"; fi',
        "minikube": 'if [[ "$3 $4" == "image load" ]]; then cp "$5" "$FAKE_STATE_DIR/loaded.tar"; fi',
    }
    for tool, hook in hooks.items():
        (real / tool).symlink_to(FAKE_TOOL)
        wrapper = world.bin / tool
        wrapper.unlink()
        wrapper.write_text(f'#!/usr/bin/env bash\n{hook}\nexec "{real}/{tool}" "$@"\n')
        wrapper.chmod(0o755)


def test_build_on_amd64_builds_from_the_plain_base_tag_and_checks_every_node_after_one_load(world):
    result = world.script("docker/build-and-push.sh")
    assert result.returncode == 0, result.stderr
    tmp = world.env["TMPDIR"] + "/ray-image.<tmp>"
    assert world.calls() == [
        "docker info",
        "docker version --format {{.Server.Arch}}",
        f"docker image inspect --format {{{{ index .Config.Labels \"{HASH_LABEL}\" }}}} {IMAGE}",
        f"docker build --build-arg RAY_BASE_IMAGE=rayproject/ray:2.60.0-py311-cpu --label {HASH_LABEL}=<hash> "
        f"--tag {IMAGE} --file {tmp}/Dockerfile {tmp}",
        "minikube -p minikube node list",
        *inspect_calls(),
        f"docker save --output {saved_tar(world.env['TMPDIR'])} {IMAGE}",
        load_call(world),
        *inspect_calls(),
    ]
    label = (world.state / "docker-label").read_text().strip()
    assert label == world.content_hash()
    assert "Every node now has" in result.stdout


def test_build_loads_the_tar_file_that_docker_save_wrote_and_removes_it_afterwards(world):
    record_the_image_tar(world)
    result = world.script("docker/build-and-push.sh")
    assert result.returncode == 0, result.stderr
    assert (world.state / "loaded.tar").read_text() == f"tar of {IMAGE}\n", "the file existed at the load"
    calls = world.calls()
    assert calls.index(f"docker save --output {saved_tar(world.env['TMPDIR'])} {IMAGE}") + 1 == calls.index(load_call(world))
    assert not list(Path(world.env["TMPDIR"]).glob("ray-image-tar.*")), "the tar file and its folder are gone"


def test_build_saves_the_tar_file_under_image_tar_dir_and_leaves_that_folder_empty(world, tmp_path):
    folder = tmp_path / "roomy-disk"
    folder.mkdir()
    record_the_image_tar(world)
    result = world.script("docker/build-and-push.sh", IMAGE_TAR_DIR=folder)
    assert result.returncode == 0, result.stderr
    assert f"IMAGE_TAR_DIR={folder}" in result.stdout
    assert f"docker save --output {saved_tar(folder)} {IMAGE}" in world.calls()
    assert f"minikube -p minikube image load {saved_tar(folder)}" in world.calls()
    assert (world.state / "loaded.tar").exists()
    assert list(folder.iterdir()) == []


def test_build_fails_saying_the_tar_file_needs_the_images_size_on_disk_when_docker_save_fails(world):
    world.rule("docker", "save *", code=1, output="Error response from daemon: no space left on device")
    result = world.script("docker/build-and-push.sh")
    assert result.returncode == 1
    assert "'docker save' failed" in result.stderr
    assert f"The tar file needs about the image's size free on disk in {world.env['TMPDIR']}" in result.stderr
    assert f"docker image ls {IMAGE}" in result.stderr and "set IMAGE_TAR_DIR to a folder with more" in result.stderr
    assert not any(" image load " in call for call in world.calls())
    assert not list(Path(world.env["TMPDIR"]).glob("ray-image*")), "the trap removed both temporary folders"


def test_build_fails_naming_image_tar_dir_when_it_cannot_hold_the_tar_file(world, tmp_path):
    result = world.script("docker/build-and-push.sh", IMAGE_TAR_DIR=tmp_path / "missing")
    assert result.returncode == 1
    assert f"Could not create a folder in IMAGE_TAR_DIR={tmp_path / 'missing'}" in result.stderr
    assert not any(call.startswith("docker save") or " image load " in call for call in world.calls())


def test_build_on_arm64_builds_from_rays_aarch64_base_tag_whose_hash_differs(world):
    world.rule("docker", "version --format*", output="arm64")
    result = world.script("docker/build-and-push.sh")
    assert result.returncode == 0, result.stderr
    assert any(call.startswith("docker build --build-arg RAY_BASE_IMAGE=rayproject/ray:2.60.0-py311-cpu-aarch64 ")
               for call in world.calls())
    assert "base image rayproject/ray:2.60.0-py311-cpu-aarch64" in result.stdout
    label = (world.state / "docker-label").read_text().strip()
    assert label == world.content_hash("rayproject/ray:2.60.0-py311-cpu-aarch64") != world.content_hash()


def test_build_refuses_an_architecture_ray_publishes_no_image_for(world):
    world.rule("docker", "version --format*", output="s390x")
    result = world.script("docker/build-and-push.sh")
    assert result.returncode == 1
    assert "architecture 's390x'" in result.stderr and "amd64 and arm64 only" in result.stderr
    assert not any(call.startswith("docker build") for call in world.calls())


def test_build_rerun_with_unchanged_content_skips_both_the_build_and_the_load(world):
    assert world.script("docker/build-and-push.sh").returncode == 0
    world.clear_log()
    result = world.script("docker/build-and-push.sh")
    assert result.returncode == 0, result.stderr
    assert "is current" in result.stdout and "not loading again" in result.stdout
    assert world.calls()[-3:] == ["minikube -p minikube node list", *inspect_calls()]
    assert not any(call.startswith(("docker build", "docker save")) or " image load " in call
                   for call in world.calls())


def test_build_loads_again_when_one_node_lacks_the_image_that_the_others_have(world):
    assert world.script("docker/build-and-push.sh").returncode == 0
    (world.state / "node-image-minikube-m02").unlink()
    world.clear_log()
    result = world.script("docker/build-and-push.sh")
    assert result.returncode == 0, result.stderr
    assert "Node(s) to load" in result.stdout and "minikube-m02" in result.stdout
    assert not any(call.startswith("docker build") or " image rm " in call for call in world.calls())
    assert load_call(world) in world.calls()


def test_build_fails_naming_the_node_that_still_lacks_the_image_after_the_load(world):
    (world.state / "minikube-failing-nodes").write_text("minikube-m02\n")
    result = world.script("docker/build-and-push.sh")
    assert result.returncode == 1
    assert "node(s) minikube-m02 still lack" in result.stderr
    assert "reports success even when a node fails" in result.stderr
    assert "minikube -p minikube ssh -n minikube-m02 -- df -h /var" in result.stderr
    assert "run docker/build-and-push.sh again" in result.stderr


def test_build_untags_the_older_build_on_every_node_before_loading_a_changed_one(world):
    assert world.script("docker/build-and-push.sh").returncode == 0
    (world.root / "lesson" / "model.py").write_text("LAYERS = 4\n")
    world.clear_log()
    result = world.script("docker/build-and-push.sh")
    assert result.returncode == 0, result.stderr
    calls = world.calls()
    untag = [f"minikube -p minikube ssh -n {node} -- docker image rm --force {IMAGE}" for node in NODES]
    load = load_call(world)
    assert any(call.startswith("docker build") for call in calls)
    assert calls.index(untag[0]) < calls.index(untag[1]) < calls.index(load)
    for node in NODES:
        assert (world.state / f"node-image-{node}").read_text().strip() == world.content_hash()


def test_build_ignores_python_caches_when_hashing_the_training_code(world):
    assert world.script("docker/build-and-push.sh").returncode == 0
    cache = world.root / "lesson" / "__pycache__"
    cache.mkdir()
    (cache / "model.cpython-311.pyc").write_bytes(b"\x00compiled")
    world.clear_log()
    result = world.script("docker/build-and-push.sh")
    assert result.returncode == 0, result.stderr
    assert not any(call.startswith("docker build") for call in world.calls())


def test_build_force_build_rebuilds_and_reloads_current_images(world):
    assert world.script("docker/build-and-push.sh").returncode == 0
    world.clear_log()
    result = world.script("docker/build-and-push.sh", FORCE_BUILD=1)
    assert result.returncode == 0, result.stderr
    assert any(call.startswith("docker build") for call in world.calls())
    assert any(" image load " in call for call in world.calls())


def test_build_fails_with_clear_message_when_docker_build_fails(world):
    world.rule("docker", "build *", code=1, output="failed to solve")
    result = world.script("docker/build-and-push.sh")
    assert result.returncode == 1
    assert "docker build failed" in result.stderr
    assert not any(" image load " in call for call in world.calls())


def test_build_fails_with_the_next_step_when_the_profile_has_no_nodes(world):
    world.rule("minikube", "-p minikube node list", code=85, output='Profile "minikube" not found.')
    result = world.script("docker/build-and-push.sh")
    assert result.returncode == 1
    assert "has no nodes" in result.stderr and "./scripts/setup-minikube.sh" in result.stderr


def test_build_leaves_no_staging_folder_behind(world):
    assert world.script("docker/build-and-push.sh").returncode == 0
    assert not list(Path(world.env["TMPDIR"]).glob("ray-image.*"))


# ----------------------------------------------------------------------------------
# install-ray.sh
# ----------------------------------------------------------------------------------

def ray_ready_rules(world: FakeWorld, workers: str = "True\nTrue", head: str = "True"):
    world.rule("kubectl", "*get raycluster ray-training-cluster --output jsonpath={.spec.workerGroupSpecs*", output="2")
    world.rule("kubectl", "*get raycluster ray-training-cluster", code=1,
               output='Error from server (NotFound): rayclusters.ray.io "ray-training-cluster" not found')
    world.rule("kubectl", "*node-type=head --output*", output=head)
    world.rule("kubectl", "*node-type=worker --output*", output=workers)


INSTALL_CALLS = [
    "kubectl config current-context",
    "kubectl config current-context",
    "kubectl --context minikube --request-timeout=10s get nodes",
    "helm upgrade --install kuberay-operator kuberay-operator "
    "--repo https://ray-project.github.io/kuberay-helm/ --version 1.7.0 "
    "--namespace ray-system --create-namespace --kube-context minikube --wait --timeout 600s",
]
APPLY_CALLS = [
    "kubectl --context minikube --namespace default get raycluster ray-training-cluster",
    "kubectl --context minikube --namespace default apply "
    "--filename <repo>/k8s/ray-cluster.yaml --filename <repo>/k8s/ray-service.yaml",
    REPLICAS_QUERY,
    HEAD_READY_QUERY.format(kind="head"),
    HEAD_READY_QUERY.format(kind="worker"),
]


def test_install_installs_the_pinned_operator_builds_the_image_applies_and_waits_for_all_pods(world):
    world.rule("kubectl", "config current-context", output="minikube")
    ray_ready_rules(world)
    result = world.script("scripts/install-ray.sh")
    assert result.returncode == 0, result.stderr
    calls = world.calls()
    assert calls[:4] == INSTALL_CALLS
    build_calls = calls[4:-5]
    assert [call.split(" ")[:3] for call in build_calls] == [
        ["docker", "info"], ["docker", "version", "--format"], ["docker", "image", "inspect"],
        ["docker", "build", "--build-arg"], ["minikube", "-p", "minikube"],
        *[["minikube", "-p", "minikube"]] * 2, ["docker", "save", "--output"], ["minikube", "-p", "minikube"],
        *[["minikube", "-p", "minikube"]] * 2,
    ]
    assert calls[-5:] == APPLY_CALLS
    assert "KUBERAY_VERSION=1.7.0" in result.stdout
    assert "head Ready, 2/2 workers Ready" in result.stdout


def test_install_with_skip_image_build_does_not_touch_docker(world):
    world.rule("kubectl", "config current-context", output="minikube")
    ray_ready_rules(world)
    result = world.script("scripts/install-ray.sh", SKIP_IMAGE_BUILD=1)
    assert result.returncode == 0, result.stderr
    assert world.calls() == INSTALL_CALLS + APPLY_CALLS


def test_install_refuses_a_kube_context_that_is_not_the_minikube_profile(world):
    world.rule("kubectl", "config current-context", output="prod-cluster")
    result = world.script("scripts/install-ray.sh")
    assert result.returncode == 1
    assert "current context is 'prod-cluster', not the minikube profile 'minikube'" in result.stderr
    assert "ALLOW_ANY_CONTEXT=1" in result.stderr
    assert world.calls() == ["kubectl config current-context"]
    assert "left in place" not in result.stderr


def test_install_uses_another_context_only_when_allowed_explicitly(world):
    world.rule("kubectl", "config current-context", output="kind-ray")
    world.rule("kubectl", "*get raycluster ray-training-cluster --output jsonpath={.spec.workerGroupSpecs*", output="2")
    world.rule("kubectl", "*get raycluster ray-training-cluster", code=1)
    world.rule("kubectl", "*node-type=head --output*", output="True")
    world.rule("kubectl", "*node-type=worker --output*", output="True\nTrue")
    result = world.script("scripts/install-ray.sh", ALLOW_ANY_CONTEXT=1, SKIP_IMAGE_BUILD=1)
    assert result.returncode == 0, result.stderr
    assert "ALLOW_ANY_CONTEXT=1: using kube-context 'kind-ray'" in result.stderr
    assert any(call.startswith("helm ") and "--kube-context kind-ray" in call for call in world.calls())


def test_install_fails_with_clear_message_when_helm_is_missing(world):
    world.remove_tool("helm")
    result = world.script("scripts/install-ray.sh")
    assert result.returncode == 1
    assert "'helm' is not installed or not on PATH" in result.stderr
    assert "https://helm.sh/docs/intro/install/" in result.stderr
    assert world.calls() == []


def test_install_fails_with_clear_message_when_kubectl_is_missing(world):
    world.remove_tool("kubectl")
    result = world.script("scripts/install-ray.sh")
    assert result.returncode == 1
    assert "'kubectl' is not installed" in result.stderr


def test_install_fails_with_clear_message_when_the_cluster_does_not_answer(world):
    world.rule("kubectl", "config current-context", output="minikube")
    world.rule("kubectl", "*get nodes", code=1, output="The connection to the server was refused")
    result = world.script("scripts/install-ray.sh")
    assert result.returncode == 1
    assert "Cannot reach the cluster of context 'minikube'" in result.stderr
    assert not any(call.startswith("helm") for call in world.calls())


POD_STATE_QUERY = "*get pods --selector ray.io/cluster=ray-training-cluster --output jsonpath=*PodScheduled*"


def test_install_times_out_with_each_unready_pods_state_its_fix_and_the_events(world):
    world.rule("kubectl", "config current-context", output="minikube")
    world.rule("kubectl", POD_STATE_QUERY,
               output="ray-training-cluster-head-x7k2p|Running| | |||True\n"
                      "ray-training-cluster-workers-worker-fghij|Pending| | |Unschedulable|"
                      "0/2 nodes are available: 2 Insufficient memory.|False")
    world.rule("kubectl", "*get events*", output="Warning  FailedScheduling  pod/ray-training-cluster-workers-worker-fghij")
    ray_ready_rules(world, workers="True\nFalse")
    result = world.script("scripts/install-ray.sh", SKIP_IMAGE_BUILD=1, POD_READY_TIMEOUT=1, POLL_INTERVAL=0)
    assert result.returncode == 1
    assert "Timed out after 1s: head Ready 1/1, workers Ready 1/2" in result.stderr
    assert "Pod ray-training-cluster-workers-worker-fghij: Pending\n" in result.stderr
    assert "not scheduled: 0/2 nodes are available: 2 Insufficient memory." in result.stderr
    assert "Lower 'replicas' in k8s/ray-cluster.yaml" in result.stderr
    assert "ray-training-cluster-head-x7k2p" not in result.stderr, "a Ready pod needs no explaining"
    assert "FailedScheduling" in result.stderr
    assert world.calls()[-1] == ("kubectl --context minikube --namespace default get events "
                                 "--sort-by=.lastTimestamp")
    assert "left in place for inspection" in result.stderr
    assert "./scripts/cleanup.sh" in result.stderr


@pytest.mark.parametrize("fields, shown, fix", [
    ("Running| |OOMKilled OOMKilled|PodScheduled||False", "Running (OOMKilled OOMKilled)",
     "OOMKilled: a process used more memory than the pod's limit"),
    ("Pending|ImagePullBackOff| |PodScheduled||False", "Pending (ImagePullBackOff)",
     "Kubernetes could not download the pod's image"),
    ("Pending|ErrImageNeverPull | |PodScheduled||False", "Pending (ErrImageNeverPull)",
     "Run docker/build-and-push.sh: it checks every node"),
    ("Running|CrashLoopBackOff|Error|PodScheduled||False", "Running (CrashLoopBackOff Error)",
     "kubectl logs --previous -n default ray-training-cluster-workers-worker-fghij --all-containers"),
    ("Pending| | |Unschedulable|0/2 nodes are available: 2 Insufficient cpu.|False", "Pending",
     "Pending, not scheduled: 0/2 nodes are available: 2 Insufficient cpu. Lower"),
], ids=["OOMKilled", "ImagePullBackOff", "ErrImageNeverPull", "CrashLoopBackOff", "Pending-Unschedulable"])
def test_install_explains_a_pod_stuck_in_each_container_state_with_its_fix(world, fields, shown, fix):
    world.rule("kubectl", "config current-context", output="minikube")
    world.rule("kubectl", POD_STATE_QUERY, output=f"ray-training-cluster-workers-worker-fghij|{fields}")
    ray_ready_rules(world, workers="True\nFalse")
    result = world.script("scripts/install-ray.sh", SKIP_IMAGE_BUILD=1, POD_READY_TIMEOUT=1, POLL_INTERVAL=0)
    assert result.returncode == 1
    assert f"Pod ray-training-cluster-workers-worker-fghij: {shown}\n  -> " in result.stderr
    assert fix in result.stderr


def test_install_times_out_with_a_hint_when_no_head_pod_exists(world):
    world.rule("kubectl", "config current-context", output="minikube")
    ray_ready_rules(world, workers="", head="")
    result = world.script("scripts/install-ray.sh", SKIP_IMAGE_BUILD=1, POD_READY_TIMEOUT=1, POLL_INTERVAL=0)
    assert result.returncode == 1
    assert "head Ready 0/1, workers Ready 0/2" in result.stderr
    assert "No pod matches. Is the operator running?" in result.stderr
    assert "-n ray-system logs deployment/kuberay-operator" in result.stderr


def test_install_fails_with_clear_message_when_the_operator_chart_cannot_be_installed(world):
    world.rule("kubectl", "config current-context", output="minikube")
    world.rule("helm", "upgrade *", code=1, output="Error: looks like the repo is not reachable")
    result = world.script("scripts/install-ray.sh")
    assert result.returncode == 1
    assert "Helm could not install kuberay-operator 1.7.0" in result.stderr
    assert "stopped while installing the KubeRay operator" in result.stderr
    assert not any(" apply " in call for call in world.calls())


def test_install_rerun_with_a_current_image_keeps_the_running_pods(world):
    world.rule("kubectl", "config current-context", output="minikube")
    world.rule("kubectl", "*get raycluster ray-training-cluster --output jsonpath={.spec.workerGroupSpecs*", output="2")
    world.rule("kubectl", "*node-type=head --output*", output="True")
    world.rule("kubectl", "*node-type=worker --output*", output="True\nTrue")
    assert world.script("scripts/install-ray.sh").returncode == 0
    world.clear_log()
    result = world.script("scripts/install-ray.sh")
    assert result.returncode == 0, result.stderr
    assert not any(call.startswith("docker build") or " image load " in call for call in world.calls())
    assert not any(" delete pods " in call for call in world.calls())


def test_install_rerun_after_a_code_change_restarts_the_ray_pods_on_the_new_image(world):
    world.rule("kubectl", "config current-context", output="minikube")
    world.rule("kubectl", "*get raycluster ray-training-cluster --output jsonpath={.spec.workerGroupSpecs*", output="2")
    world.rule("kubectl", "*node-type=head --output*", output="True")
    world.rule("kubectl", "*node-type=worker --output*", output="True\nTrue")
    assert world.script("scripts/install-ray.sh").returncode == 0
    (world.root / "lesson" / "model.py").write_text("LAYERS = 5\n")
    world.clear_log()
    result = world.script("scripts/install-ray.sh")
    assert result.returncode == 0, result.stderr
    assert ("kubectl --context minikube --namespace default delete pods "
            "--selector ray.io/cluster=ray-training-cluster") in world.calls()


def test_install_refuses_a_cluster_name_that_the_manifest_does_not_use(world):
    world.rule("kubectl", "config current-context", output="minikube")
    result = world.script("scripts/install-ray.sh", RAY_CLUSTER_NAME="other")
    assert result.returncode == 1
    assert "RAY_CLUSTER_NAME is 'other'" in result.stderr


# ----------------------------------------------------------------------------------
# cleanup.sh
# ----------------------------------------------------------------------------------

def cleanup_rules(world: FakeWorld):
    world.rule("kubectl", "config get-contexts --output name", output="kind-other\nminikube")


CLEANUP_CALLS = [
    "kubectl config get-contexts --output name",
    "kubectl --context minikube --request-timeout=30s get namespace default",
    "kubectl --context minikube --request-timeout=30s get crd rayjobs.ray.io",
    "kubectl --context minikube --request-timeout=30s --namespace default delete rayjobs --selector "
    "app.kubernetes.io/part-of=ray-parallel-training-demo --ignore-not-found --timeout=120s",
    "kubectl --context minikube --request-timeout=30s --namespace default delete service "
    "ray-head-nodeport --ignore-not-found",
    "kubectl --context minikube --request-timeout=30s get crd rayclusters.ray.io",
    "kubectl --context minikube --request-timeout=30s --namespace default delete raycluster "
    "ray-training-cluster --ignore-not-found --timeout=120s",
    "kubectl --context minikube --request-timeout=30s --namespace default wait --for=delete pod "
    "--selector ray.io/cluster=ray-training-cluster --timeout=120s",
    "kubectl --context minikube --request-timeout=30s --namespace default delete --filename "
    "<repo>/k8s/checkpoint-storage.yaml --ignore-not-found --timeout=120s",
    "kubectl --context minikube --request-timeout=30s get crd podmonitors.monitoring.coreos.com",
    "kubectl --context minikube --request-timeout=30s --namespace default delete --filename "
    "<repo>/k8s/ray-monitors.yaml --ignore-not-found --timeout=120s",
    "kubectl --context minikube --request-timeout=30s --namespace prometheus-system delete configmap "
    "--selector app.kubernetes.io/part-of=ray-parallel-training-demo --ignore-not-found --timeout=120s",
    "helm status prometheus --namespace prometheus-system --kube-context minikube",
    "helm uninstall prometheus --namespace prometheus-system --kube-context minikube --wait",
    "helm status kuberay-operator --namespace ray-system --kube-context minikube",
    "helm uninstall kuberay-operator --namespace ray-system --kube-context minikube --wait",
    "kubectl --context minikube --request-timeout=30s delete crd rayclusters.ray.io rayjobs.ray.io "
    "rayservices.ray.io raycronjobs.ray.io --ignore-not-found --timeout=120s",
    "kubectl --context minikube --request-timeout=30s delete crd --selector "
    "app.kubernetes.io/part-of=ray-parallel-training-demo --ignore-not-found --timeout=120s",
    "kubectl --context minikube --request-timeout=30s delete namespace ray-system "
    "--ignore-not-found --timeout=120s",
    "kubectl --context minikube --request-timeout=30s delete namespace prometheus-system "
    "--ignore-not-found --timeout=120s",
]


def test_cleanup_keeps_the_crds_when_asked_to(world):
    cleanup_rules(world)
    result = world.script("scripts/cleanup.sh", KEEP_CRDS=1)
    assert result.returncode == 0, result.stderr
    assert not any(" delete crd " in call for call in world.calls())
    assert "KEEP_CRDS=1: keeping the CRDs" in result.stdout and "and the monitoring.coreos.com ones" in result.stdout


def test_cleanup_without_helm_deletes_the_namespaces_of_both_releases_instead(world):
    cleanup_rules(world)
    world.remove_tool("helm")
    result = world.script("scripts/cleanup.sh")
    assert result.returncode == 0, result.stderr
    assert "the monitoring release cannot be uninstalled; deleting its namespace instead" in result.stderr
    assert "the operator release cannot be uninstalled; deleting its namespace instead" in result.stderr
    deleted = [call.split()[6] for call in world.calls() if " delete namespace " in call]
    assert deleted == ["ray-system", "prometheus-system"]


def test_cleanup_deletes_the_rayjobs_the_raycluster_monitoring_the_operator_their_crds_and_namespaces(world):
    cleanup_rules(world)
    result = world.script("scripts/cleanup.sh")
    assert result.returncode == 0, result.stderr
    assert world.calls() == CLEANUP_CALLS
    assert "Cleanup finished." in result.stdout


def test_cleanup_only_talks_to_the_profile_context_even_when_another_is_current(world):
    cleanup_rules(world)
    world.rule("kubectl", "config current-context", output="prod-cluster")
    result = world.script("scripts/cleanup.sh")
    assert result.returncode == 0, result.stderr
    assert not any("prod-cluster" in call for call in world.calls())


def test_cleanup_works_on_a_half_installed_cluster_and_when_run_twice(world):
    cleanup_rules(world)
    world.rule("kubectl", "*get crd ray*.ray.io", code=1, output="NotFound")
    world.rule("kubectl", "*get crd podmonitors.monitoring.coreos.com", code=1, output="NotFound")
    world.rule("helm", "status *", code=1, output="Error: release: not found")
    for _ in range(2):
        world.clear_log()
        result = world.script("scripts/cleanup.sh")
        assert result.returncode == 0, result.stderr
        assert "no RayCluster to delete" in result.stdout
        assert "No kuberay-operator release" in result.stdout
        assert "No prometheus release in namespace 'prometheus-system'" in result.stdout
        assert not any("helm uninstall" in call or "ray-monitors.yaml" in call for call in world.calls())
        assert world.calls()[-1].endswith("delete namespace prometheus-system --ignore-not-found --timeout=120s")


def test_cleanup_with_delete_cluster_also_deletes_the_minikube_profile(world):
    cleanup_rules(world)
    result = world.script("scripts/cleanup.sh", DELETE_CLUSTER=1)
    assert result.returncode == 0, result.stderr
    assert world.calls() == CLEANUP_CALLS + ["minikube delete -p minikube"]


def test_cleanup_says_there_is_nothing_to_do_when_the_profile_is_gone(world):
    world.rule("kubectl", "config get-contexts --output name", output="kind-other")
    result = world.script("scripts/cleanup.sh")
    assert result.returncode == 0, result.stderr
    assert "nothing to remove from a cluster" in result.stdout
    assert world.calls() == ["kubectl config get-contexts --output name"]


def test_cleanup_of_a_stopped_cluster_explains_how_to_proceed(world):
    cleanup_rules(world)
    world.rule("kubectl", "*get namespace default", code=1, output="connection refused")
    result = world.script("scripts/cleanup.sh")
    assert result.returncode == 1
    assert "does not answer" in result.stderr and "DELETE_CLUSTER=1" in result.stderr


def test_cleanup_of_a_stopped_cluster_with_delete_cluster_deletes_the_profile(world):
    cleanup_rules(world)
    world.rule("kubectl", "*get namespace default", code=1)
    result = world.script("scripts/cleanup.sh", DELETE_CLUSTER=1)
    assert result.returncode == 0, result.stderr
    assert world.calls()[-1] == "minikube delete -p minikube"
    assert not any("delete raycluster" in call for call in world.calls())


def test_cleanup_deletes_a_custom_ray_namespace_but_never_default(world):
    cleanup_rules(world)
    result = world.script("scripts/cleanup.sh", RAY_NAMESPACE="ray-demo")
    assert result.returncode == 0, result.stderr
    deleted = [call.split()[6] for call in world.calls() if " delete namespace " in call]
    assert deleted == ["ray-system", "prometheus-system", "ray-demo"]


def test_cleanup_without_kubectl_names_the_local_folders_and_finds_no_cluster_to_clean(world):
    world.remove_tool("kubectl")
    result = world.script("scripts/cleanup.sh")
    assert result.returncode == 0, result.stderr
    assert "kubectl is not installed, so no Kubernetes cluster of this demo can be running" in result.stdout
    assert "Folders this demo writes on this machine" in result.stdout
    # Deleting the profile, or another context, still needs kubectl.
    result = world.script("scripts/cleanup.sh", DELETE_CLUSTER=1)
    assert result.returncode == 1
    assert "'kubectl' is not installed" in result.stderr


def test_cleanup_names_every_folder_the_demo_writes_with_its_size_and_removes_none(world):
    cleanup_rules(world)
    tmp = Path(world.env["TMPDIR"])
    made = {world.root / "results" / "20260101-000000-local": 3000, world.root / ".data": 10,
            tmp / "ray-demo-6380" / "ray-head": 2000, tmp / "ray-demo-run-abc123": 10,
            tmp / "ray-demo-checkpoint-xyz789": 10}
    for folder, size in made.items():
        folder.mkdir(parents=True)
        (folder / "file").write_bytes(b"x" * 1024 * size)
    result = world.script("scripts/cleanup.sh")
    assert result.returncode == 0, result.stderr
    listed = {line.split()[1]: line.split()[2] for line in result.stdout.splitlines() if line.startswith("[cleanup.sh]   ")
              and line.split()[1].endswith("/")}
    # du's sizes: about 3 MB and 2 MB for the two larger folders; "-" for one that is not there.
    assert re.fullmatch(r"3(\.\d)?M", listed["results/"]) and re.fullmatch(r"2(\.\d)?M", listed[f"{tmp}/ray-demo-6380/"])
    assert listed[".data/"] != "-" and listed["checkpoints/"] == "-"
    assert ".venv/" in listed and "/tmp/ray/" in listed
    lines = result.stdout.splitlines()
    assert any(f"{tmp}/ray-demo-run-abc123/" in line and "a run without checkpoints, killed before its end" in line
               for line in lines)
    assert any(f"{tmp}/ray-demo-checkpoint-xyz789/" in line and "when it was killed (the chaos demo)" in line
               for line in lines)
    assert any(f"{tmp}/ray-demo-6380/" in line and "a local cluster's nodes: their temp folders and logs" in line
               for line in lines)
    assert all(folder.exists() for folder in made)


# ----------------------------------------------------------------------------------
# scripts/targets/minikube.sh (the Minikube target of run-benchmark.sh and chaos.sh)
# ----------------------------------------------------------------------------------

SOURCE_TARGET = ("source scripts/lib/common.sh && source scripts/lib/venv.sh && source scripts/lib/recipe.sh && "
                 "source scripts/lib/targets.sh && source_target minikube && ")
BENCHMARK_SETTINGS = dict(EPOCHS=2, BATCH_SIZE=32, DATASET="synthetic", TRAIN_SIZE=2000,
                          TEST_SIZE=500, RESULTS_DIR="results/minikube", NUM_WORKERS="",
                          CPUS_PER_WORKER="")
HEAD = "ray-training-cluster-head-x7k2p"
# The recipe's flags (lesson/recipe.py) for BENCHMARK_SETTINGS, with the 2 workers x 1 CPU
# that Ray's view of the pods gives.
TARGET_RECIPE = ("--dataset synthetic --train-size 2000 --test-size 500 --epochs 2 --batch-size 32 "
                 "--num-workers 2 --cpus-per-worker 1 --learning-rate 0.001 --lr-scaling none --seed 42 "
                 "--max-failures 2")


RUN_FILES = ("baseline_results.json", "ray_results_2workers.json", "comparison.json", "REPORT.md", "speedup.png")


def pod_results_tar(world: FakeWorld, files=RUN_FILES) -> Path:
    """A tar stream of a run folder, as `tar -C DIR -cf - .` in the head pod writes it."""
    source = world.root.parent / f"pod-run-{len(files)}"
    source.mkdir(exist_ok=True)
    for name in files:
        (source / name).write_text(f"{name} from the pod\n")
    archive = world.root.parent / f"pod-run-{len(files)}.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(source, arcname=".")
    return archive


def target_rules(world: FakeWorld, worker_cpus: str = "1 1", head: str = HEAD):
    world.rule("kubectl", "config current-context", output="minikube")
    world.rule("kubectl", "*--selector ray.io/cluster=ray-training-cluster,ray.io/node-type=head*",
               output=head)
    world.rule("kubectl", "*exec * -- python -c *STOPPED*", output="STOPPED")
    world.rule("kubectl", "*exec * -- python -c *KEPT*", output="REMOVED train_run-1 80\nKEPT 5")
    world.rule("kubectl", "*exec * -- python -c *",
               output=f"2026-11-25 INFO worker.py: Connecting to existing Ray cluster\nRAY_WORKER_CPUS {worker_cpus}".rstrip())
    world.rule("kubectl", "*exec * -- tar -C /tmp/results/* -cf - .", output=f"@{pod_results_tar(world)}")


def run_target(world: FakeWorld, **settings):
    return world.run(SOURCE_TARGET + "resolve_recipe default && target_benchmark", **dict(BENCHMARK_SETTINGS, **settings))


def exec_call(*args: str) -> str:
    return ("kubectl --context minikube --namespace default exec " + HEAD
            + " -c ray-head -- " + " ".join(args))


def test_target_is_available_when_kubectl_points_at_the_profile_with_a_head_pod(world):
    target_rules(world)
    result = world.run(SOURCE_TARGET + 'target_available && echo "$TARGET_REASON"')
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ("kube-context minikube has RayCluster ray-training-cluster "
                                     f"(head pod {HEAD})")
    assert world.calls() == [
        "kubectl config current-context",
        HEAD_POD_QUERY.format(flags="--context minikube --request-timeout=5s"),
    ]


@pytest.mark.parametrize("situation", ["kubectl missing", "other context", "no head pod"])
def test_target_is_unavailable_quietly_when_the_cluster_is_not_ready(world, situation):
    if situation == "kubectl missing":
        world.remove_tool("kubectl")
    elif situation == "other context":
        world.rule("kubectl", "config current-context", output="kind-other")
    else:
        target_rules(world, head="")
    result = world.run(SOURCE_TARGET + "target_available")
    assert result.returncode == 1
    assert result.stdout == "" and result.stderr == ""
    assert not any(" exec " in call for call in world.calls())


def test_target_runs_baseline_then_ray_then_compare_in_the_head_pod_and_copies_results(world):
    target_rules(world)
    result = run_target(world)
    assert result.returncode == 0, result.stderr
    pod_dir = "/tmp/results/run-<time>"
    calls = world.calls()
    assert calls[:3] == [
        "kubectl config current-context",
        "kubectl config current-context",
        HEAD_POD_QUERY.format(flags="--context minikube --request-timeout=10s"),
    ]
    assert calls[3].startswith(exec_call("python -c"))
    assert calls[4:] == [
        exec_call("python -m lesson.baseline_training", TARGET_RECIPE, "--results-dir", pod_dir),
        exec_call("python -m lesson.ray_training", TARGET_RECIPE, "--results-dir", pod_dir, "--address auto"),
        exec_call("python -m analysis.compare --results-dir", pod_dir, "--num-workers 2"),
        exec_call("python -m analysis.report --run-dir", pod_dir),
        exec_call("tar -C", pod_dir, "-cf - ."),
    ]
    assert "Ray sees 2 worker pod(s) with CPUs (1 1); running 2 worker(s) x 1 CPU(s)." in result.stdout
    for name in RUN_FILES:
        assert (world.root / "results" / "minikube" / name).read_text() == f"{name} from the pod\n"


def test_target_fails_naming_the_file_missing_from_the_copied_run_folder(world):
    world.rule("kubectl", "*exec * -- tar -C /tmp/results/* -cf - .",
               output=f"@{pod_results_tar(world, files=('baseline_results.json',))}")
    target_rules(world)
    result = run_target(world)
    assert result.returncode == 1
    assert "ray_results_2workers.json is missing from the results copied from" in result.stderr


def test_benchmark_on_minikube_needs_no_venv_and_brings_back_the_report(world):
    target_rules(world)
    result = world.script("scripts/run-benchmark.sh", TARGET="minikube")
    assert result.returncode == 0, result.stderr
    run_dir = world.root / "results" / "latest"
    assert run_dir.is_symlink() and run_dir.resolve().name.endswith("-minikube")
    assert (run_dir / "REPORT.md").read_text() == "REPORT.md from the pod\n"
    assert not (world.root / ".venv").exists(), "the minikube target runs everything in the pod"
    assert not any("STOPPED" in call for call in world.calls()), "a finished run needs no stopping"


TUNE_FILES = ("tune_results.json", "TUNE.md", "tune_curves.png")


def test_tune_on_minikube_runs_the_search_and_its_report_in_the_head_pod_and_copies_them_back(world):
    world.rule("kubectl", "*exec * -- tar -C /tmp/results/tune-run-* -cf - .",
               output=f"@{pod_results_tar(world, files=TUNE_FILES)}")
    target_rules(world)
    result = world.script("scripts/run-tune.sh", TARGET="minikube", WAYS="plain,plain-asha", EPOCHS=2)
    assert result.returncode == 0, result.stderr
    pod_dir = "/tmp/results/tune-run-<time>"
    recipe = TARGET_RECIPE.replace("--train-size 2000 --test-size 500", "--train-size 2048 --test-size 1024")
    calls = [call for call in world.calls() if " exec " in call and " python -c " not in call]
    assert calls == [
        exec_call("python -m lesson.ray_tune", recipe.replace("--batch-size 32", "--batch-size 64"),
                  "--results-dir", pod_dir, "--ways plain,plain-asha --address auto"),
        exec_call("python -m analysis.tune_report --run-dir", pod_dir),
        exec_call("tar -C", pod_dir, "-cf - ."),
    ]
    run_dir = world.root / "results" / "latest"
    assert run_dir.resolve().name.endswith("-minikube-tune")
    assert (run_dir / "TUNE.md").read_text() == "TUNE.md from the pod\n"
    assert not (world.root / ".venv").exists(), "the minikube target runs everything in the pod"


def test_rayjob_dry_run_of_the_tune_search_renders_its_entrypoint(world):
    result = world.script("scripts/run-rayjob.sh", "--dry-run", "--smoke-test", JOB="tune", NUM_WORKERS=2,
                          GLOBAL_BATCHES="64,3")
    assert result.returncode == 0, result.stderr
    job = yaml.safe_load(result.stdout)
    words = shlex.split(job["spec"]["entrypoint"])
    pod_dir = f"/tmp/results/{job['metadata']['name']}"
    recipe = ("--dataset synthetic --train-size 256 --test-size 128 --epochs 1 --batch-size 32 --num-workers 2 "
              "--cpus-per-worker 1 --learning-rate 0.001 --lr-scaling none --seed 42 --max-failures 2")
    assert words[2].split(" && ") == [
        # printf %q escapes the comma; the job's shell reads it back as 64,3.
        f"python -m lesson.ray_tune {recipe} --results-dir {pod_dir} --global-batches 64\\,3 --address auto",
        f"python -m analysis.tune_report --run-dir {pod_dir}",
    ]
    assert world.calls() == [], "--dry-run touches nothing"
    refused = world.script("scripts/run-rayjob.sh", "--dry-run", JOB="search")
    assert refused.returncode != 0 and "JOB must be one of: benchmark tune; got 'search'." in refused.stderr


def test_benchmark_on_minikube_interrupted_stops_this_runs_processes_in_the_pod_and_exits_130(world):
    target_rules(world)
    world.rule("kubectl", "*python -m lesson.baseline_training*", code="0@30")
    process = subprocess.Popen(["./scripts/run-benchmark.sh"], cwd=world.root, text=True,
                               env=dict(world.env, TARGET="minikube"), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, start_new_session=True, preexec_fn=interruptible)
    deadline = time.time() + 20
    while not any("lesson.baseline_training" in call for call in world.calls()) and time.time() < deadline:
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGINT)  # as Ctrl-C in a terminal: the whole foreground group
    _, stderr = process.communicate(timeout=40)
    assert process.returncode == 130, stderr
    stops = [call for call in world.calls() if "STOPPED" in call]
    assert len(stops) == 1 and stops[0].startswith(exec_call("python -c"))
    assert stops[0].endswith(" --results-dir /tmp/results/run-<time>"), "exactly this run's processes"
    assert not any("lesson.ray_training" in call for call in world.calls())
    failed = list((world.root / "results").glob("*-minikube/FAILED"))
    assert len(failed) == 1 and "Interrupted" in failed[0].read_text()


def test_target_with_checkpoints_keeps_only_the_newest_keep_runs_runs_in_the_store(world):
    target_rules(world)
    result = run_target(world, CHECKPOINT=1, KEEP_RUNS=3)
    assert result.returncode == 0, result.stderr
    calls = world.calls()
    prune = next(call for call in calls if "KEPT" in call)
    assert prune.startswith(exec_call("python -c")) and prune.endswith(" s3://ray-checkpoints/runs 3")
    assert calls.index(prune) < calls.index(next(call for call in calls if "lesson.ray_training" in call))
    assert "kept the newest 3 run(s) of s3://ray-checkpoints/runs (KEEP_RUNS), removed 1 older one(s)" in result.stdout


def test_target_goes_on_with_a_warning_when_the_store_cannot_be_pruned(world):
    world.rule("kubectl", "*exec * -- python -c *KEPT*", code=1, output="OSError: When listing objects: AWS Error")
    target_rules(world)
    result = run_target(world, CHECKPOINT=1)
    assert result.returncode == 0, result.stderr
    assert "Could not remove old runs from the checkpoint store (OSError: When listing objects" in result.stderr
    assert any("lesson.ray_training" in call for call in world.calls())


def test_benchmark_on_minikube_refuses_a_recipe_bigger_than_the_pods_hold_before_touching_the_cluster(world):
    target_rules(world)
    result = world.script("scripts/run-benchmark.sh", "--full", TARGET="minikube")
    assert result.returncode == 1
    assert "TRAIN_SIZE + TEST_SIZE = 60000 examples, but the pods of k8s/ray-cluster.yaml are sized for at most 14000" \
        in result.stderr
    assert "NODE_MEMORY=11264" in result.stderr and "Or lower TRAIN_SIZE" in result.stderr
    assert world.calls() == []


def test_rayjob_refuses_a_recipe_bigger_than_the_pods_hold_before_submitting(world):
    rayjob_rules(world)
    result = world.script("scripts/run-rayjob.sh", TRAIN_SIZE=20000)
    assert result.returncode == 1
    assert "= 21024 examples, but the pods of k8s/ray-cluster.yaml are sized for at most 14000" in result.stderr
    assert world.calls() == []


def test_target_uses_the_requested_worker_count_when_it_fits(world):
    target_rules(world, worker_cpus="1 1 1")
    result = run_target(world, NUM_WORKERS=2)
    assert result.returncode == 0, result.stderr
    trainings = [call for call in world.calls() if "-m lesson." in call]
    assert len(trainings) == 2 and all("--num-workers 2 --cpus-per-worker 1" in call for call in trainings)


def test_target_fails_with_clear_message_when_more_workers_are_asked_than_the_cluster_has(world):
    target_rules(world)
    result = run_target(world, NUM_WORKERS=3)
    assert result.returncode == 1
    assert "NUM_WORKERS=3 x CPUS_PER_WORKER=1 does not fit" in result.stderr
    assert "room for 2 such worker(s)" in result.stderr
    assert "k8s/ray-cluster.yaml" in result.stderr
    assert not any("-m lesson." in call for call in world.calls())


def test_target_fails_with_clear_message_when_workers_are_asked_more_cpus_than_a_pod_has(world):
    target_rules(world)
    result = run_target(world, CPUS_PER_WORKER=2)
    assert result.returncode == 1
    assert "CPUS_PER_WORKER=2 does not fit: Ray's 2 worker pod(s) have (1 1) CPUs each" in result.stderr
    assert not any("-m lesson." in call for call in world.calls())


def test_target_fails_with_clear_message_when_no_head_pod_exists(world):
    target_rules(world, head="")
    result = run_target(world)
    assert result.returncode == 1
    assert "No running Ray head pod" in result.stderr
    assert "./scripts/install-ray.sh" in result.stderr
    assert not any(" exec " in call for call in world.calls())


def test_target_fails_with_clear_message_when_no_worker_has_joined_ray(world):
    target_rules(world, worker_cpus="")
    result = run_target(world)
    assert result.returncode == 1
    assert "No Ray worker has joined the cluster yet" in result.stderr


def test_target_refuses_a_kube_context_that_is_not_the_minikube_profile(world):
    world.rule("kubectl", "config current-context", output="prod-cluster")
    result = run_target(world)
    assert result.returncode == 1
    assert "refusing to touch it" in result.stderr
    assert world.calls() == ["kubectl config current-context"]


def test_target_stops_with_the_failing_step_when_ray_training_fails(world):
    target_rules(world)
    world.rule("kubectl", "*python -m lesson.ray_training*", code=1, output="ValueError: boom")
    result = run_target(world)
    assert result.returncode == 1
    assert "Ray training failed" in result.stderr
    assert not any("analysis.compare" in call or " cp " in call for call in world.calls())


# ----------------------------------------------------------------------------------
# Checkpoints on Kubernetes: the in-cluster S3 store (CHECKPOINTS=1 install-ray.sh),
# CHECKPOINT=1 / RESUME=1 on the minikube target, and chaos.sh with TARGET=minikube.
# (tests/test_storage.py runs the storage code itself against a real S3 server.)
# ----------------------------------------------------------------------------------

STORE_CALLS = [
    "kubectl --context minikube --namespace default apply --filename <repo>/k8s/checkpoint-storage.yaml",
    "kubectl --context minikube --namespace default rollout status deployment/ray-checkpoint-storage "
    "--timeout=600s",
]
PRINTENV_CALL = exec_call("printenv AWS_ACCESS_KEY_ID")
WORKER_POD = "ray-training-cluster-workers-worker-abcde"


def existing_cluster_rules(world: FakeWorld):
    world.rule("kubectl", "config current-context", output="minikube")
    world.rule("kubectl", "*get raycluster ray-training-cluster --output jsonpath={.spec.workerGroupSpecs*", output="2")
    world.rule("kubectl", "*node-type=head --output*", output="True")
    world.rule("kubectl", "*node-type=worker --output*", output="True\nTrue")
    world.rule("kubectl", "*--selector ray.io/cluster=ray-training-cluster,ray.io/node-type=head*",
               output=HEAD)


OLD_WORKERS = "ray-training-cluster-workers-worker-abcde\nray-training-cluster-workers-worker-fghij"


def changed_cluster_rules(world: FakeWorld, pods_after: str):
    """An existing RayCluster whose applied spec changed; its live pods before and after."""
    existing_cluster_rules(world)
    world.rule("kubectl", "*get raycluster ray-training-cluster", output="ray-training-cluster")
    world.rule("kubectl", "*apply --filename*ray-cluster.yaml*",
               output="raycluster.ray.io/ray-training-cluster configured\nservice/ray-head-nodeport unchanged")
    world.rule("kubectl", "*get raycluster ray-training-cluster --output jsonpath={.metadata.generation}*",
               output="3 3")
    world.rule("kubectl", "*deletionTimestamp*", code="0+once", output=f"{HEAD}\n{OLD_WORKERS}")
    world.rule("kubectl", "*deletionTimestamp*", output=pods_after)


def test_install_says_kuberay_recreates_the_pods_of_a_changed_spec_and_waits_for_the_old_ones(world):
    changed_cluster_rules(world, pods_after="ray-training-cluster-head-n3w9q\n"
                                            f"{HEAD} 2026-12-01T00:00:00Z")
    result = world.script("scripts/install-ray.sh", SKIP_IMAGE_BUILD=1, POLL_INTERVAL=0)
    assert result.returncode == 0, result.stderr
    assert "KubeRay is deleting every Ray pod and creating it anew" in result.stdout
    assert "upgradeStrategy: Recreate" in result.stdout
    calls = world.calls()
    wait = ("kubectl --context minikube --namespace default wait --for=delete "
            f"pod/{HEAD} pod/ray-training-cluster-workers-worker-abcde "
            "pod/ray-training-cluster-workers-worker-fghij --timeout=600s")
    assert wait in calls
    assert calls.index(wait) < calls.index(HEAD_READY_QUERY.format(kind="head"))
    assert not any(" delete pods " in call for call in calls), "KubeRay restarts them itself"


def test_install_says_a_changed_worker_count_restarts_no_pod(world):
    changed_cluster_rules(world, pods_after=f"{HEAD}\n{OLD_WORKERS}\nray-training-cluster-workers-worker-klmno")
    result = world.script("scripts/install-ray.sh", SKIP_IMAGE_BUILD=1, POLL_INTERVAL=0)
    assert result.returncode == 0, result.stderr
    assert "The RayCluster changed, but not its pods: the worker count" in result.stdout
    assert not any(" wait --for=delete " in call or " delete pods " in call for call in world.calls())


def test_install_restarts_the_ray_pods_when_a_new_image_was_loaded_into_an_unchanged_cluster(world):
    existing_cluster_rules(world)
    world.rule("kubectl", "*get raycluster ray-training-cluster", output="ray-training-cluster")
    result = world.script("scripts/install-ray.sh")
    assert result.returncode == 0, result.stderr
    assert "A new image was loaded; restarting the Ray pods" in result.stdout
    assert ("kubectl --context minikube --namespace default delete pods "
            "--selector ray.io/cluster=ray-training-cluster") in world.calls()


def test_install_with_checkpoints_applies_the_store_and_waits_for_it_before_the_raycluster(world):
    world.rule("kubectl", "config current-context", output="minikube")
    ray_ready_rules(world)
    result = world.script("scripts/install-ray.sh", SKIP_IMAGE_BUILD=1, CHECKPOINTS=1)
    assert result.returncode == 0, result.stderr
    assert world.calls() == INSTALL_CALLS + STORE_CALLS + APPLY_CALLS
    assert "TARGET=minikube ./scripts/experiments/chaos.sh" in result.stdout


def test_install_with_checkpoints_restarts_ray_pods_that_started_without_the_store_keys(world):
    existing_cluster_rules(world)
    world.rule("kubectl", "*exec * printenv AWS_ACCESS_KEY_ID", code=1)
    result = world.script("scripts/install-ray.sh", SKIP_IMAGE_BUILD=1, CHECKPOINTS=1)
    assert result.returncode == 0, result.stderr
    calls = world.calls()
    assert PRINTENV_CALL in calls
    restart = ("kubectl --context minikube --namespace default delete pods "
               "--selector ray.io/cluster=ray-training-cluster")
    assert restart in calls and calls.index(PRINTENV_CALL) < calls.index(restart)
    assert "started before the checkpoint store's keys existed" in result.stdout


def test_install_with_checkpoints_keeps_ray_pods_that_have_the_store_keys(world):
    existing_cluster_rules(world)
    result = world.script("scripts/install-ray.sh", SKIP_IMAGE_BUILD=1, CHECKPOINTS=1)
    assert result.returncode == 0, result.stderr
    assert PRINTENV_CALL in world.calls()
    assert not any(" delete pods " in call for call in world.calls())


def test_install_stops_with_the_store_pods_state_when_the_store_never_becomes_ready(world):
    world.rule("kubectl", "config current-context", output="minikube")
    world.rule("kubectl", "*rollout status deployment/ray-checkpoint-storage*", code=1,
               output="error: timed out waiting for the condition")
    world.rule("kubectl", "*get pods --selector app.kubernetes.io/name=ray-checkpoint-storage --output*",
               output="ray-checkpoint-storage-5d9f|Pending|ImagePullBackOff| |PodScheduled||False")
    result = world.script("scripts/install-ray.sh", SKIP_IMAGE_BUILD=1, CHECKPOINTS=1, POD_READY_TIMEOUT=5)
    assert result.returncode == 1
    assert "The checkpoint store was not ready within 5s" in result.stderr
    assert "Pod ray-checkpoint-storage-5d9f: Pending (ImagePullBackOff)" in result.stderr
    assert "the checkpoint store's comes from quay.io" in result.stderr
    assert "stopped while installing the checkpoint storage" in result.stderr
    assert not any("ray-cluster.yaml" in call for call in world.calls())


def test_install_rejects_a_checkpoints_setting_that_is_not_0_or_1(world):
    result = world.script("scripts/install-ray.sh", CHECKPOINTS="yes")
    assert result.returncode == 1
    assert "CHECKPOINTS" in result.stderr and "'yes'" in result.stderr
    assert not any(call.startswith(("helm", "kubectl --context")) for call in world.calls())


@pytest.mark.parametrize("settings, flags", [
    ({"CHECKPOINT": "1"}, "--max-failures 2 --results-dir /tmp/results/run-<time> --checkpoint --address auto "
                          "--storage-path s3://ray-checkpoints/runs"),
    ({"RESUME": "1", "MAX_FAILURES": "3"},
     "--max-failures 3 --results-dir /tmp/results/run-<time> --resume --address auto "
     "--storage-path s3://ray-checkpoints/runs"),
    ({"CHECKPOINT": "1", "K8S_CHECKPOINT_PATH": "s3://my-bucket/demo"},
     "--max-failures 2 --results-dir /tmp/results/run-<time> --checkpoint --address auto "
     "--storage-path s3://my-bucket/demo"),
])
def test_target_with_checkpoints_keeps_them_in_the_in_cluster_store(world, settings, flags):
    target_rules(world)
    result = run_target(world, **settings)
    assert result.returncode == 0, result.stderr
    calls = world.calls()
    ray_call = next(call for call in calls if "lesson.ray_training" in call)
    assert ray_call.endswith(" " + flags)
    assert calls.index(PRINTENV_CALL) < calls.index(ray_call)


def test_target_without_checkpoints_does_not_need_the_store(world):
    target_rules(world)
    result = run_target(world)
    assert result.returncode == 0, result.stderr
    assert PRINTENV_CALL not in world.calls()
    ray_call = next(call for call in world.calls() if "lesson.ray_training" in call)
    assert ray_call.endswith(" --results-dir /tmp/results/run-<time> --address auto")


def test_target_with_checkpoints_but_no_store_says_how_to_install_it(world):
    target_rules(world)
    world.rule("kubectl", "*exec * printenv AWS_ACCESS_KEY_ID", code=1)
    result = run_target(world, CHECKPOINT=1)
    assert result.returncode == 1
    assert "CHECKPOINTS=1 ./scripts/install-ray.sh" in result.stderr
    assert "the pods share no disk" in result.stderr
    assert not any("-m lesson." in call for call in world.calls())


def chaos_rules(world: FakeWorld, training_seconds: int = 3):
    target_rules(world)
    world.rule("kubectl", "*python -m lesson.ray_training*", code=f"0@{training_seconds}",
               output="ray worker 0: epoch 1 done")
    world.rule("kubectl", "*python -m tools.chaos progress*", output="1 0f3a9c1d2e4b5a6978")
    world.rule("kubectl", "*python -m tools.chaos node-ip 0f3a9c1d2e4b5a6978", output="10.244.1.7")
    world.rule("kubectl", "*get pods --selector ray.io/cluster=ray-training-cluster,ray.io/node-type=worker "
               "--field-selector status.podIP=10.244.1.7*", output=WORKER_POD)
    world.rule("kubectl", "*python -m tools.chaos report*",
               output="Restarts of the worker group: 1, resumed from epoch(s): [1]")


def test_chaos_on_minikube_deletes_the_pod_of_the_chosen_worker_and_reports_the_recovery(world):
    chaos_rules(world)
    result = world.script("scripts/experiments/chaos.sh", TARGET="minikube")
    assert result.returncode == 0, result.stdout + result.stderr
    calls = [re.sub(r"chaos-\d{8}-\d{6}-\d+", "chaos-<run>", call) for call in world.calls()]
    run_location = "s3://ray-checkpoints/runs/chaos-<run>"
    pod_results = "/tmp/results/chaos-<run>"
    training = exec_call(
        "python -m lesson.ray_training --dataset synthetic --train-size 4096 --test-size 1024 --epochs 3",
        "--batch-size 64 --num-workers 2 --cpus-per-worker 1 --learning-rate 0.001 --lr-scaling none --seed 42",
        "--max-failures 2 --results-dir", pod_results, "--address auto --storage-path s3://ray-checkpoints/runs",
        "--checkpoint --run-name chaos-<run>")
    expected_in_order = [
        PRINTENV_CALL,
        exec_call("python -m tools.chaos node-ip 0f3a9c1d2e4b5a6978"),
        "kubectl --context minikube --namespace default get pods --selector "
        "ray.io/cluster=ray-training-cluster,ray.io/node-type=worker --field-selector "
        "status.podIP=10.244.1.7 --output jsonpath={.items[0].metadata.name}",
        exec_call("python -m tools.chaos mark-failure", run_location, "0f3a9c1d2e4b5a6978 1 1",
                  f"kubectl delete pod {WORKER_POD} (KubeRay creates a new worker pod)"),
        f"kubectl --context minikube --namespace default delete pod {WORKER_POD} --wait=false",
        exec_call("python -m tools.chaos report", f"{pod_results}/ray_results_2workers.json"),
        f"kubectl --context minikube cp -c ray-head default/{HEAD}:{pod_results}/ray_results_2workers.json "
        "<repo>/results/chaos/ray_results_2workers.json",
    ]
    positions = [calls.index(call) for call in expected_in_order]
    assert positions == sorted(positions)
    # In the background: on a busy machine the progress polls may come before it is logged.
    assert training in calls and calls.index(PRINTENV_CALL) < calls.index(training)
    assert exec_call("python -m tools.chaos progress", run_location, "1") in calls
    assert not any("STOPPED" in call for call in calls), "a finished run needs no stopping"
    assert f"deleting pod {WORKER_POD}, which runs worker rank 1" in result.stdout
    assert "Restarts of the worker group: 1" in result.stdout
    assert not (world.root / ".venv").exists(), "the minikube target runs everything in the pod"


def test_chaos_on_minikube_without_the_store_says_how_to_install_it(world):
    target_rules(world)
    world.rule("kubectl", "*exec * printenv AWS_ACCESS_KEY_ID", code=1)
    result = world.script("scripts/experiments/chaos.sh", TARGET="minikube")
    assert result.returncode == 1
    assert "CHECKPOINTS=1 ./scripts/install-ray.sh" in result.stderr
    assert not any("lesson.ray_training" in call for call in world.calls())


def test_chaos_on_minikube_stops_the_training_in_the_pod_when_the_worker_cannot_be_found(world):
    world.rule("kubectl", "*python -m tools.chaos node-ip*", code=2,
               output="chaos: error: no live Ray node has ID 0f3a9c1d2e4b5a6978.")
    chaos_rules(world, training_seconds=30)  # the first matching rule wins
    started = time.time()
    result = world.script("scripts/experiments/chaos.sh", TARGET="minikube")
    assert result.returncode == 1
    assert time.time() - started < 25, "the training was not stopped"
    assert "Ray does not know a live node 0f3a9c1d" in result.stderr
    assert not any(" delete pod " in call for call in world.calls())
    assert any(call.startswith(exec_call("python -c")) and re.search(r"STOPPED.* --run-name chaos-\d{8}-\d{6}-\d+$", call)
               for call in world.calls())


def test_chaos_rejects_an_unknown_target(world):
    result = world.script("scripts/experiments/chaos.sh", TARGET="kubernetes")
    assert result.returncode == 1
    assert "TARGET" in result.stderr and "'kubernetes'" in result.stderr
    assert world.calls() == []


# ----------------------------------------------------------------------------------
# open-dashboard.sh
# ----------------------------------------------------------------------------------

@pytest.fixture
def listening_port():
    """A port on 127.0.0.1 that answers, as a running dashboard (or a taken port) does."""
    with taken_port() as port:
        yield port


def test_dashboard_on_minikube_forwards_the_head_service_prints_the_url_and_stops_on_ctrl_c(world):
    port = free_port()
    world.rule("kubectl", "config current-context", output="minikube")
    world.rule("kubectl", "*port-forward*", code="0@30", output=f"Forwarding from 127.0.0.1:{port} -> 8265")
    returncode, printed, stderr = open_until_ready(world, DASHBOARD_PORT=port)
    assert returncode == 0, stderr
    assert f"Ray dashboard: http://127.0.0.1:{port}/\n" in printed
    assert "Grafana and Prometheus are not installed in namespace 'prometheus-system'; " \
           "./scripts/install-monitoring.sh installs them." in printed
    assert world.tool_calls("kubectl")[-1] == (
        f"kubectl --context minikube --namespace default port-forward svc/ray-training-cluster-head-svc {port}:8265")


MONITORING_SERVICES_QUERY = ("kubectl --context minikube --namespace prometheus-system get service "
                             "prometheus-grafana prometheus-kube-prometheus-prometheus --output name")


def monitoring_installed_rules(world, password_base64="czNjcmV0LXBhc3M="):
    world.rule("kubectl", "config current-context", output="minikube")
    world.rule("kubectl", "*get service prometheus-grafana prometheus-kube-prometheus-prometheus --output name",
               output="service/prometheus-grafana\nservice/prometheus-kube-prometheus-prometheus")
    world.rule("kubectl", "*get secret prometheus-grafana --output jsonpath={.data.admin-password}",
               output=password_base64)
    world.rule("kubectl", "*port-forward*", code="0@30", output="Forwarding from 127.0.0.1:1 -> 1")


def open_until_ready(world, **ports):
    """Start open-dashboard.sh on minikube, read until it says the forwards are up, Ctrl-C it."""
    process = subprocess.Popen(["./scripts/open-dashboard.sh"], cwd=world.root, text=True,
                               env=dict(world.env, TARGET="minikube", **{k: str(v) for k, v in ports.items()}),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True, preexec_fn=interruptible)
    lines = []
    for line in process.stdout:
        lines.append(line)
        if "Ctrl-C stops" in line:
            break
    os.killpg(process.pid, signal.SIGINT)
    rest, stderr = process.communicate(timeout=20)
    return process.returncode, "".join(lines) + rest, stderr


def test_dashboard_on_minikube_also_forwards_grafana_and_prometheus_and_prints_the_login(world):
    monitoring_installed_rules(world)
    dashboard, grafana, prometheus = free_port(), free_port(), free_port()
    code, stdout, stderr = open_until_ready(world, DASHBOARD_PORT=dashboard, GRAFANA_PORT=grafana,
                                            PROMETHEUS_PORT=prometheus)
    assert code == 0, stderr
    assert f"Ray dashboard: http://127.0.0.1:{dashboard}/\n" in stdout
    assert f"Grafana: http://127.0.0.1:{grafana}/\n" in stdout
    assert f"Prometheus: http://127.0.0.1:{prometheus}/\n" in stdout
    assert "Grafana login: admin / s3cret-pass (viewing needs no login" in stdout
    forwards = [call for call in world.tool_calls("kubectl") if " port-forward " in call]
    assert forwards == [
        f"kubectl --context minikube --namespace default port-forward svc/ray-training-cluster-head-svc {dashboard}:8265",
        f"kubectl --context minikube --namespace prometheus-system port-forward svc/prometheus-grafana {grafana}:80",
        f"kubectl --context minikube --namespace prometheus-system port-forward "
        f"svc/prometheus-kube-prometheus-prometheus {prometheus}:9090",
    ]
    assert MONITORING_SERVICES_QUERY in world.calls()
    # Grafana is not on 3000 here, where k8s/ray-cluster.yaml's RAY_GRAFANA_IFRAME_HOST points.
    assert f"GRAFANA_PORT={grafana}, but the Ray dashboard embeds Grafana's charts from 127.0.0.1:3000" in stderr


def test_dashboard_on_minikube_says_how_to_read_the_grafana_password_when_it_cannot(world):
    monitoring_installed_rules(world, password_base64="")
    code, stdout, stderr = open_until_ready(world, DASHBOARD_PORT=free_port(), GRAFANA_PORT=free_port(),
                                            PROMETHEUS_PORT=free_port())
    assert code == 0, stderr
    assert "Grafana login" not in stdout
    assert ("Could not read Grafana's admin password; viewing needs no login. To read it: kubectl --context minikube "
            "-n prometheus-system get secret prometheus-grafana -o jsonpath='{.data.admin-password}' | base64 --decode"
            ) in stderr


def test_dashboard_on_minikube_names_a_taken_grafana_port_and_its_setting(world, listening_port):
    monitoring_installed_rules(world)
    result = world.script("scripts/open-dashboard.sh", TARGET="minikube", DASHBOARD_PORT=free_port(),
                          GRAFANA_PORT=listening_port, PROMETHEUS_PORT=free_port())
    assert result.returncode == 1
    assert f"Port {listening_port} on this machine is already taken" in result.stderr
    assert "so the Grafana forward cannot use it" in result.stderr
    assert f"GRAFANA_PORT={listening_port + 1}" in result.stderr
    assert not any("port-forward svc/prometheus-grafana" in call for call in world.calls())


def test_dashboard_on_minikube_names_the_taken_port_and_the_setting_that_changes_it(world, listening_port):
    world.rule("kubectl", "config current-context", output="minikube")
    result = world.script("scripts/open-dashboard.sh", TARGET="minikube", DASHBOARD_PORT=listening_port)
    assert result.returncode == 1
    assert f"Port {listening_port} on this machine is already taken" in result.stderr
    assert f"DASHBOARD_PORT={listening_port + 1}" in result.stderr
    assert not any("port-forward" in call for call in world.calls())


def test_dashboard_on_minikube_fails_with_kubectls_reason_when_the_forward_cannot_start(world):
    world.rule("kubectl", "config current-context", output="minikube")
    world.rule("kubectl", "*port-forward*", code=1,
               output='Error from server (NotFound): services "ray-training-cluster-head-svc" not found')
    result = world.script("scripts/open-dashboard.sh", TARGET="minikube", DASHBOARD_PORT=free_port())
    assert result.returncode == 1
    assert 'services "ray-training-cluster-head-svc" not found' in result.stderr
    assert "HEAD_SERVICE=<rayjob>-head-svc" in result.stderr


def test_dashboard_on_minikube_says_to_reinstall_monitoring_when_grafana_cannot_be_forwarded(world):
    world.rule("kubectl", "*port-forward svc/prometheus-grafana*", code=1,
               output='error: unable to forward port because pod is not running. Current status=Pending')
    monitoring_installed_rules(world)
    result = world.script("scripts/open-dashboard.sh", TARGET="minikube", DASHBOARD_PORT=free_port(),
                          GRAFANA_PORT=free_port(), PROMETHEUS_PORT=free_port())
    assert result.returncode == 1
    assert ("kubectl could not start the Grafana forward (svc/prometheus-grafana port 80): error: unable to "
            "forward port because pod is not running.") in result.stderr
    assert "'kubectl --context minikube -n prometheus-system get pods,svc'" in result.stderr
    assert "./scripts/install-monitoring.sh installs them again" in result.stderr


def test_dashboard_locally_prints_the_url_and_where_the_token_is(world, listening_port, tmp_path):
    (tmp_path / "auth_token").write_text("0123abcd")
    result = world.script("scripts/open-dashboard.sh", TARGET="local", DASHBOARD_PORT=listening_port,
                          CLUSTER_DIR=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"Ray dashboard: http://127.0.0.1:{listening_port}" in result.stdout
    assert f"paste the contents of {tmp_path}/auth_token (print it with: cat {tmp_path}/auth_token)" in result.stdout
    assert world.calls() == []


def test_dashboard_locally_says_when_no_local_cluster_runs(world):
    result = world.script("scripts/open-dashboard.sh", TARGET="local", DASHBOARD_PORT=free_port())
    assert result.returncode == 1
    assert "No Ray dashboard answers" in result.stderr and "./scripts/run-benchmark.sh" in result.stderr


def test_dashboard_auto_picks_the_local_target_without_a_minikube_head_pod(world):
    world.rule("kubectl", "config current-context", output="kind-other")
    result = world.script("scripts/open-dashboard.sh", DASHBOARD_PORT=free_port())
    assert result.returncode == 1
    assert "Target: local, because TARGET=auto: minikube is not available" in result.stdout


# ----------------------------------------------------------------------------------
# run-rayjob.sh (k8s/ray-job.yaml)
# ----------------------------------------------------------------------------------

JOB = "ray-training-benchmark-<time>"
JOB_CLUSTER = "ray-training-benchmark-<time>-x4k2q"
JOB_STATUS_QUERY = "*get rayjob ray-training-benchmark-* --output jsonpath=*jobDeploymentStatus*"


def rayjob_rules(world: FakeWorld, final: str = "Complete|SUCCEEDED"):
    """An installed operator, no long-running RayCluster, and a RayJob that runs, then ends."""
    world.rule("kubectl", "config current-context", output="minikube")
    world.rule("kubectl", "*get raycluster ray-training-cluster", code=1, output="NotFound")
    world.rule("kubectl", JOB_STATUS_QUERY, code="0+once", output="Initializing||||")
    world.rule("kubectl", JOB_STATUS_QUERY, code="0+once", output=f"Running|RUNNING|{JOB_CLUSTER}||")
    world.rule("kubectl", JOB_STATUS_QUERY, output=f"{final}|{JOB_CLUSTER}|AppFailed|Job entrypoint command failed")
    world.rule("kubectl", "*logs --follow job/*", output="[ray worker 0/2 epoch 1] ... Job succeeded")
    world.rule("kubectl", f"*--selector ray.io/cluster={JOB_CLUSTER.replace('<time>', '*')},ray.io/node-type=head*",
               output=f"{JOB_CLUSTER}-head-abcde")
    world.rule("kubectl", "*exec * -- tar -C /tmp/results/ray-training-benchmark-* -cf - .",
               output=f"@{pod_results_tar(world)}")


def rayjob_calls(world: FakeWorld) -> list:
    """The calls, with the generated RayCluster name made stable too."""
    return [call.replace("ray-training-benchmark-<time>-x4k2q", JOB_CLUSTER) for call in world.calls()]


def test_rayjob_dry_run_renders_the_clusters_spec_without_upgrade_strategy_and_the_benchmark(world):
    result = world.script("scripts/run-rayjob.sh", "--dry-run", "--smoke-test", NUM_WORKERS=2)
    assert result.returncode == 0, result.stderr
    job = yaml.safe_load(result.stdout)
    cluster = yaml.safe_load((world.root / "k8s" / "ray-cluster.yaml").read_text())
    expected_spec = {key: value for key, value in cluster["spec"].items() if key != "upgradeStrategy"}
    assert job["spec"]["rayClusterSpec"] == expected_spec, "one source: k8s/ray-cluster.yaml's spec"
    assert re.fullmatch(r"ray-training-benchmark-\d{8}-\d{6}", job["metadata"]["name"])
    words = shlex.split(job["spec"]["entrypoint"])
    assert words[:2] == ["bash", "-c"] and len(words) == 3
    pod_dir = f"/tmp/results/{job['metadata']['name']}"
    recipe = ("--dataset synthetic --train-size 256 --test-size 128 --epochs 1 --batch-size 32 --num-workers 2 "
              "--cpus-per-worker 1 --learning-rate 0.001 --lr-scaling none --seed 42 --max-failures 2")
    assert words[2].split(" && ") == [
        f"python -m lesson.baseline_training {recipe} --results-dir {pod_dir}",
        f"python -m lesson.ray_training {recipe} --results-dir {pod_dir} --address auto",
        f"python -m analysis.compare --results-dir {pod_dir} --num-workers 2",
        f"python -m analysis.report --run-dir {pod_dir}",
    ]
    assert world.calls() == [], "--dry-run touches nothing"


def test_rayjob_submits_follows_the_logs_copies_the_run_folder_back_and_deletes_the_rayjob(world):
    rayjob_rules(world)
    result = world.script("scripts/run-rayjob.sh", POLL_INTERVAL=0)
    assert result.returncode == 0, result.stderr
    run_dir = world.root / "results" / "latest"
    assert run_dir.resolve().name.endswith("-minikube-rayjob")
    for name in RUN_FILES:
        assert (run_dir / name).read_text() == f"{name} from the pod\n"
    submitted = yaml.safe_load((run_dir / "rayjob.yaml").read_text())
    assert submitted["kind"] == "RayJob" and submitted["spec"]["shutdownAfterJobFinishes"] is True
    calls = rayjob_calls(world)
    kube = "kubectl --context minikube --namespace default"
    in_order = [
        "kubectl --context minikube --request-timeout=10s get crd rayjobs.ray.io",
        f"{kube} get raycluster ray-training-cluster",
        f"{kube} create --filename <repo>/results/{run_dir.resolve().name}/rayjob.yaml",
        f"{kube} logs --follow job/{JOB} --pod-running-timeout=5m",
        f"{kube} exec {JOB_CLUSTER}-head-abcde -c ray-head -- tar -C /tmp/results/{JOB} -cf - .",
        f"{kube} delete rayjob {JOB} --wait=false",
    ]
    positions = [calls.index(call) for call in in_order]
    assert positions == sorted(positions)
    assert "Running (RayCluster" in result.stdout and "Complete, job status SUCCEEDED" in result.stdout


def test_rayjob_refuses_to_start_beside_the_long_running_raycluster(world):
    world.rule("kubectl", "*get raycluster ray-training-cluster", output="ray-training-cluster")
    rayjob_rules(world)
    result = world.script("scripts/run-rayjob.sh")
    assert result.returncode == 1
    assert "the two do not fit the nodes' memory" in result.stderr
    assert "delete raycluster ray-training-cluster" in result.stderr
    assert not any(" create " in call for call in world.calls())


def test_rayjob_without_the_operator_says_to_run_install_ray(world):
    world.rule("kubectl", "config current-context", output="minikube")
    world.rule("kubectl", "*get crd rayjobs.ray.io", code=1, output="NotFound")
    result = world.script("scripts/run-rayjob.sh")
    assert result.returncode == 1
    assert "no RayJob CRD" in result.stderr and "./scripts/install-ray.sh" in result.stderr


def test_rayjob_that_fails_keeps_the_rayjob_and_says_where_its_log_is(world):
    rayjob_rules(world, final="Complete|FAILED")
    result = world.script("scripts/run-rayjob.sh", POLL_INTERVAL=0)
    assert result.returncode == 1
    assert "job status 'FAILED' (AppFailed): Job entrypoint command failed" in result.stderr
    assert "logs job/ray-training-benchmark-" in result.stderr
    assert not any(" delete rayjob " in call for call in world.calls()), "kept for inspection"
    assert len(list((world.root / "results").glob("*-minikube-rayjob/FAILED"))) == 1


def test_rayjob_that_kuberay_refuses_says_why_and_is_deleted(world):
    world.rule("kubectl", JOB_STATUS_QUERY,
               output="ValidationFailed|||ValidationFailed|upgradeStrategy cannot be set when RayCluster is created by RayJob")
    rayjob_rules(world)
    result = world.script("scripts/run-rayjob.sh", POLL_INTERVAL=0)
    assert result.returncode == 1
    assert "KubeRay refused the RayJob: upgradeStrategy cannot be set" in result.stderr
    assert rayjob_calls(world)[-1] == f"kubectl --context minikube --namespace default delete rayjob {JOB} --wait=false"


def test_rayjob_that_does_not_start_explains_its_pods_and_is_deleted(world):
    world.rule("kubectl", JOB_STATUS_QUERY, output=f"Initializing||{JOB_CLUSTER}||")
    world.rule("kubectl", "*get pods --selector ray.io/cluster=ray-training-benchmark-*PodScheduled*",
               output=f"{JOB_CLUSTER}-head-abcde|Pending|ErrImageNeverPull| |||False")
    rayjob_rules(world)
    result = world.script("scripts/run-rayjob.sh", START_TIMEOUT=1, POLL_INTERVAL=0)
    assert result.returncode == 1
    assert "The RayJob did not start within 1s" in result.stderr
    assert "Pending (ErrImageNeverPull)" in result.stderr and "docker/build-and-push.sh" in result.stderr
    assert rayjob_calls(world)[-1] == f"kubectl --context minikube --namespace default delete rayjob {JOB} --wait=false"


def test_rayjob_interrupted_deletes_the_rayjob_and_exits_130(world):
    world.rule("kubectl", "*logs --follow job/*", code="0@30", output="training ...")
    rayjob_rules(world)
    process = subprocess.Popen(["./scripts/run-rayjob.sh"], cwd=world.root, text=True,
                               env=dict(world.env, POLL_INTERVAL="0"), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, start_new_session=True, preexec_fn=interruptible)
    deadline = time.time() + 20
    while not any(" logs --follow " in call for call in world.calls()) and time.time() < deadline:
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert rayjob_calls(world)[-1] == f"kubectl --context minikube --namespace default delete rayjob {JOB} --wait=false"
    failed = list((world.root / "results").glob("*-minikube-rayjob/FAILED"))
    assert len(failed) == 1 and "Interrupted" in failed[0].read_text()
