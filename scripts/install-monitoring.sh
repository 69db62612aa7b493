#!/usr/bin/env bash
# Install Prometheus and Grafana into the minikube cluster for the Ray pods: the
# kube-prometheus-stack Helm chart at a pinned version, sized for the two nodes
# (k8s/kube-prometheus-stack-values.yaml), the PodMonitors of k8s/ray-monitors.yaml, and
# Grafana dashboards from ConfigMaps: Ray's own, copied out of the running head pod (Ray writes
# them there when it starts), and ours, monitoring/grafana/data_parallel_training.json. Run it
# after ./scripts/install-ray.sh; then ./scripts/open-dashboard.sh opens all of it. Safe to
# re-run: Helm upgrades in place and the other objects are applied again.
#
# Usage: [MINIKUBE_PROFILE=minikube] [RAY_NAMESPACE=default] [RAY_CLUSTER_NAME=ray-training-cluster]
#        [MONITORING_NAMESPACE=prometheus-system] [MONITORING_CHART_VERSION=88.5.3]
#        [POD_READY_TIMEOUT=600] [ALLOW_ANY_CONTEXT=0] ./scripts/install-monitoring.sh [--help]
#   MONITORING_NAMESPACE      where the chart's release "prometheus" and the dashboards'
#                             ConfigMaps go; k8s/ray-cluster.yaml's RAY_GRAFANA_HOST and
#                             RAY_PROMETHEUS_HOST name it, so change both together.
#   MONITORING_CHART_VERSION  the kube-prometheus-stack chart version; the values file is
#                             written for 88.5.3. Helm fetches the chart straight from
#                             https://prometheus-community.github.io/helm-charts (no 'helm repo add').
#   POD_READY_TIMEOUT         seconds to wait for the chart's pods and for Prometheus.
#   ALLOW_ANY_CONTEXT=1       allow a kube-context other than the minikube profile.
# Monitoring asks for 0.66 CPU and about 1.4 GiB of memory, on the node without the control
# plane where it can (the arithmetic is in k8s/kube-prometheus-stack-values.yaml).
set -o errexit -o nounset -o pipefail

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=scripts/lib/k8s.sh
source "$SCRIPTS_DIR/lib/k8s.sh"
# shellcheck source=scripts/lib/dashboards.sh
source "$SCRIPTS_DIR/lib/dashboards.sh"

load_k8s_settings
# 88.5.3 (August 2026): Prometheus Operator v0.93.1, Grafana 13.2.0; Kubernetes 1.25 or newer.
MONITORING_CHART_VERSION="${MONITORING_CHART_VERSION:-88.5.3}"
POD_READY_TIMEOUT="${POD_READY_TIMEOUT:-600}"
ALLOW_ANY_CONTEXT="${ALLOW_ANY_CONTEXT:-0}"
readonly CHART_REPO_URL="https://prometheus-community.github.io/helm-charts"
readonly CHART_NAME="kube-prometheus-stack"
readonly VALUES_FILE="$REPO_ROOT/k8s/kube-prometheus-stack-values.yaml"
readonly MONITORS_FILE="$REPO_ROOT/k8s/ray-monitors.yaml"
readonly CLUSTER_MANIFEST="$REPO_ROOT/k8s/ray-cluster.yaml"
readonly OUR_DASHBOARD="$REPO_ROOT/monitoring/grafana/data_parallel_training.json"
# Where Ray writes its Grafana dashboards in the head pod, when its dashboard starts.
readonly RAY_DASHBOARDS_DIR="/tmp/ray/session_latest/metrics/grafana/dashboards"
readonly DEMO_LABEL="app.kubernetes.io/part-of=ray-parallel-training-demo"

KUBE_CONTEXT=""
HEAD_POD=""
WORK_DIR=""
# Set when the cluster had the Prometheus Operator's CRDs before this script installed any.
FOREIGN_CRDS=0
# Set when the running head lacks k8s/ray-cluster.yaml's RAY_GRAFANA_HOST.
HEAD_LACKS_GRAFANA_HOST=0
# The ConfigMaps made for Grafana, for the closing message.
DASHBOARD_NAMES=()
# State for the exit trap: the step that is running, and whether the cluster was touched.
CURRENT_STEP="checking prerequisites"
TOUCHED_CLUSTER=0

