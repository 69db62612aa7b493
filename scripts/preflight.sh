#!/usr/bin/env bash
# Check this machine before the long steps of the Minikube path: docker, minikube, kubectl
# and helm present (with their versions), Docker running, its architecture (which Ray base
# image the build will use), and whether Docker has the CPUs, memory and free disk the two
# nodes need. Every check runs; each failure says what to change. ./scripts/setup-minikube.sh
# runs it first; run it on its own any time. It changes nothing.
#
# Usage: [MINIKUBE_PROFILE=minikube] [NODE_CPUS=4] [NODE_MEMORY=8192] [MIN_DOCKER_MEMORY=9728]
#        [MIN_FREE_DISK_GB=30] ./scripts/preflight.sh [--help]
#   NODE_CPUS, NODE_MEMORY  CPUs and MiB per minikube node (./scripts/setup-minikube.sh's).
#                           Docker must hold both nodes' memory in full, plus 1 GiB (1024 MiB)
#                           for its own daemon and kernel and for saving and loading the image:
#                           17408 MiB by default. On macOS that is Docker Desktop's Memory
#                           setting, and a failure says what to set it to.
#   MIN_DOCKER_MEMORY       MiB the pods need in all, a floor of its own for small nodes:
#                           Kubernetes on both nodes (2 GiB), the head (2.5 GiB), each worker
#                           pod of 'replicas' in k8s/ray-cluster.yaml (2.25 GiB each: 9728 with
#                           the 2 it has by default, 12032 with 3) and the checkpoint store
#                           (0.5), as in the arithmetic at the top of k8s/ray-cluster.yaml.
#                           Monitoring (./scripts/install-monitoring.sh: Prometheus and
#                           Grafana) takes about 1.5 GiB more, 1536 MiB: a warning says when
#                           Docker lacks it.
#   MIN_FREE_DISK_GB        free disk Docker needs for a first install. The training image is
#                           about 5 GB (an estimate: the rayproject/ray base plus TensorFlow
#                           and the other pins) and is kept five times: in Docker, as the
#                           tar file docker/build-and-push.sh saves for the load, and on each
#                           node loaded plus the copy of that tar file minikube leaves there;
#                           plus minikube's node and Kubernetes images.
#                           Only a warning once the profile exists (the images are then in).
set -o errexit -o nounset -o pipefail

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=scripts/lib/k8s.sh
source "$SCRIPTS_DIR/lib/k8s.sh"

load_k8s_settings
NODE_CPUS="${NODE_CPUS:-4}"
NODE_MEMORY="${NODE_MEMORY:-8192}"
# MiB the pods ask for (their requests equal their limits): the Ray head and each worker pod
# (k8s/ray-cluster.yaml), the checkpoint store (k8s/checkpoint-storage.yaml), Prometheus and
# Grafana (k8s/kube-prometheus-stack-values.yaml), and what Kubernetes itself takes on both
# nodes. tests/test_k8s_manifests.py checks that they agree with those files.
readonly KUBERNETES_MEMORY=2048 HEAD_MEMORY=2560 WORKER_MEMORY=2304 STORE_MEMORY=512 MONITORING_MEMORY=1536
WORKER_REPLICAS="$(manifest_worker_replicas)"
[[ "$WORKER_REPLICAS" =~ ^[0-9]+$ ]] ||
  die "Could not read the worker pods' 'replicas' from k8s/ray-cluster.yaml; restore that line (git diff k8s/ray-cluster.yaml)."
MIN_DOCKER_MEMORY="${MIN_DOCKER_MEMORY:-$((KUBERNETES_MEMORY + HEAD_MEMORY + WORKER_REPLICAS * WORKER_MEMORY + STORE_MEMORY))}"
MIN_FREE_DISK_GB="${MIN_FREE_DISK_GB:-30}"
readonly NODE_COUNT=2
# MiB Docker needs beyond the nodes' own: its daemon and (Docker Desktop) its VM's kernel, and
# the page cache that `docker save` and the nodes' `docker load` pass the 5 GB image through.
readonly DOCKER_MARGIN_MEMORY=1024

FAILURES=0

# Report a check that passed.
pass() {
  log "ok    $*"
}

# Report a check that failed, with what to change; the script fails at the end.
fail() {
  FAILURES=$((FAILURES + 1))
  printf '[%s] FAIL  %s\n' "$(basename "$0")" "$*" >&2
}

