#!/usr/bin/env bash
# Start a 2-node minikube cluster (Docker driver) for the Ray demo, enable metrics-server
# and wait until both nodes are Ready. It runs ./scripts/preflight.sh first (tools, Docker's
# architecture, CPUs, memory and disk). Re-running it on a healthy 2-node profile changes
# nothing; a profile with another node count is reported, not silently reused.
#
# Usage: [MINIKUBE_PROFILE=minikube] [NODE_CPUS=4] [NODE_MEMORY=8192] [MIN_DOCKER_MEMORY=]
#        [MIN_FREE_DISK_GB=] [WAIT_TIMEOUT=300] [KEEP_ON_FAILURE=0] ./scripts/setup-minikube.sh [--help]
#   NODE_CPUS, NODE_MEMORY  CPUs and MiB per node; k8s/ray-cluster.yaml is sized for 4 / 8192.
#   MIN_DOCKER_MEMORY, MIN_FREE_DISK_GB  what preflight.sh asks of Docker (its --help gives
#                           the defaults and why).
#   WAIT_TIMEOUT            seconds to wait for the nodes to become Ready.
#   KEEP_ON_FAILURE=1       keep a profile this run created even if the run fails.
set -o errexit -o nounset -o pipefail

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=scripts/lib/k8s.sh
source "$SCRIPTS_DIR/lib/k8s.sh"

load_k8s_settings
NODE_CPUS="${NODE_CPUS:-4}"
NODE_MEMORY="${NODE_MEMORY:-8192}"
WAIT_TIMEOUT="${WAIT_TIMEOUT:-300}"
KEEP_ON_FAILURE="${KEEP_ON_FAILURE:-0}"
# The manifests spread workers over two nodes; the count is not a setting.
readonly NODE_COUNT=2

# Set once this run has created the profile, so a failure can remove the half-made cluster.
CREATED_PROFILE=0

# On failure, delete a profile that this run created (unless KEEP_ON_FAILURE=1).
cleanup() {
  local status=$?
  if ((status != 0 && CREATED_PROFILE == 1)); then
    if [[ "$KEEP_ON_FAILURE" == "1" ]]; then
      warn "Keeping the half-created profile '$MINIKUBE_PROFILE' (KEEP_ON_FAILURE=1). Inspect it with 'minikube -p $MINIKUBE_PROFILE logs'; remove it with 'minikube delete -p $MINIKUBE_PROFILE'."
    else
      warn "Deleting the half-created profile '$MINIKUBE_PROFILE' so the next run starts clean (KEEP_ON_FAILURE=1 keeps it for debugging)."
      minikube delete -p "$MINIKUBE_PROFILE" >/dev/null 2>&1 || true
    fi
  fi
}

# Run ./scripts/preflight.sh with this script's settings; it says what to change.
check_prerequisites() {
  # MIN_DOCKER_MEMORY and MIN_FREE_DISK_GB, when set, reach it through the environment.
  NODE_CPUS="$NODE_CPUS" NODE_MEMORY="$NODE_MEMORY" MINIKUBE_PROFILE="$MINIKUBE_PROFILE" \
    "$SCRIPTS_DIR/preflight.sh" ||
    die "The preflight checks failed (above); nothing was created. Fix what they name and run this script again."
}

# Print how many nodes the profile has, or nothing when the profile does not exist.
profile_node_count() {
  local nodes
  nodes="$(minikube -p "$MINIKUBE_PROFILE" node list 2>/dev/null)" || return 0
  grep -c . <<<"$nodes" || true
}

# True when every node of the profile runs (minikube status exits 0 only then).
profile_is_running() {
  minikube -p "$MINIKUBE_PROFILE" status >/dev/null 2>&1
}