# On exit remove the copied dashboards; on failure say how far the install got.
cleanup() {
  local status=$?
  if [[ -n "$WORK_DIR" ]]; then
    rm -rf "$WORK_DIR"
  fi
  if ((status != 0 && TOUCHED_CLUSTER == 1)); then
    warn "install-monitoring.sh stopped while $CURRENT_STEP. What was installed is left in place for inspection; './scripts/cleanup.sh' removes it, and re-running this script continues."
  fi
}

# kubectl against the chosen context.
kube() {
  kubectl --context "$KUBE_CONTEXT" "$@"
}

# Check tools, the kube-context, the files and the cluster before touching anything.
check_prerequisites() {
  require_tool kubectl "https://kubernetes.io/docs/tasks/tools/"
  require_tool helm "https://helm.sh/docs/intro/install/"
  require_minikube_context
  KUBE_CONTEXT="$(current_kube_context)"
  local file
  for file in "$VALUES_FILE" "$MONITORS_FILE" "$CLUSTER_MANIFEST" "$OUR_DASHBOARD"; do
    [[ -f "$file" ]] || die "$file is missing; restore it (git checkout -- ${file#"$REPO_ROOT/"})."
  done
  if ! grep -qF "http://$GRAFANA_SERVICE.$MONITORING_NAMESPACE.svc:80" "$CLUSTER_MANIFEST"; then
    die "MONITORING_NAMESPACE is '$MONITORING_NAMESPACE', but RAY_GRAFANA_HOST in k8s/ray-cluster.yaml names another Grafana; the Ray dashboard would not find it. Use the same namespace in both (RAY_GRAFANA_HOST and RAY_PROMETHEUS_HOST), then run ./scripts/install-ray.sh and this script."
  fi
  if ! kube --request-timeout=10s get nodes >/dev/null 2>&1; then
    die "Cannot reach the cluster of context '$KUBE_CONTEXT'. Is it running? Run ./scripts/setup-minikube.sh."
  fi
}

# Find the running head pod: Ray's dashboards are copied from it.
find_head_pod() {
  HEAD_POD="$(ray_head_pod --context "$KUBE_CONTEXT")"
  if [[ -z "$HEAD_POD" ]]; then
    die "No running Ray head pod of RayCluster '$RAY_CLUSTER_NAME' in namespace '$RAY_NAMESPACE'. Ray writes its Grafana dashboards there, and monitoring watches its pods: run ./scripts/install-ray.sh first, then this script."
  fi
  log "Ray head pod: $HEAD_POD"
}

# Warn when the head runs without the RAY_GRAFANA_HOST of k8s/ray-cluster.yaml (it started
# before that setting existed): Grafana works, but the Ray dashboard will not embed it.
check_head_environment() {
  local expected="http://$GRAFANA_SERVICE.$MONITORING_NAMESPACE.svc:80" actual
  actual="$(kube --namespace "$RAY_NAMESPACE" exec "$HEAD_POD" -c ray-head -- printenv RAY_GRAFANA_HOST 2>/dev/null || true)"
  actual="${actual%$'\r'}"
  if [[ "$actual" != "$expected" ]]; then
    HEAD_LACKS_GRAFANA_HOST=1
    warn "The Ray head runs without RAY_GRAFANA_HOST=$expected (it started before k8s/ray-cluster.yaml set it). Grafana and Prometheus will work, but the Ray dashboard will not embed their charts until the head restarts with it: run ./scripts/install-ray.sh, which applies k8s/ray-cluster.yaml; KubeRay then deletes every Ray pod and creates it anew (a minute or two; a benchmark running then is stopped)."
  fi
}

# Note whether the Prometheus Operator's CRDs exist already and were not installed by us.
note_existing_crds() {
  local owner
  if owner="$(kube get crd prometheuses.monitoring.coreos.com \
    --output 'jsonpath={.metadata.labels.app\.kubernetes\.io/part-of}' 2>/dev/null)"; then
    if [[ "$owner" != "${DEMO_LABEL#*=}" ]]; then
      FOREIGN_CRDS=1
      warn "The cluster already has the Prometheus Operator's CRDs (monitoring.coreos.com), from another installation; the chart uses them as they are, and ./scripts/cleanup.sh will leave them."
    fi
  fi
}

