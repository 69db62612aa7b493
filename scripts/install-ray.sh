#!/usr/bin/env bash
# Install the KubeRay operator (pinned Helm chart) into the minikube cluster, build and
# load the training image, apply k8s/ray-cluster.yaml and k8s/ray-service.yaml, and
# wait until the Ray head and every worker pod are Ready. Safe to re-run: Helm upgrades
# in place, kubectl apply only changes what changed, and an edited k8s/ray-cluster.yaml
# takes effect (KubeRay recreates the Ray pods; the script says so and waits). On a time-out
# it prints what each pod waits for (OOMKilled, ErrImageNeverPull, Pending, ...) and the fix.
#
# Usage: [MINIKUBE_PROFILE=minikube] [RAY_NAMESPACE=default] [RAY_CLUSTER_NAME=ray-training-cluster]
#        [OPERATOR_NAMESPACE=ray-system] [KUBERAY_VERSION=1.7.0] [IMAGE=ray-training-demo:ray2.60.0-py311]
#        [POD_READY_TIMEOUT=600] [ALLOW_ANY_CONTEXT=0] [SKIP_IMAGE_BUILD=0] [CHECKPOINTS=0]
#        ./scripts/install-ray.sh [--help]
#   CHECKPOINTS=1        also install the in-cluster S3 store of k8s/checkpoint-storage.yaml
#                        (MinIO, 0.25 CPU / 512 MiB), which CHECKPOINT=1, RESUME=1 and
#                        TARGET=minikube ./scripts/experiments/chaos.sh need: the pods share no disk.
#   ALLOW_ANY_CONTEXT=1  allow a kube-context other than the minikube profile.
#   SKIP_IMAGE_BUILD=1   do not run docker/build-and-push.sh (the image is already loaded).
#   POD_READY_TIMEOUT    seconds to wait for the operator and for the Ray pods.
#   POLL_INTERVAL        seconds between two looks at the pods (default 5).
set -o errexit -o nounset -o pipefail

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=scripts/lib/k8s.sh
source "$SCRIPTS_DIR/lib/k8s.sh"
# shellcheck source=scripts/lib/raycluster.sh
source "$SCRIPTS_DIR/lib/raycluster.sh"

load_k8s_settings
# The chart's version is the operator's; 1.7.0 supports the ray.io/v1 RayCluster and Ray 2.60.
KUBERAY_VERSION="${KUBERAY_VERSION:-1.7.0}"
KUBERAY_CHART_REPO="${KUBERAY_CHART_REPO:-https://ray-project.github.io/kuberay-helm/}"
POD_READY_TIMEOUT="${POD_READY_TIMEOUT:-600}"
ALLOW_ANY_CONTEXT="${ALLOW_ANY_CONTEXT:-0}"
SKIP_IMAGE_BUILD="${SKIP_IMAGE_BUILD:-0}"
CHECKPOINTS="${CHECKPOINTS:-0}"
readonly CLUSTER_MANIFEST="$REPO_ROOT/k8s/ray-cluster.yaml"
readonly SERVICE_MANIFEST="$REPO_ROOT/k8s/ray-service.yaml"
readonly STORAGE_MANIFEST="$REPO_ROOT/k8s/checkpoint-storage.yaml"

POLL_INTERVAL="${POLL_INTERVAL:-5}"

KUBE_CONTEXT=""
LOADED_MARKER=""
# Set when KubeRay recreated the Ray pods for a changed spec (follow_spec_change).
RECREATED=0
# State for the exit trap: the step that is running, and whether the cluster was touched.
CURRENT_STEP="checking prerequisites"
TOUCHED_CLUSTER=0

# On failure say how far the install got; keep what exists so it can be inspected.
cleanup() {
  local status=$?
  if [[ -n "$LOADED_MARKER" ]]; then
    rm -f "$LOADED_MARKER"
  fi
  if ((status != 0 && TOUCHED_CLUSTER == 1)); then
    warn "install-ray.sh stopped while $CURRENT_STEP. What was installed is left in place for inspection; './scripts/cleanup.sh' removes it, and re-running this script continues."
  fi
}