# One tool: present, and its version.
check_tool() {
  local tool="$1" where="$2" version
  shift 2
  if ! command -v "$tool" >/dev/null 2>&1; then
    fail "'$tool' is not installed or not on PATH. Install it: $where"
    return 1
  fi
  version="$("$@" 2>/dev/null | head -n 1 || true)"
  pass "$tool ${version:-(version unknown)}"
}

# docker, minikube, kubectl and helm, with their versions.
check_tools() {
  DOCKER_PRESENT=0
  check_tool docker "https://docs.docker.com/get-docker/ (Docker Desktop on macOS, Docker Engine on Linux)" \
    docker version --format 'client {{.Client.Version}}' && DOCKER_PRESENT=1
  check_tool minikube "https://minikube.sigs.k8s.io/docs/start/" minikube version --short || true
  check_tool kubectl "https://kubernetes.io/docs/tasks/tools/" kubectl version --client || true
  check_tool helm "https://helm.sh/docs/intro/install/" helm version --short || true
}

# Docker's architecture: Ray publishes amd64 and arm64 (-aarch64) images.
check_architecture() {
  local arch base
  arch="$(docker version --format '{{.Server.Arch}}' 2>/dev/null || true)"
  if base="$(ray_base_image "$arch")"; then
    pass "architecture $arch: the image builds FROM $base"
  else
    fail "Docker runs on architecture '${arch:-unknown}'; Ray publishes images for amd64 and arm64 only. Use a machine of one of those."
  fi
}

# What to do when Docker has too little memory; NEEDED MiB is what passes every check. On
# macOS, Docker Desktop's setting in GB, one more than NEEDED rounds up to: `docker info`
# reports a little less than the setting (its VM's kernel keeps some).
memory_advice() {
  local needed="$1"
  if [[ "$(uname -s 2>/dev/null || true)" == "Darwin" ]]; then
    echo "On macOS, Docker's memory is Docker Desktop's setting, not the Mac's: in Docker Desktop open Settings > Resources > Advanced, set Memory to at least $(((needed + 1023) / 1024 + 1)) GB, then click Apply & restart. A Mac that cannot spare that much needs smaller nodes (NODE_MEMORY; the arithmetic at the top of k8s/ray-cluster.yaml says what fits)."
  else
    echo "Give Docker at least $needed MiB (Docker Desktop: Settings > Resources > Advanced > Memory; Docker Engine has this machine's memory)."
  fi
}

# Docker's CPUs and memory against what the nodes and the pods need.
check_cpus_and_memory() {
  local info docker_cpus docker_memory_bytes docker_memory nodes_memory needed
  info="$(docker info --format '{{.NCPU}} {{.MemTotal}}' 2>/dev/null || true)"
  read -r docker_cpus docker_memory_bytes <<<"$info"
  if ! [[ "${docker_cpus:-}" =~ ^[0-9]+$ && "${docker_memory_bytes:-}" =~ ^[0-9]+$ ]]; then
    warn "Could not read Docker's CPUs and memory ('docker info' printed '$info'); not checked."
    return 0
  fi
  docker_memory=$((docker_memory_bytes / 1024 / 1024))
  # setup-minikube.sh always uses the Docker driver: each node is a container whose memory
  # limit is NODE_MEMORY, and Docker must hold both, since a full node is OOM-killed (CPUs
  # may be shared: the nodes only run slower).
  nodes_memory=$((NODE_COUNT * NODE_MEMORY + DOCKER_MARGIN_MEMORY))
  needed=$((nodes_memory > MIN_DOCKER_MEMORY ? nodes_memory : MIN_DOCKER_MEMORY))
  # On macOS these are Docker Desktop's VM settings, not the Mac's, hence the hint.
  if ((docker_cpus < NODE_CPUS)); then
    fail "Each node needs $NODE_CPUS CPUs but Docker has only $docker_cpus. Give Docker more CPUs (Docker Desktop: Settings > Resources), or lower NODE_CPUS."
  else
    pass "Docker has $docker_cpus CPUs (each node needs $NODE_CPUS)"
  fi
  if ((docker_memory < NODE_MEMORY)); then
    fail "Each node needs $NODE_MEMORY MiB but Docker has only $docker_memory MiB. $(memory_advice "$needed")"
  elif ((docker_memory < nodes_memory)); then
    fail "The $NODE_COUNT nodes need $NODE_COUNT x $NODE_MEMORY MiB (NODE_MEMORY) and Docker about $DOCKER_MARGIN_MEMORY MiB more for itself and for loading the image, $nodes_memory MiB, but Docker has only $docker_memory MiB. $(memory_advice "$needed")"
  elif ((docker_memory < MIN_DOCKER_MEMORY)); then
    fail "The Ray pods ($WORKER_REPLICAS worker(s), 'replicas' in k8s/ray-cluster.yaml) and Kubernetes need about $MIN_DOCKER_MEMORY MiB together but Docker has only $docker_memory MiB. $(memory_advice "$needed") Or lower 'replicas'."
  else
    pass "Docker has $docker_memory MiB of memory (the nodes need $nodes_memory with Docker's own, the pods and Kubernetes about $MIN_DOCKER_MEMORY)"
    if ((docker_memory < MIN_DOCKER_MEMORY + MONITORING_MEMORY)); then
      warn "Monitoring (./scripts/install-monitoring.sh: Prometheus and Grafana) needs about $MONITORING_MEMORY MiB more, $((MIN_DOCKER_MEMORY + MONITORING_MEMORY)) MiB in all, and Docker has $docker_memory. Give Docker more memory before you install it (Docker Desktop: Settings > Resources); everything else runs without it."
    fi
  fi
  # Node CPUs are limits, not reservations, so the nodes may overlap on the host.
  if ((docker_cpus < NODE_COUNT * NODE_CPUS)); then
    warn "The $NODE_COUNT nodes share $docker_cpus CPUs (they may use $((NODE_COUNT * NODE_CPUS))); training times will be noisier than on dedicated CPUs."
  fi
}

