#!/usr/bin/env bash
# First name every folder the demo writes on this machine, with its size, and remove none of
# them (your results, checkpoints, downloads, .venv, and the local clusters' folders in /tmp).
# Then remove what install-ray.sh, run-rayjob.sh and install-monitoring.sh created: the RayJobs of
# this demo (and their clusters), the RayCluster and its NodePort service, the checkpoint store
# of CHECKPOINTS=1, the PodMonitors, Grafana's dashboard ConfigMaps and the kube-prometheus-stack
# release, the KubeRay operator (Helm release), the four KubeRay CRDs the chart installed and the
# monitoring CRDs install-monitoring.sh installed, and the operator's and monitoring's
# namespaces. Works on a half-installed cluster and when run twice.
# DELETE_CLUSTER=1 also deletes the minikube profile.
# It only ever talks to the minikube profile's kube-context, whatever context is current.
#
# Usage: [MINIKUBE_PROFILE=minikube] [RAY_NAMESPACE=default] [RAY_CLUSTER_NAME=ray-training-cluster]
#        [OPERATOR_NAMESPACE=ray-system] [MONITORING_NAMESPACE=prometheus-system]
#        [DELETE_CLUSTER=0] [DELETE_TIMEOUT=120] [KEEP_CRDS=0] [ALLOW_ANY_CONTEXT=0]
#        ./scripts/cleanup.sh [--help]
#   DELETE_CLUSTER=1     also run 'minikube delete -p MINIKUBE_PROFILE'.
#   KEEP_CRDS=1          keep the CRDs rayclusters, rayjobs, rayservices and raycronjobs
#                        .ray.io, and the monitoring.coreos.com ones (Helm never removes the
#                        CRDs of a chart's crds/ folder; deleting one deletes every object of
#                        its kind in the cluster). Monitoring CRDs that were in the cluster
#                        before install-monitoring.sh (another installation's) are always kept.
#   ALLOW_ANY_CONTEXT=1  clean the current kube-context instead of the profile's.
set -o errexit -o nounset -o pipefail

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=scripts/lib/k8s.sh
source "$SCRIPTS_DIR/lib/k8s.sh"

load_k8s_settings
DELETE_CLUSTER="${DELETE_CLUSTER:-0}"
DELETE_TIMEOUT="${DELETE_TIMEOUT:-120}"
ALLOW_ANY_CONTEXT="${ALLOW_ANY_CONTEXT:-0}"
KEEP_CRDS="${KEEP_CRDS:-0}"
# What KubeRay chart 1.7.0 installs from its crds/ folder (helm-chart/kuberay-operator/crds).
readonly KUBERAY_CRDS=(rayclusters.ray.io rayjobs.ray.io rayservices.ray.io raycronjobs.ray.io)
# What install-monitoring.sh labels: the ConfigMaps it made, and the CRDs its chart installed.
readonly DEMO_LABEL="app.kubernetes.io/part-of=ray-parallel-training-demo"

KUBE_CONTEXT=""

# kubectl against the chosen context, with a request timeout so a dead cluster fails fast.
kube() {
  kubectl --context "$KUBE_CONTEXT" --request-timeout=30s "$@"
}

# One folder with its size (or "-" when it is not there) and what writes it.
name_folder() {
  local folder="$1" what="$2" size="-"
  [[ ! -d "$folder" ]] || size="$(du -sh "$folder/." 2>/dev/null | cut -f1)"  # /.: through a link
  log "$(printf '  %-36s %6s  %s' "${folder#"$REPO_ROOT"/}/" "$size" "$what")"
}

# Name every folder the demo writes on this machine, with its size; remove none of them.
name_local_folders() {
  local root folder running clusters=0
  log "Folders this demo writes on this machine (this script removes none of them: rm -rf what you no longer need):"
  name_folder "$REPO_ROOT/results" "every run's folder: results, REPORT.md, plots, Prometheus' data (RESULTS_DIR)"
  name_folder "$REPO_ROOT/checkpoints" "Ray Train runs with checkpoints: CHECKPOINT=1 and the chaos demo (CHECKPOINT_DIR)"
  name_folder "$REPO_ROOT/.data" "the CIFAR-10 download of DATASET=cifar10 (DATA_DIR)"
  name_folder "$REPO_ROOT/.venv" "the Python packages; the next script that needs them installs them again"
  # The local clusters' folders (CLUSTER_DIR, /tmp/ray-demo-RAY_PORT by default), and what
  # Python's temporary folder holds of ours: both /tmp and TMPDIR when it is another.
  local -a roots=(/tmp)
  [[ -z "${TMPDIR:-}" || "${TMPDIR%/}" == /tmp ]] || roots+=("${TMPDIR%/}")
  for root in "${roots[@]}"; do
    for folder in "$root"/ray-demo-*; do
      [[ -d "$folder" ]] || continue
      case "${folder##*/}" in
        ray-demo-run-*) name_folder "$folder" "the Ray Train state of a run without checkpoints, killed before its end" ;;
        ray-demo-checkpoint-*) name_folder "$folder" "a checkpoint a worker was writing when it was killed (the chaos demo)" ;;
        *)
          clusters=$((clusters + 1))
          running=""
          ! pgrep -f -- "$folder/ray" >/dev/null 2>&1 ||
            running="; its cluster runs: CLUSTER_DIR=$folder ./scripts/local-cluster.sh stop"
          name_folder "$folder" "a local cluster's nodes: their temp folders and logs, grown by every start$running"
          ;;
      esac
    done
  done
  ((clusters > 0)) || name_folder "/tmp/ray-demo-<RAY_PORT>" "a local cluster's nodes: their temp folders and logs (CLUSTER_DIR)"
  name_folder /tmp/ray "Ray's own temp folder: a run with --address local starts a throwaway cluster there"
}