# Check tools, the kube-context and the manifests before touching anything.
check_prerequisites() {
  require_tool kubectl "https://kubernetes.io/docs/tasks/tools/"
  require_tool helm "https://helm.sh/docs/intro/install/"
  require_minikube_context
  KUBE_CONTEXT="$(current_kube_context)"
  [[ -f "$CLUSTER_MANIFEST" ]] || die "$CLUSTER_MANIFEST is missing."
  [[ -f "$SERVICE_MANIFEST" ]] || die "$SERVICE_MANIFEST is missing."
  if [[ "$CHECKPOINTS" == "1" && ! -f "$STORAGE_MANIFEST" ]]; then
    die "$STORAGE_MANIFEST is missing; it is needed for CHECKPOINTS=1."
  fi
  if ! grep -qE "^  name: $RAY_CLUSTER_NAME\$" "$CLUSTER_MANIFEST"; then
    die "RAY_CLUSTER_NAME is '$RAY_CLUSTER_NAME' but $CLUSTER_MANIFEST names another cluster. Use the same name in both (and in k8s/ray-service.yaml's selector)."
  fi
  if ! grep -qF "image: $IMAGE" "$CLUSTER_MANIFEST"; then
    die "IMAGE is '$IMAGE' but $CLUSTER_MANIFEST runs another image; the pods would not find it. Use the same name:tag in both."
  fi
  if ! kubectl --context "$KUBE_CONTEXT" --request-timeout=10s get nodes >/dev/null 2>&1; then
    die "Cannot reach the cluster of context '$KUBE_CONTEXT'. Is it running? Run ./scripts/setup-minikube.sh."
  fi
}

# Install or upgrade the KubeRay operator and its CRDs, and wait for it to be available.
install_operator() {
  CURRENT_STEP="installing the KubeRay operator"
  TOUCHED_CLUSTER=1
  log "Installing the KubeRay operator chart $KUBERAY_VERSION into namespace '$OPERATOR_NAMESPACE'."
  helm upgrade --install kuberay-operator kuberay-operator \
    --repo "$KUBERAY_CHART_REPO" --version "$KUBERAY_VERSION" \
    --namespace "$OPERATOR_NAMESPACE" --create-namespace \
    --kube-context "$KUBE_CONTEXT" \
    --wait --timeout "${POD_READY_TIMEOUT}s" || {
    explain_pods "$KUBE_CONTEXT" "$OPERATOR_NAMESPACE" app.kubernetes.io/name=kuberay-operator
    die "Helm could not install kuberay-operator $KUBERAY_VERSION (the state of its pod, if it has one, is above). No pod: check your network (the chart repository could not be reached). Then run this script again."
  }
}

# Build the image and load it into minikube (skipped when both are current).
build_image() {
  CURRENT_STEP="building and loading the image"
  if [[ "$SKIP_IMAGE_BUILD" == "1" ]]; then
    log "SKIP_IMAGE_BUILD=1: using the image already loaded into minikube."
    return 0
  fi
  LOADED_MARKER="$(mktemp "${TMPDIR:-/tmp}/ray-image-loaded.XXXXXX")"
  LOADED_MARKER="$LOADED_MARKER" "$REPO_ROOT/docker/build-and-push.sh"
}

# True when the RayCluster already exists.
ray_cluster_exists() {
  kubectl --context "$KUBE_CONTEXT" --namespace "$RAY_NAMESPACE" get raycluster "$RAY_CLUSTER_NAME" >/dev/null 2>&1
}

