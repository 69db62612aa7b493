#!/usr/bin/env bash
# Print the address of the Ray dashboard, for either target:
#   minikube: forwards the head's dashboard port to this machine with `kubectl port-forward`
#             (no NodePort tunnel, so it works the same on Linux, macOS and Windows) and
#             keeps the forward open until Ctrl-C; when ./scripts/install-monitoring.sh has
#             installed them, Grafana and Prometheus too, with the Grafana login;
#   local:    the dashboard of the local cluster that ./scripts/run-benchmark.sh (or
#             chaos.sh) runs, which asks for the cluster's auth token: where to find it.
#
# Usage: [TARGET=auto] [DASHBOARD_PORT=8265] [GRAFANA_PORT=3000] [PROMETHEUS_PORT=9090]
#        ./scripts/open-dashboard.sh [--help]
#   TARGET=auto          auto, local or minikube (auto: minikube when kubectl points at the
#                        profile and the RayCluster has a head pod, else local)
#   DASHBOARD_PORT=8265  local: the port the local cluster's dashboard uses (chaos.sh: 8266);
#                        minikube: the port on this machine the dashboard is forwarded to
#   RAY_PORT=6380        local: head port of the cluster (names its CLUSTER_DIR)
#   CLUSTER_DIR=/tmp/ray-demo-RAY_PORT  local: the cluster's state, with its auth_token
#   HEAD_SERVICE=ray-training-cluster-head-svc  minikube: the head's Service (KubeRay names
#                        it CLUSTER-head-svc; a RayJob's is RAYJOB-NAME-head-svc)
#   GRAFANA_PORT=3000    minikube, with monitoring: the port on this machine for Grafana. The
#                        Ray dashboard embeds Grafana's charts from 127.0.0.1:3000
#                        (RAY_GRAFANA_IFRAME_HOST in k8s/ray-cluster.yaml): change both together.
#   PROMETHEUS_PORT=9090 minikube, with monitoring: the port on this machine for Prometheus
#   MINIKUBE_PROFILE=minikube RAY_NAMESPACE=default RAY_CLUSTER_NAME=ray-training-cluster
#   MONITORING_NAMESPACE=prometheus-system
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
GRAFANA_PORT="${GRAFANA_PORT:-3000}"
PROMETHEUS_PORT="${PROMETHEUS_PORT:-9090}"
# Seconds to wait for a forward to say it listens.
FORWARD_TIMEOUT="${FORWARD_TIMEOUT:-15}"

# The forwards of the minikube target, one
# "NAME|NAMESPACE|RESOURCE|LOCAL PORT|REMOTE PORT|PATH|SETTING OF THE LOCAL PORT" each:
# the Ray dashboard (set in main), then Grafana and Prometheus when they are installed.
FORWARDS=()
MONITORING=0
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
  local name="$1" namespace="$2" resource="$3" local_port="$4" remote_port="$5" url_path="$6" setting="$7"
  local log_file pid deadline
  if address_answers "127.0.0.1:$local_port"; then
    die "Port $local_port on this machine is already taken (a local Ray dashboard, or another forward?), so the $name forward cannot use it. Free it, or choose another: $setting=$((local_port + 1)) $0"
  fi
  log_file="$(mktemp "${TMPDIR:-/tmp}/port-forward.XXXXXX")"
  FORWARD_LOGS+=("$log_file")
  kubectl --context "$KUBE_CONTEXT" --namespace "$namespace" port-forward "$resource" \
    "$local_port:$remote_port" >"$log_file" 2>&1 &
  pid=$!
  FORWARD_PIDS+=("$pid")
  deadline=$((SECONDS + FORWARD_TIMEOUT))
  until grep -q '^Forwarding from' "$log_file"; do
    if ! kill -0 "$pid" 2>/dev/null || ((SECONDS >= deadline)); then
      if [[ "$namespace" == "$MONITORING_NAMESPACE" ]]; then
        die "kubectl could not start the $name forward ($resource port $remote_port): $(tr '\n' ' ' <"$log_file")Are its pods up? 'kubectl --context $KUBE_CONTEXT -n $namespace get pods,svc' (./scripts/install-monitoring.sh installs them again)."
      fi
      die "kubectl could not start the $name forward ($resource port $remote_port): $(tr '\n' ' ' <"$log_file")Is the RayCluster up? 'kubectl --context $KUBE_CONTEXT -n $RAY_NAMESPACE get pods,svc -l ray.io/cluster=$RAY_CLUSTER_NAME' (a RayJob's: HEAD_SERVICE=<rayjob>-head-svc)."
    fi
    sleep 0.2
  done
  log "$name: http://127.0.0.1:$local_port$url_path"
}