# Pick the context to clean; print nothing when there is no cluster to clean.
choose_context() {
  if [[ "$ALLOW_ANY_CONTEXT" == "1" ]]; then
    current_kube_context
    return 0
  fi
  if kubectl config get-contexts --output name 2>/dev/null | grep -qxF "$MINIKUBE_PROFILE"; then
    printf '%s\n' "$MINIKUBE_PROFILE"
  fi
}

# Delete the RayCluster (its pods and head service go with it) and the NodePort service.
delete_ray_cluster() {
  kube --namespace "$RAY_NAMESPACE" delete service ray-head-nodeport --ignore-not-found
  if ! kube get crd rayclusters.ray.io >/dev/null 2>&1; then
    log "No RayCluster CRD in the cluster; no RayCluster to delete."
    return 0
  fi
  log "Deleting RayCluster '$RAY_CLUSTER_NAME' in namespace '$RAY_NAMESPACE'."
  kube --namespace "$RAY_NAMESPACE" delete raycluster "$RAY_CLUSTER_NAME" \
    --ignore-not-found --timeout="${DELETE_TIMEOUT}s"
  # The operator removes the pods; wait for them while it is still installed.
  wait_until_deleted kube --namespace "$RAY_NAMESPACE" wait --for=delete pod \
    --selector "ray.io/cluster=$RAY_CLUSTER_NAME" --timeout="${DELETE_TIMEOUT}s" 2>/dev/null ||
    warn "Some Ray pods were still terminating after ${DELETE_TIMEOUT}s; they will go on their own."
}

# Delete the RayJobs of ./scripts/run-rayjob.sh (by their label); their clusters go with them.
delete_ray_jobs() {
  if ! kube get crd rayjobs.ray.io >/dev/null 2>&1; then
    return 0
  fi
  log "Deleting the RayJobs of run-rayjob.sh in namespace '$RAY_NAMESPACE', if any."
  kube --namespace "$RAY_NAMESPACE" delete rayjobs --selector app.kubernetes.io/part-of=ray-parallel-training-demo \
    --ignore-not-found --timeout="${DELETE_TIMEOUT}s"
}

# Delete the KubeRay CRDs the chart installed and the monitoring CRDs install-monitoring.sh
# labelled as its own (Helm leaves both), unless KEEP_CRDS=1.
delete_crds() {
  if [[ "$KEEP_CRDS" == "1" ]]; then
    log "KEEP_CRDS=1: keeping the CRDs ${KUBERAY_CRDS[*]} and the monitoring.coreos.com ones."
    return 0
  fi
  log "Deleting the KubeRay CRDs ${KUBERAY_CRDS[*]} (KEEP_CRDS=1 keeps them)."
  kube delete crd "${KUBERAY_CRDS[@]}" --ignore-not-found --timeout="${DELETE_TIMEOUT}s"
  log "Deleting the monitoring.coreos.com CRDs that install-monitoring.sh installed, if any."
  kube delete crd --selector "$DEMO_LABEL" --ignore-not-found --timeout="${DELETE_TIMEOUT}s"
}

# Delete what install-monitoring.sh created: the PodMonitors, Grafana's dashboard ConfigMaps
# and the kube-prometheus-stack release (Prometheus, its operator, Grafana).
delete_monitoring() {
  if kube get crd podmonitors.monitoring.coreos.com >/dev/null 2>&1; then
    log "Deleting the PodMonitors of k8s/ray-monitors.yaml in namespace '$RAY_NAMESPACE', if present."
    kube --namespace "$RAY_NAMESPACE" delete --filename "$REPO_ROOT/k8s/ray-monitors.yaml" \
      --ignore-not-found --timeout="${DELETE_TIMEOUT}s"
  fi
  log "Deleting Grafana's dashboard ConfigMaps in namespace '$MONITORING_NAMESPACE', if any."
  kube --namespace "$MONITORING_NAMESPACE" delete configmap --selector "$DEMO_LABEL" \
    --ignore-not-found --timeout="${DELETE_TIMEOUT}s"
  if ! command -v helm >/dev/null 2>&1; then
    warn "helm is not installed, so the monitoring release cannot be uninstalled; deleting its namespace instead."
    return 0
  fi
  if helm status "$MONITORING_RELEASE" --namespace "$MONITORING_NAMESPACE" --kube-context "$KUBE_CONTEXT" >/dev/null 2>&1; then
    log "Uninstalling the monitoring release '$MONITORING_RELEASE' from namespace '$MONITORING_NAMESPACE'."
    helm uninstall "$MONITORING_RELEASE" --namespace "$MONITORING_NAMESPACE" --kube-context "$KUBE_CONTEXT" --wait
  else
    log "No $MONITORING_RELEASE release in namespace '$MONITORING_NAMESPACE'."
  fi
}

