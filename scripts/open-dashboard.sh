#!/usr/bin/env bash
# Print the address of the Ray dashboard, for either target:
#   minikube: forwards the head's dashboard port to this machine with `kubectl port-forward`
#             (no NodePort tunnel, so it works the same on Linux, macOS and Windows) and
#             keeps the forward open until Ctrl-C; when ./scripts/install-monitoring.sh has
#             installed them, Grafana and Prometheus too, with the Grafana login;
#   local:    the dashboard of the local cluster that ./scripts/run-benchmark.sh (or
#             experiments/chaos.sh) runs, which asks for the cluster's auth token: where to
#             find it. (Each target is a file of scripts/targets/.)
#
# Usage: [TARGET=auto] [DASHBOARD_PORT=8265] [GRAFANA_PORT=3000] [PROMETHEUS_PORT=9090]
#        ./scripts/open-dashboard.sh [--help]
#   TARGET=auto          auto, local or minikube (auto: minikube when kubectl points at the
#                        profile and the RayCluster has a head pod, else local)
#   DASHBOARD_PORT=8265  local: the port the local cluster's dashboard uses (experiments/chaos.sh: 8266);
#                        minikube: the port on this machine the dashboard is forwarded to
#   RAY_PORT=6380        local: head port of the cluster (names its CLUSTER_DIR)
#   CLUSTER_DIR=/tmp/ray-demo-RAY_PORT  local: the cluster's state, with its auth_token
#   FORWARD_TIMEOUT=15   minikube: seconds to wait for a forward to say it listens
#   HEAD_SERVICE=ray-training-cluster-head-svc  minikube: the head's Service (KubeRay names
#                        it CLUSTER-head-svc; a RayJob's is RAYJOB-NAME-head-svc)
#   GRAFANA_PORT=3000    minikube, with monitoring: the port on this machine for Grafana. The
#                        Ray dashboard embeds Grafana's charts from 127.0.0.1:3000
#                        (RAY_GRAFANA_IFRAME_HOST in k8s/ray-cluster.yaml): change both together.
#   PROMETHEUS_PORT=9090 minikube, with monitoring: the port on this machine for Prometheus
#   MINIKUBE_PROFILE=minikube RAY_NAMESPACE=default RAY_CLUSTER_NAME=ray-training-cluster
#   MONITORING_NAMESPACE=prometheus-system
set -o errexit -o nounset -o pipefail

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=scripts/lib/targets.sh
source "$SCRIPTS_DIR/lib/targets.sh"

TARGET="${TARGET:-auto}"
DASHBOARD_PORT="${DASHBOARD_PORT:-8265}"
RAY_PORT="${RAY_PORT:-6380}"
CLUSTER_DIR="${CLUSTER_DIR:-/tmp/ray-demo-${RAY_PORT}}"
# Empty: the Service KubeRay makes for RAY_CLUSTER_NAME (the minikube target knows it).
HEAD_SERVICE="${HEAD_SERVICE:-}"
GRAFANA_PORT="${GRAFANA_PORT:-3000}"
PROMETHEUS_PORT="${PROMETHEUS_PORT:-9090}"
FORWARD_TIMEOUT="${FORWARD_TIMEOUT:-15}"

main() {
  parse_common_flags "$@"
  require_port DASHBOARD_PORT "$DASHBOARD_PORT"
  require_port GRAFANA_PORT "$GRAFANA_PORT"
  require_port PROMETHEUS_PORT "$PROMETHEUS_PORT"
  require_positive_int FORWARD_TIMEOUT "$FORWARD_TIMEOUT"
  load_target
  announce_target
  trap target_stop EXIT
  target_open_dashboard
}

main "$@"