# Free disk where Docker keeps its images, when that folder is on this machine.
check_disk() {
  local root free_kb free_gb
  root="$(docker info --format '{{.DockerRootDir}}' 2>/dev/null || true)"
  if [[ -z "$root" || ! -d "$root" ]]; then
    warn "Docker keeps its images in a VM here (Docker Desktop), so its free disk cannot be read from this machine. Make sure it has $MIN_FREE_DISK_GB GB free (Docker Desktop: Settings > Resources > Disk usage limit; 'docker system df' shows what is used)."
    return 0
  fi
  free_kb="$(df -Pk "$root" 2>/dev/null | awk 'NR == 2 {print $4}')"
  if ! [[ "$free_kb" =~ ^[0-9]+$ ]]; then
    warn "Could not read the free disk of $root; not checked."
    return 0
  fi
  free_gb=$((free_kb / 1024 / 1024))
  if ((free_gb >= MIN_FREE_DISK_GB)); then
    pass "$free_gb GB free in $root (a first install needs about $MIN_FREE_DISK_GB)"
  elif minikube -p "$MINIKUBE_PROFILE" node list >/dev/null 2>&1; then
    warn "Only $free_gb GB free in $root; profile '$MINIKUBE_PROFILE' exists, so its images are probably in already. A rebuild of the image needs about 10 GB more ('docker system prune' frees unused images)."
  else
    fail "Only $free_gb GB free in $root, and a first install needs about $MIN_FREE_DISK_GB GB (the image is about 5 GB, kept five times). Free disk space ('docker system prune' removes unused images and build cache)."
  fi
}

main() {
  parse_common_flags "$@"
  require_positive_int NODE_CPUS "$NODE_CPUS"
  require_positive_int NODE_MEMORY "$NODE_MEMORY"
  require_non_negative_int MIN_DOCKER_MEMORY "$MIN_DOCKER_MEMORY"
  require_non_negative_int MIN_FREE_DISK_GB "$MIN_FREE_DISK_GB"
  log "Checking this machine for the Minikube path (NODE_CPUS=$NODE_CPUS NODE_MEMORY=$NODE_MEMORY MIN_DOCKER_MEMORY=$MIN_DOCKER_MEMORY MIN_FREE_DISK_GB=$MIN_FREE_DISK_GB)."
  check_tools
  if ((DOCKER_PRESENT == 1)); then
    if docker info >/dev/null 2>&1; then
      pass "Docker is running"
      check_architecture
      check_cpus_and_memory
      check_disk
    else
      fail "Docker is installed but not running ('docker info' failed). Start Docker Desktop (macOS) or the daemon ('sudo systemctl start docker' on Linux)."
    fi
  fi
  if ((FAILURES > 0)); then
    die "$FAILURES check(s) failed (FAIL lines above, each with what to change). Fix them and run ./scripts/preflight.sh again."
  fi
  log "All checks passed. Next: ./scripts/setup-minikube.sh"
}

main "$@"
