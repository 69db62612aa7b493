#!/usr/bin/env bash
# Kubernetes helpers, shared by setup-minikube.sh, install-ray.sh, install-monitoring.sh,
# cleanup.sh, the Minikube target (scripts/targets/minikube.sh) and docker/build-and-push.sh:
# the settings every script agrees on, the kube-context guard, the Ray head pod, and what to
# do about a pod that is not Ready. Source it after common.sh.

# Set the defaults for the Minikube path once, so every script agrees on names.
load_k8s_settings() {
  : "${MINIKUBE_PROFILE:=minikube}"
  : "${RAY_NAMESPACE:=default}"
  : "${RAY_CLUSTER_NAME:=ray-training-cluster}"
  : "${OPERATOR_NAMESPACE:=ray-system}"
  # The tag carries the Ray and Python versions; it must match k8s/ray-cluster.yaml.
  : "${IMAGE:=ray-training-demo:ray2.60.0-py311}"
  # Where Ray runs keep checkpoints on Kubernetes: the bucket of the in-cluster store that
  # CHECKPOINTS=1 ./scripts/install-ray.sh installs (k8s/checkpoint-storage.yaml).
  : "${K8S_CHECKPOINT_PATH:=s3://ray-checkpoints/runs}"
  # Runs the store keeps: older ones are deleted before a run that checkpoints starts.
  : "${KEEP_RUNS:=5}"
  # Monitoring (install-monitoring.sh): the namespace of the kube-prometheus-stack release.
  : "${MONITORING_NAMESPACE:=prometheus-system}"
  export MINIKUBE_PROFILE RAY_NAMESPACE RAY_CLUSTER_NAME OPERATOR_NAMESPACE IMAGE K8S_CHECKPOINT_PATH KEEP_RUNS
  export MONITORING_NAMESPACE
  # The release's name and the Services the chart names after it: k8s/ray-cluster.yaml's
  # RAY_GRAFANA_HOST and RAY_PROMETHEUS_HOST point at them (the Prometheus resource has the
  # same name as its Service). Fixed, like KubeRay's Prometheus guide, which uses the same.
  # shellcheck disable=SC2034 # read by the scripts that source this file
  MONITORING_RELEASE=prometheus GRAFANA_SERVICE=prometheus-grafana PROMETHEUS_SERVICE=prometheus-kube-prometheus-prometheus
  # The CRDs the chart installs from its crds/ folder (charts/crds/crds of chart 88.5.3).
  # shellcheck disable=SC2034 # read by the scripts that source this file
  MONITORING_CRDS=(alertmanagerconfigs.monitoring.coreos.com alertmanagers.monitoring.coreos.com
    podmonitors.monitoring.coreos.com probes.monitoring.coreos.com
    prometheusagents.monitoring.coreos.com prometheuses.monitoring.coreos.com
    prometheusrules.monitoring.coreos.com scrapeconfigs.monitoring.coreos.com
    servicemonitors.monitoring.coreos.com thanosrulers.monitoring.coreos.com)
}

# The Ray base image of the training image for a Docker architecture (`docker version`'s
# Server.Arch): docker/Dockerfile's default (amd64), with Ray's -aarch64 suffix on arm64.
# Returns 1 for an architecture Ray publishes no image for.
ray_base_image() {
  local arch="$1" default
  default="$(sed -n 's/^ARG RAY_BASE_IMAGE=//p' "$REPO_ROOT/docker/Dockerfile")"
  [[ -n "$default" ]] || die "docker/Dockerfile has no 'ARG RAY_BASE_IMAGE=' line; it names the base image."
  case "$arch" in
    amd64) echo "$default" ;;
    arm64) echo "$default-aarch64" ;;
    *) return 1 ;;
  esac
}

# Fail unless Docker answers; the docker CLI alone is not enough for the Docker driver.
require_docker_running() {
  if ! docker info >/dev/null 2>&1; then
    die "Docker is installed but not running ('docker info' failed). Start Docker Desktop (macOS) or the daemon ('sudo systemctl start docker' on Linux), then run this script again."
  fi
}

# The current kubectl context, or nothing when none is set.
current_kube_context() {
  kubectl config current-context 2>/dev/null || true
}

# Fail unless kubectl points at the minikube profile (ALLOW_ANY_CONTEXT=1 skips this).
require_minikube_context() {
  local context
  context="$(current_kube_context)"
  if [[ "${ALLOW_ANY_CONTEXT:-0}" == "1" ]]; then
    [[ -n "$context" ]] || die "kubectl has no current context. Run ./scripts/setup-minikube.sh first."
    warn "ALLOW_ANY_CONTEXT=1: using kube-context '$context' although it is not the minikube profile '$MINIKUBE_PROFILE'."
    return 0
  fi
  if [[ "$context" != "$MINIKUBE_PROFILE" ]]; then
    die "kubectl's current context is '${context:-<none>}', not the minikube profile '$MINIKUBE_PROFILE'; refusing to touch it. Run 'kubectl config use-context $MINIKUBE_PROFILE' (or ./scripts/setup-minikube.sh), or set ALLOW_ANY_CONTEXT=1 if you really mean that cluster."
  fi
}

# The worker replicas k8s/ray-cluster.yaml asks for (its first `replicas:` line), or nothing.
manifest_worker_replicas() {
  awk '/^ *replicas: *[0-9]+/ {print $2; exit}' "$REPO_ROOT/k8s/ray-cluster.yaml" 2>/dev/null || true
}