# Delete the checkpoint store of CHECKPOINTS=1 (k8s/checkpoint-storage.yaml), if any.
delete_checkpoint_storage() {
  log "Deleting the checkpoint store (k8s/checkpoint-storage.yaml) in namespace '$RAY_NAMESPACE', if present."
  kube --namespace "$RAY_NAMESPACE" delete --filename "$REPO_ROOT/k8s/checkpoint-storage.yaml" \
    --ignore-not-found --timeout="${DELETE_TIMEOUT}s"
}

# Uninstall the operator's Helm release when it exists.
uninstall_operator() {
  if ! command -v helm >/dev/null 2>&1; then
    warn "helm is not installed, so the operator release cannot be uninstalled; deleting its namespace instead."
    return 0
  fi
  if helm status kuberay-operator --namespace "$OPERATOR_NAMESPACE" --kube-context "$KUBE_CONTEXT" >/dev/null 2>&1; then
    log "Uninstalling the KubeRay operator from namespace '$OPERATOR_NAMESPACE'."
    helm uninstall kuberay-operator --namespace "$OPERATOR_NAMESPACE" --kube-context "$KUBE_CONTEXT" --wait
  else
    log "No kuberay-operator release in namespace '$OPERATOR_NAMESPACE'."
  fi
}

# Delete the operator's and monitoring's namespaces, and the Ray namespace, unless built in.
delete_namespaces() {
  local namespace
  for namespace in "$OPERATOR_NAMESPACE" "$MONITORING_NAMESPACE" "$RAY_NAMESPACE"; do
    case "$namespace" in
      default | kube-system | kube-public | kube-node-lease) continue ;;
    esac
    log "Deleting namespace '$namespace'."
    kube delete namespace "$namespace" --ignore-not-found --timeout="${DELETE_TIMEOUT}s"
  done
}

# Delete the whole minikube profile (DELETE_CLUSTER=1).
delete_profile() {
  require_tool minikube "https://minikube.sigs.k8s.io/docs/start/"
  log "Deleting minikube profile '$MINIKUBE_PROFILE'."
  minikube delete -p "$MINIKUBE_PROFILE"
}

main() {
  parse_common_flags "$@"
  log "Settings:"
  log_settings MINIKUBE_PROFILE RAY_NAMESPACE RAY_CLUSTER_NAME OPERATOR_NAMESPACE MONITORING_NAMESPACE DELETE_CLUSTER KEEP_CRDS ALLOW_ANY_CONTEXT
  require_positive_int DELETE_TIMEOUT "$DELETE_TIMEOUT"
  require_one_of KEEP_CRDS "$KEEP_CRDS" 0 1
  name_local_folders
  if ! command -v kubectl >/dev/null 2>&1 && [[ "$DELETE_CLUSTER" != 1 && "$ALLOW_ANY_CONTEXT" != 1 ]]; then
    log "kubectl is not installed, so no Kubernetes cluster of this demo can be running; nothing to remove from one."
    exit 0
  fi
  require_tool kubectl "https://kubernetes.io/docs/tasks/tools/"

  KUBE_CONTEXT="$(choose_context)"
  if [[ -z "$KUBE_CONTEXT" ]]; then
    log "kubectl has no context '$MINIKUBE_PROFILE' (the profile is gone or was never started); nothing to remove from a cluster."
  elif ! kube get namespace default >/dev/null 2>&1; then
    if [[ "$DELETE_CLUSTER" != "1" ]]; then
      die "The cluster of context '$KUBE_CONTEXT' does not answer (stopped?). Start it with 'minikube start -p $MINIKUBE_PROFILE' and run this again, or delete it whole: DELETE_CLUSTER=1 $0"
    fi
    log "The cluster of context '$KUBE_CONTEXT' does not answer; it is deleted whole below."
  else
    delete_ray_jobs
    delete_ray_cluster
    delete_checkpoint_storage
    delete_monitoring
    uninstall_operator
    delete_crds
    delete_namespaces
  fi

  if [[ "$DELETE_CLUSTER" == "1" ]]; then
    delete_profile
  fi
  log "Cleanup finished."
}

main "$@"
