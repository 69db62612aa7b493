#!/usr/bin/env bash
# Print the address of the Ray dashboard, for either target:
#   minikube: forwards the head's dashboard port to this machine with `kubectl port-forward`
#             (no NodePort tunnel, so it works the same on Linux, macOS and Windows) and
#             keeps the forward open until Ctrl-C;
#   local:    the dashboard of the local cluster that ./scripts/run-benchmark.sh (or
#             chaos.sh) runs, which asks for the cluster's auth token: where to find it.
#
# Usage: [TARGET=auto] [DASHBOARD_PORT=8265] ./scripts/open-dashboard.sh [--help]
#   TARGET=auto          auto, local or minikube (auto: minikube when kubectl points at the
#                        profile and the RayCluster has a head pod, else local)
#   DASHBOARD_PORT=8265  local: the port the local cluster's dashboard uses (chaos.sh: 8266);
#                        minikube: the port on this machine the dashboard is forwarded to
#   RAY_PORT=6380        local: head port of the cluster (names its CLUSTER_DIR)
#   CLUSTER_DIR=/tmp/ray-demo-RAY_PORT  local: the cluster's state, with its auth_token
#   HEAD_SERVICE=ray-training-cluster-head-svc  minikube: the head's Service (KubeRay names
#                        it CLUSTER-head-svc; a RayJob's is RAYJOB-NAME-head-svc)
#   MINIKUBE_PROFILE=minikube RAY_NAMESPACE=default RAY_CLUSTER_NAME=ray-training-cluster
set -o errexit -o nounset -o pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=minikube-target.sh
source "$(dirname "${BASH_SOURCE[0]}")/minikube-target.sh"

load_k8s_settings
TARGET="${TARGET:-auto}"
DASHBOARD_PORT="${DASHBOARD_PORT:-8265}"
RAY_PORT="${RAY_PORT:-6380}"
CLUSTER_DIR="${CLUSTER_DIR:-/tmp/ray-demo-${RAY_PORT}}"
HEAD_SERVICE="${HEAD_SERVICE:-${RAY_CLUSTER_NAME}-head-svc}"
# Seconds to wait for a forward to say it listens.
FORWARD_TIMEOUT="${FORWARD_TIMEOUT:-15}"

# The forwards of the minikube target, one "NAME|RESOURCE|LOCAL PORT|REMOTE PORT|PATH" each.
# More (Grafana, Prometheus) are one line each; set in main, after the settings are read.
FORWARDS=()
FORWARD_PIDS=()
FORWARD_LOGS=()

# Stop every forward this script started (runs on every exit).
cleanup() {
  local pid
  for pid in ${FORWARD_PIDS[@]+"${FORWARD_PIDS[@]}"}; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  rm -f ${FORWARD_LOGS[@]+"${FORWARD_LOGS[@]}"}
}

# Local target: the dashboard of the running local cluster, and its token step.
open_local() {
  if ! address_answers "127.0.0.1:$DASHBOARD_PORT"; then
    die "No Ray dashboard answers on 127.0.0.1:$DASHBOARD_PORT. The local cluster runs only while ./scripts/run-benchmark.sh (dashboard port 8265) or ./scripts/chaos.sh (DASHBOARD_PORT=8266) runs: start one in another terminal and run this again, with that DASHBOARD_PORT."
  fi
  log "Ray dashboard: http://127.0.0.1:$DASHBOARD_PORT"
  if [[ -f "$CLUSTER_DIR/auth_token" ]]; then
    log "This cluster uses token authentication. When the dashboard asks for a token, paste the contents of $CLUSTER_DIR/auth_token (print it with: cat $CLUSTER_DIR/auth_token). Each start of the cluster makes a new token."
  else
    warn "No $CLUSTER_DIR/auth_token: if the dashboard asks for a token, set RAY_PORT or CLUSTER_DIR to the cluster's (chaos.sh: RAY_PORT=6381)."
  fi
}

# Start one forward in the background and wait until kubectl says it listens.
start_forward() {
  local name="$1" resource="$2" local_port="$3" remote_port="$4" url_path="$5" log_file pid deadline
  if address_answers "127.0.0.1:$local_port"; then
    die "Port $local_port on this machine is already taken (a local Ray dashboard, or another forward?), so the $name cannot be forwarded there. Free it, or choose another: DASHBOARD_PORT=8266 $0"
  fi
  log_file="$(mktemp "${TMPDIR:-/tmp}/port-forward.XXXXXX")"
  FORWARD_LOGS+=("$log_file")
  kubectl --context "$KUBE_CONTEXT" --namespace "$RAY_NAMESPACE" port-forward "$resource" \
    "$local_port:$remote_port" >"$log_file" 2>&1 &
  pid=$!
  FORWARD_PIDS+=("$pid")
  deadline=$((SECONDS + FORWARD_TIMEOUT))
  until grep -q '^Forwarding from' "$log_file"; do
    if ! kill -0 "$pid" 2>/dev/null || ((SECONDS >= deadline)); then
      die "kubectl could not forward the $name ($resource port $remote_port): $(tr '\n' ' ' <"$log_file")Is the RayCluster up? 'kubectl --context $KUBE_CONTEXT -n $RAY_NAMESPACE get pods,svc -l ray.io/cluster=$RAY_CLUSTER_NAME' (a RayJob's: HEAD_SERVICE=<rayjob>-head-svc)."
    fi
    sleep 0.2
  done
  log "$name: http://127.0.0.1:$local_port$url_path"
}

# Minikube target: forward every port of FORWARDS and keep them open until Ctrl-C.
open_minikube() {
  require_tool kubectl "https://kubernetes.io/docs/tasks/tools/"
  require_minikube_context
  KUBE_CONTEXT="$(current_kube_context)"
  trap cleanup EXIT
  trap 'log "Stopping the forward(s)."; exit 0' INT TERM
  local forward name resource local_port remote_port url_path
  for forward in "${FORWARDS[@]}"; do
    IFS='|' read -r name resource local_port remote_port url_path <<<"$forward"
    start_forward "$name" "$resource" "$local_port" "$remote_port" "$url_path"
  done
  log "Keep this terminal open while you use the address(es) above; Ctrl-C stops the forward(s)."
  # Until a forward ends (its pod went away, say): then say so. (No `wait -n`: bash 3.2.)
  local pid
  while true; do
    for pid in "${FORWARD_PIDS[@]}"; do
      kill -0 "$pid" 2>/dev/null || break 2
    done
    sleep 1
  done
  die "A port-forward ended (its pod restarted or went away; output: $(cat "${FORWARD_LOGS[@]}" | tail -n 3 | tr '\n' ' ')). Run ./scripts/open-dashboard.sh again."
}

main() {
  if [[ "${1:-}" == "--help" || "${1:-}" == "-h" ]]; then
    print_usage
    return 0
  fi
  require_one_of TARGET "$TARGET" auto local minikube
  require_positive_int DASHBOARD_PORT "$DASHBOARD_PORT"
  FORWARDS=("Ray dashboard|svc/$HEAD_SERVICE|$DASHBOARD_PORT|8265|/")
  if [[ "$TARGET" == auto ]]; then
    if minikube_target_available; then TARGET=minikube; else TARGET=local; fi
    log "TARGET=auto: using the $TARGET target (TARGET=local or TARGET=minikube to choose)."
  fi
  if [[ "$TARGET" == minikube ]]; then
    open_minikube
  else
    open_local
  fi
}

main "$@"