# Create the profile, or restart it when it exists but is stopped.
start_cluster() {
  local existing_nodes="$1"
  if [[ -z "$existing_nodes" ]]; then
    log "Creating profile '$MINIKUBE_PROFILE': $NODE_COUNT nodes x $NODE_CPUS CPUs x $NODE_MEMORY MiB (first time: 3-5 minutes)."
    CREATED_PROFILE=1
    minikube start -p "$MINIKUBE_PROFILE" --nodes "$NODE_COUNT" --cpus "$NODE_CPUS" \
      --memory "$NODE_MEMORY" --driver docker ||
      die "'minikube start' failed (output above). See 'minikube -p $MINIKUBE_PROFILE logs'."
  else
    log "Profile '$MINIKUBE_PROFILE' exists with $NODE_COUNT nodes but is not running; starting it."
    minikube start -p "$MINIKUBE_PROFILE" ||
      die "'minikube start -p $MINIKUBE_PROFILE' failed (output above). If it keeps failing: minikube delete -p $MINIKUBE_PROFILE && $0"
  fi
}

# Enable metrics-server, so `kubectl top pods` shows what the Ray pods really use.
enable_metrics_server() {
  log "Enabling the metrics-server addon."
  minikube -p "$MINIKUBE_PROFILE" addons enable metrics-server ||
    die "Could not enable metrics-server. See 'minikube -p $MINIKUBE_PROFILE addons list'."
}

# Wait until both nodes are Ready.
wait_for_nodes() {
  log "Waiting up to ${WAIT_TIMEOUT}s for the nodes to be Ready."
  if ! kubectl --context "$MINIKUBE_PROFILE" wait --for=condition=Ready node --all \
    --timeout="${WAIT_TIMEOUT}s"; then
    kubectl --context "$MINIKUBE_PROFILE" get nodes -o wide >&2 || true
    die "The nodes did not become Ready within ${WAIT_TIMEOUT}s. See 'kubectl --context $MINIKUBE_PROFILE describe nodes' and 'minikube -p $MINIKUBE_PROFILE logs'."
  fi
  local ready
  ready="$(kubectl --context "$MINIKUBE_PROFILE" get nodes --no-headers 2>/dev/null | grep -c ' Ready ' || true)"
  if [[ "$ready" != "$NODE_COUNT" ]]; then
    die "Expected $NODE_COUNT Ready nodes, found ${ready:-0}. See 'kubectl --context $MINIKUBE_PROFILE get nodes'."
  fi
}

# Point out a kubectl context that is not this profile (install-ray.sh will refuse it).
check_context() {
  local context
  context="$(current_kube_context)"
  if [[ "$context" != "$MINIKUBE_PROFILE" ]]; then
    warn "kubectl's current context is '${context:-<none>}'. Switch to the cluster with: kubectl config use-context $MINIKUBE_PROFILE"
  fi
}

main() {
  parse_common_flags "$@"
  log "Settings:"
  log_settings MINIKUBE_PROFILE NODE_CPUS NODE_MEMORY WAIT_TIMEOUT
  require_positive_int NODE_CPUS "$NODE_CPUS"
  require_positive_int NODE_MEMORY "$NODE_MEMORY"
  require_positive_int WAIT_TIMEOUT "$WAIT_TIMEOUT"
  check_prerequisites
  trap cleanup EXIT

  local existing_nodes
  existing_nodes="$(profile_node_count)"
  if [[ -n "$existing_nodes" && "$existing_nodes" != "$NODE_COUNT" ]]; then
    die "Profile '$MINIKUBE_PROFILE' already exists with $existing_nodes node(s); this demo needs $NODE_COUNT. Recreate it with: minikube delete -p $MINIKUBE_PROFILE && $0   (or use another profile: MINIKUBE_PROFILE=ray-demo $0)"
  fi
  if [[ -n "$existing_nodes" ]] && profile_is_running; then
    log "Profile '$MINIKUBE_PROFILE' already runs $NODE_COUNT nodes; nothing to start."
  else
    start_cluster "$existing_nodes"
    enable_metrics_server
  fi
  wait_for_nodes
  check_context
  log "Cluster ready. Next: ./scripts/install-ray.sh"
}

main "$@"