# Add Grafana's and Prometheus' forwards when install-monitoring.sh has installed them.
add_monitoring_forwards() {
  local services
  services="$(kubectl --context "$KUBE_CONTEXT" --namespace "$MONITORING_NAMESPACE" get service \
    "$GRAFANA_SERVICE" "$PROMETHEUS_SERVICE" --output name 2>/dev/null || true)"
  if ! grep -qx "service/$GRAFANA_SERVICE" <<<"$services" || ! grep -qx "service/$PROMETHEUS_SERVICE" <<<"$services"; then
    log "Grafana and Prometheus are not installed in namespace '$MONITORING_NAMESPACE'; ./scripts/install-monitoring.sh installs them."
    return 0
  fi
  MONITORING=1
  FORWARDS+=("Grafana|$MONITORING_NAMESPACE|svc/$GRAFANA_SERVICE|$GRAFANA_PORT|80|/|GRAFANA_PORT")
  FORWARDS+=("Prometheus|$MONITORING_NAMESPACE|svc/$PROMETHEUS_SERVICE|$PROMETHEUS_PORT|9090|/|PROMETHEUS_PORT")
  local iframe_port
  iframe_port="$(sed -n 's#^ *value: "http://127\.0\.0\.1:\([0-9][0-9]*\)"$#\1#p' "$REPO_ROOT/k8s/ray-cluster.yaml" | head -n 1)"
  if [[ -n "$iframe_port" && "$iframe_port" != "$GRAFANA_PORT" ]]; then
    warn "GRAFANA_PORT=$GRAFANA_PORT, but the Ray dashboard embeds Grafana's charts from 127.0.0.1:$iframe_port (RAY_GRAFANA_IFRAME_HOST in k8s/ray-cluster.yaml): its Metrics page will stay empty. Grafana itself works on $GRAFANA_PORT; to embed, set both to the same port and run ./scripts/install-ray.sh."
  fi
}

# Print the Grafana login: the admin password the chart generated, kept in a Secret.
print_grafana_login() {
  local password
  password="$(kubectl --context "$KUBE_CONTEXT" --namespace "$MONITORING_NAMESPACE" get secret "$GRAFANA_SERVICE" \
    --output 'jsonpath={.data.admin-password}' 2>/dev/null | base64 --decode 2>/dev/null || true)"
  if [[ -n "$password" ]]; then
    log "Grafana login: admin / $password (viewing needs no login; the dashboards are under Dashboards, ours is 'Data-parallel training')"
  else
    warn "Could not read Grafana's admin password; viewing needs no login. To read it: kubectl --context $KUBE_CONTEXT -n $MONITORING_NAMESPACE get secret $GRAFANA_SERVICE -o jsonpath='{.data.admin-password}' | base64 --decode"
  fi
}

# Minikube target: forward every port of FORWARDS and keep them open until Ctrl-C.
open_minikube() {
  require_tool kubectl "https://kubernetes.io/docs/tasks/tools/"
  require_minikube_context
  KUBE_CONTEXT="$(current_kube_context)"
  add_monitoring_forwards
  trap cleanup EXIT
  trap 'log "Stopping the forward(s)."; exit 0' INT TERM
  local forward name namespace resource local_port remote_port url_path setting
  for forward in "${FORWARDS[@]}"; do
    IFS='|' read -r name namespace resource local_port remote_port url_path setting <<<"$forward"
    start_forward "$name" "$namespace" "$resource" "$local_port" "$remote_port" "$url_path" "$setting"
  done
  if ((MONITORING == 1)); then
    print_grafana_login
  fi
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
  require_positive_int GRAFANA_PORT "$GRAFANA_PORT"
  require_positive_int PROMETHEUS_PORT "$PROMETHEUS_PORT"
  FORWARDS=("Ray dashboard|$RAY_NAMESPACE|svc/$HEAD_SERVICE|$DASHBOARD_PORT|8265|/|DASHBOARD_PORT")
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