# Create RAY_NAMESPACE unless it is the default one.
ensure_namespace() {
  CURRENT_STEP="creating namespace '$RAY_NAMESPACE'"
  if [[ "$RAY_NAMESPACE" != "default" ]]; then
    kubectl --context "$KUBE_CONTEXT" create namespace "$RAY_NAMESPACE" --dry-run=client --output yaml |
      kubectl --context "$KUBE_CONTEXT" apply --filename - >/dev/null
  fi
}

# CHECKPOINTS=1: apply the in-cluster S3 store (k8s/checkpoint-storage.yaml), wait for it.
install_checkpoint_storage() {
  [[ "$CHECKPOINTS" == "1" ]] || return 0
  CURRENT_STEP="installing the checkpoint storage"
  TOUCHED_CLUSTER=1
  log "CHECKPOINTS=1: installing the checkpoint store (k8s/checkpoint-storage.yaml) in namespace '$RAY_NAMESPACE'."
  kubectl --context "$KUBE_CONTEXT" --namespace "$RAY_NAMESPACE" apply --filename "$STORAGE_MANIFEST" ||
    die "kubectl apply of k8s/checkpoint-storage.yaml failed (output above)."
  if ! kubectl --context "$KUBE_CONTEXT" --namespace "$RAY_NAMESPACE" rollout status \
    deployment/ray-checkpoint-storage --timeout="${POD_READY_TIMEOUT}s"; then
    explain_pods "$KUBE_CONTEXT" "$RAY_NAMESPACE" app.kubernetes.io/name=ray-checkpoint-storage
    die "The checkpoint store was not ready within ${POD_READY_TIMEOUT}s (what its pod waits for is above). If its image cannot be pulled, see the comment about the image in k8s/checkpoint-storage.yaml. Then run this script again."
  fi
}

# True when the running head pod has the store's keys in its environment (or no head
# pod runs yet: new pods read the Secret when they start).
head_has_storage_keys() {
  local head
  head="$(ray_head_pod --context "$KUBE_CONTEXT")"
  [[ -n "$head" ]] || return 0
  kubectl --context "$KUBE_CONTEXT" --namespace "$RAY_NAMESPACE" exec "$head" -c ray-head -- \
    printenv AWS_ACCESS_KEY_ID >/dev/null 2>&1
}

# Apply the RayCluster and the NodePort service; follow what the operator does with a change.
apply_manifests() {
  CURRENT_STEP="applying the manifests"
  local existed=0 restart_reason="" old_head="" old_pods="" output
  if ray_cluster_exists; then
    existed=1
    old_head="$(ray_head_pod --context "$KUBE_CONTEXT")"
    old_pods="$(live_ray_pods)"
  fi
  log "Applying k8s/ray-cluster.yaml and k8s/ray-service.yaml in namespace '$RAY_NAMESPACE'."
  output="$(kubectl --context "$KUBE_CONTEXT" --namespace "$RAY_NAMESPACE" apply \
    --filename "$CLUSTER_MANIFEST" --filename "$SERVICE_MANIFEST")" ||
    die "kubectl apply failed (output above). Is the operator's CRD installed? 'kubectl get crd rayclusters.ray.io'"
  printf '%s\n' "$output"
  if ((existed == 1)) && grep -q "^raycluster.ray.io/$RAY_CLUSTER_NAME configured" <<<"$output"; then
    follow_spec_change "$old_head" "$old_pods"
  fi
  # KubeRay does not recreate running pods when the image behind a tag changes, and a
  # pod reads its Secret-backed variables only when it starts: restart the Ray pods when
  # a new build was just loaded into an existing cluster, or when they started before
  # the checkpoint store's Secret existed (unless KubeRay is recreating them anyway).
  if ((existed == 1 && RECREATED == 0)); then
    if [[ -n "$LOADED_MARKER" && -s "$LOADED_MARKER" ]]; then
      restart_reason="A new image was loaded"
    elif [[ "$CHECKPOINTS" == "1" ]] && ! head_has_storage_keys; then
      restart_reason="The Ray pods started before the checkpoint store's keys existed"
    fi
  fi
  if [[ -n "$restart_reason" ]]; then
    log "$restart_reason; restarting the Ray pods so they pick it up (KubeRay creates them anew)."
    kubectl --context "$KUBE_CONTEXT" --namespace "$RAY_NAMESPACE" delete pods \
      --selector "ray.io/cluster=$RAY_CLUSTER_NAME"
  fi
}