# Run a `kubectl wait --for=delete` command (the arguments, a kubectl command line), where
# nothing left to wait for is success: kubectl 1.20 (Debian 12's kubernetes-client) exits 1
# with "no matching resources found" when the objects are already gone, 1.27 and later exit 0,
# as tests/test_real_kubectl.py showed with each. Other output goes to stderr when it fails.
wait_until_deleted() {
  local output
  output="$("$@" 2>&1)" && return 0
  grep -q "no matching resources found" <<<"$output" && return 0
  printf '%s\n' "$output" >&2
  return 1
}

# Name of the running Ray head pod of RAY_CLUSTER_NAME, or nothing. Extra args go to kubectl.
ray_head_pod() {
  kubectl "$@" get pods --namespace "$RAY_NAMESPACE" \
    --selector "ray.io/cluster=$RAY_CLUSTER_NAME,ray.io/node-type=head" \
    --field-selector status.phase=Running \
    --output 'jsonpath={.items[0].metadata.name}' 2>/dev/null || true
}

# Print, for every pod matching SELECTOR in NAMESPACE of CONTEXT that is not Ready, its phase
# and the state of its containers, each with what to do; then the namespace's recent events.
# Called when a wait times out. Usage: explain_pods CONTEXT NAMESPACE SELECTOR
explain_pods() {
  local context="$1" namespace="$2" selector="$3" listing name phase waiting terminated reason message
  # One line per pod, fields separated by '|' (a tab would collapse empty fields in `read`).
  listing="$(kubectl --context "$context" --namespace "$namespace" get pods --selector "$selector" \
    --output 'jsonpath={range .items[*]}{.metadata.name}{"|"}{.status.phase}{"|"}{.status.initContainerStatuses[*].state.waiting.reason}{" "}{.status.containerStatuses[*].state.waiting.reason}{"|"}{.status.initContainerStatuses[*].lastState.terminated.reason}{" "}{.status.containerStatuses[*].state.terminated.reason}{" "}{.status.containerStatuses[*].lastState.terminated.reason}{"|"}{.status.conditions[?(@.type=="PodScheduled")].reason}{"|"}{.status.conditions[?(@.type=="PodScheduled")].message}{"|"}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' 2>/dev/null || true)"
  printf '\n----- pods (%s) in namespace %s -----\n' "$selector" "$namespace" >&2
  if [[ -z "$listing" ]]; then
    printf 'No pod matches. Is the operator running? kubectl --context %s -n %s logs deployment/kuberay-operator\n' \
      "$context" "${OPERATOR_NAMESPACE:-ray-system}" >&2
  fi
  local ready
  local -a states=()
  while IFS='|' read -r name phase waiting terminated reason message ready; do
    [[ -n "$name" && "$ready" != "True" ]] || continue
    read -r -a states <<<"$waiting $terminated"
    printf 'Pod %s: %s%s\n' "$name" "${phase:-Unknown}" "${states[*]:+ (${states[*]})}" >&2
    printf '  -> %s\n' "$(pod_state_fix "$namespace" "$name" "$phase" "${states[*]:-}" "$reason" "$message")" >&2
  done <<<"$listing"
  printf '\n----- recent events in namespace %s -----\n' "$namespace" >&2
  kubectl --context "$context" --namespace "$namespace" get events --sort-by=.lastTimestamp 2>/dev/null |
    tail -n 20 >&2 || true
}

# What to do about one pod that is not Ready, from its phase, its containers' states and
# its scheduling condition (explain_pods). Usage: pod_state_fix NS POD PHASE STATES REASON MESSAGE
pod_state_fix() {
  local namespace="$1" pod="$2" phase="$3" container_states=" $4 " reason="$5" message="${6:-no node has room}"
  case "$container_states" in
    *" OOMKilled "*)
      echo "OOMKilled: a process used more memory than the pod's limit. Give the pod more memory in k8s/ray-cluster.yaml (the arithmetic at its top says what fits; scripts/experiments/measure-pod-memory.sh measures it) or lower BATCH_SIZE or TRAIN_SIZE, then run ./scripts/install-ray.sh again."
      ;;
    *" ErrImageNeverPull "*)
      echo "ErrImageNeverPull: the image is not on the node this pod was placed on (it is loaded, never pulled). Run docker/build-and-push.sh: it checks every node and loads the image where it is missing. Then run ./scripts/install-ray.sh again."
      ;;
    *" ImagePullBackOff "* | *" ErrImagePull "*)
      echo "ImagePullBackOff: Kubernetes could not download the pod's image. Check the image name ('kubectl describe pod -n $namespace $pod') and the network; the Ray image is never downloaded (docker/build-and-push.sh loads it), the checkpoint store's comes from quay.io."
      ;;
    *" CrashLoopBackOff "* | *" Error "*)
      echo "The container keeps exiting. Its last output: kubectl logs --previous -n $namespace $pod --all-containers"
      ;;
    *" CreateContainerConfigError "*)
      echo "CreateContainerConfigError: a Secret or ConfigMap the pod needs is missing; 'kubectl describe pod -n $namespace $pod' names it."
      ;;
    *)
      if [[ "$phase" == Pending && "$reason" == Unschedulable ]]; then
        echo "Pending, not scheduled: ${message%.}. Lower 'replicas' in k8s/ray-cluster.yaml, or give the nodes more CPUs or memory (NODE_CPUS, NODE_MEMORY of ./scripts/setup-minikube.sh)."
      elif [[ "$phase" == Running ]]; then
        echo "Running but not Ready yet: Ray is still starting, or its readiness check fails. See 'kubectl logs -n $namespace $pod'."
      else
        echo "Still starting (${phase:-no status yet}): a first start on a new node can take minutes. If the events below show no error, raise POD_READY_TIMEOUT."
      fi
      ;;
  esac
}