# Install or upgrade the chart and wait for its pods.
install_chart() {
  CURRENT_STEP="installing the $CHART_NAME chart"
  TOUCHED_CLUSTER=1
  log "Installing $CHART_NAME $MONITORING_CHART_VERSION as release '$MONITORING_RELEASE' into namespace '$MONITORING_NAMESPACE' (the first time: a few minutes, the images are downloaded)."
  helm upgrade --install "$MONITORING_RELEASE" "$CHART_NAME" \
    --repo "$CHART_REPO_URL" --version "$MONITORING_CHART_VERSION" \
    --namespace "$MONITORING_NAMESPACE" --create-namespace \
    --kube-context "$KUBE_CONTEXT" \
    --values "$VALUES_FILE" \
    --wait --timeout "${POD_READY_TIMEOUT}s" || {
    explain_pods "$KUBE_CONTEXT" "$MONITORING_NAMESPACE" app.kubernetes.io/instance
    die "Helm could not install $CHART_NAME $MONITORING_CHART_VERSION (Helm's error and the state of its pods are above). No pods: the chart could not be downloaded (check your network), or the version $MONITORING_CHART_VERSION may not exist. Check it: helm show chart $CHART_NAME --repo $CHART_REPO_URL --version $MONITORING_CHART_VERSION   (to list the versions: helm repo add prometheus-community $CHART_REPO_URL; helm search repo prometheus-community/$CHART_NAME --versions)   and set MONITORING_CHART_VERSION to one that exists (k8s/kube-prometheus-stack-values.yaml is written for 88.5.3). Then run this script again."
  }
}

# Label the chart's CRDs as ours when this install created them, so that cleanup.sh
# removes them (Helm never does) and leaves another installation's alone.
label_crds() {
  ((FOREIGN_CRDS == 0)) || return 0
  CURRENT_STEP="labelling the chart's CRDs"
  kube label crd "${MONITORING_CRDS[@]}" "$DEMO_LABEL" --overwrite >/dev/null ||
    warn "Could not label the CRDs ${MONITORING_CRDS[*]}; ./scripts/cleanup.sh will leave them ('kubectl delete crd NAME' removes one)."
}

# Wait until the operator has started Prometheus (its resource is named like its Service).
wait_for_prometheus() {
  CURRENT_STEP="waiting for Prometheus"
  if ! kube --namespace "$MONITORING_NAMESPACE" wait --for=condition=Available \
    "prometheuses.monitoring.coreos.com/$PROMETHEUS_SERVICE" --timeout="${POD_READY_TIMEOUT}s" >/dev/null; then
    explain_pods "$KUBE_CONTEXT" "$MONITORING_NAMESPACE" app.kubernetes.io/instance
    die "Prometheus was not available within ${POD_READY_TIMEOUT}s (what its pod waits for is above; the operator's log: kubectl --context $KUBE_CONTEXT -n $MONITORING_NAMESPACE logs deployment/$MONITORING_RELEASE-kube-prometheus-operator). Then run this script again."
  fi
}

# Apply the PodMonitors beside the RayCluster.
apply_monitors() {
  CURRENT_STEP="applying k8s/ray-monitors.yaml"
  log "Applying k8s/ray-monitors.yaml (PodMonitors of the Ray head and workers) in namespace '$RAY_NAMESPACE'."
  kube --namespace "$RAY_NAMESPACE" apply --filename "$MONITORS_FILE" ||
    die "kubectl apply of k8s/ray-monitors.yaml failed (output above). Is the PodMonitor CRD installed? 'kubectl get crd podmonitors.monitoring.coreos.com'"
}

main() {
  parse_common_flags "$@"
  log "Settings:"
  log_settings MINIKUBE_PROFILE RAY_NAMESPACE RAY_CLUSTER_NAME MONITORING_NAMESPACE MONITORING_CHART_VERSION POD_READY_TIMEOUT ALLOW_ANY_CONTEXT
  require_positive_int POD_READY_TIMEOUT "$POD_READY_TIMEOUT"
  trap cleanup EXIT
  check_prerequisites
  find_head_pod
  check_head_environment
  copy_ray_dashboards
  note_existing_crds
  install_chart
  label_crds
  wait_for_prometheus
  apply_monitors
  provision_dashboards
  CURRENT_STEP="finishing"
  log "Done: Prometheus scrapes the Ray pods every 10 s; Grafana has Ray's dashboards and 'Data-parallel training'."
  log "Open them: ./scripts/open-dashboard.sh (it forwards the Ray dashboard, Grafana and Prometheus, and prints the Grafana login)."
  if ((HEAD_LACKS_GRAFANA_HOST == 1)); then
    log "For the charts inside the Ray dashboard, restart the Ray pods with k8s/ray-cluster.yaml's settings first: ./scripts/install-ray.sh (see the warning above)."
  fi
}

main "$@"