# The worker replicas that k8s/ray-cluster.yaml asks for.
wanted_workers() {
  kubectl --context "$KUBE_CONTEXT" --namespace "$RAY_NAMESPACE" get raycluster "$RAY_CLUSTER_NAME" \
    --output 'jsonpath={.spec.workerGroupSpecs[0].replicas}' 2>/dev/null || true
}

# Count the Ray pods of one type (head or worker) that are Ready.
count_ready_pods() {
  local node_type="$1"
  kubectl --context "$KUBE_CONTEXT" --namespace "$RAY_NAMESPACE" get pods \
    --selector "ray.io/cluster=$RAY_CLUSTER_NAME,ray.io/node-type=$node_type" \
    --output 'jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' 2>/dev/null |
    grep -c '^True$' || true
}

# Wait until the head and every wanted worker pod are Ready, or explain why not.
wait_for_ray_pods() {
  CURRENT_STEP="waiting for the Ray pods"
  local workers deadline head_ready workers_ready
  workers="$(wanted_workers)"
  [[ "$workers" =~ ^[0-9]+$ ]] || workers=0
  log "Waiting up to ${POD_READY_TIMEOUT}s for the head and $workers worker pod(s) to be Ready."
  deadline=$((SECONDS + POD_READY_TIMEOUT))
  while true; do
    head_ready="$(count_ready_pods head)"
    workers_ready="$(count_ready_pods worker)"
    if ((head_ready >= 1 && workers_ready >= workers)); then
      log "Ray is up: head Ready, $workers_ready/$workers workers Ready."
      return 0
    fi
    if ((SECONDS >= deadline)); then
      break
    fi
    sleep "$POLL_INTERVAL"
  done
  explain_pods "$KUBE_CONTEXT" "$RAY_NAMESPACE" "ray.io/cluster=$RAY_CLUSTER_NAME"
  die "Timed out after ${POD_READY_TIMEOUT}s: head Ready ${head_ready}/1, workers Ready ${workers_ready}/$workers. What each pod is waiting for, and what to do, is above; then run this script again."
}

main() {
  parse_common_flags "$@"
  log "Settings:"
  log_settings MINIKUBE_PROFILE RAY_NAMESPACE RAY_CLUSTER_NAME OPERATOR_NAMESPACE KUBERAY_VERSION IMAGE POD_READY_TIMEOUT ALLOW_ANY_CONTEXT SKIP_IMAGE_BUILD CHECKPOINTS
  require_positive_int POD_READY_TIMEOUT "$POD_READY_TIMEOUT"
  require_one_of CHECKPOINTS "$CHECKPOINTS" 0 1
  trap cleanup EXIT
  check_prerequisites
  install_operator
  build_image
  ensure_namespace
  install_checkpoint_storage
  apply_manifests
  wait_for_ray_pods
  CURRENT_STEP="finishing"
  log "Done. Dashboard: ./scripts/open-dashboard.sh   Next: TARGET=minikube ./scripts/run-benchmark.sh"
  log "Optional, for the dashboard's time-series charts: ./scripts/install-monitoring.sh (Prometheus and Grafana, about 1.4 GiB)."
  if [[ "$CHECKPOINTS" == "1" ]]; then
    log "Checkpoints: TARGET=minikube CHECKPOINT=1 ./scripts/run-benchmark.sh, or TARGET=minikube ./scripts/experiments/chaos.sh"
  fi
}

main "$@"
