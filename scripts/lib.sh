#!/usr/bin/env bash
# Shared helpers for the scripts in this folder. Source it, do not run it:
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# It defines logging, error and validation helpers and the .venv bootstrap.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export REPO_ROOT
# The scripts run the code as `python -m lesson...`, which finds the packages only from the
# repository root: this makes them work from any folder (cd docs && ../scripts/test.sh).
export PYTHONPATH="$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}"
# The code's folders, one Python package each: the image copies them (docker/).
# shellcheck disable=SC2034 # read by the scripts that source this file
CODE_DIRS=(lesson harness analysis tools)

# Print a progress line on stdout, prefixed with the script's name.
log() {
  printf '[%s] %s\n' "$(basename "$0")" "$*"
}

# Print a warning on stderr.
warn() {
  printf '[%s] WARNING: %s\n' "$(basename "$0")" "$*" >&2
}

# Print an error on stderr and exit non-zero. Say what failed and what to do next.
# LAST_ERROR keeps the message for an EXIT trap (close_run_dir writes it into FAILED).
die() {
  LAST_ERROR="$*"
  printf '[%s] ERROR: %s\n' "$(basename "$0")" "$*" >&2
  exit 1
}

# Fail unless a command exists; the second argument says where to get it.
require_tool() {
  local tool="$1" where="$2"
  if ! command -v "$tool" >/dev/null 2>&1; then
    die "'$tool' is not installed or not on PATH. Install it: $where"
  fi
}

# Fail unless the value of a setting is a whole number >= 1.
require_positive_int() {
  local name="$1" value="$2"
  if ! [[ "$value" =~ ^[0-9]+$ ]] || ((10#$value < 1)); then
    die "$name must be a whole number of at least 1, got '$value'."
  fi
}

# Fail unless the value of a setting is a whole number >= 0.
require_non_negative_int() {
  local name="$1" value="$2"
  if ! [[ "$value" =~ ^[0-9]+$ ]]; then
    die "$name must be a whole number (0 or more), got '$value'."
  fi
}

# Fail unless the value is one of the allowed words.
require_one_of() {
  local name="$1" value="$2"
  shift 2
  local allowed
  for allowed in "$@"; do
    [[ "$value" == "$allowed" ]] && return 0
  done
  die "$name must be one of: $*; got '$value'."
}

# True when something accepts TCP connections at HOST:PORT (giving up after 5 s where
# `timeout` exists; a closed port on a reachable host answers "no" at once).
address_answers() {
  local host="${1%:*}" port="${1##*:}"
  if command -v timeout >/dev/null 2>&1; then
    # shellcheck disable=SC2016 # expanded by the inner bash, from its arguments
    timeout 5 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$host" "$port" 2>/dev/null
  else
    (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
  fi
}

# The Python interpreter used to create .venv: PYTHON if set, else python3.11, else python3.
find_python() {
  local candidate
  for candidate in "${PYTHON:-}" python3.11 python3; do
    [[ -n "$candidate" ]] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  die "Python 3.11 was not found (TensorFlow 2.21 and Ray 2.60 wheels are pinned for it). Install it from https://www.python.org/downloads/ or with pyenv, or set PYTHON=/path/to/python3.11."
}

# Create .venv if missing and install a requirements file into it when it changed.
# Usage: ensure_venv requirements.txt|requirements-dev.txt
ensure_venv() {
  local requirements="${1:-requirements.txt}"
  local venv="$REPO_ROOT/.venv"
  local stamp wanted
  stamp="$venv/.installed-$(basename "$requirements" .txt).sha256"
  if [[ ! -x "$venv/bin/python" ]]; then
    local python
    python="$(find_python)"
    log "Creating $venv with $python"
    "$python" -m venv "$venv" || die "Could not create $venv. On Debian/Ubuntu install python3.11-venv."
  fi
  # The stamp covers every requirements file, since the dev file includes the runtime one.
  wanted="$(cat "$REPO_ROOT"/requirements*.txt | sha256sum_portable)"
  # The test tools' file includes the runtime one, so its stamp covers both.
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]] ||
    [[ -f "$venv/.installed-requirements-dev.sha256" && "$(cat "$venv/.installed-requirements-dev.sha256")" == "$wanted" ]]; then
    return 0
  fi
  log "Installing $requirements into .venv (first time: 2-5 minutes, about 3 GB)"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    -r "$REPO_ROOT/$requirements" ||
    die "pip could not install $requirements. Check your network or proxy, then run this script again."
  echo "$wanted" >"$stamp"
}

# sha256 of stdin on Linux (sha256sum) and macOS (shasum).
sha256sum_portable() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum | cut -d' ' -f1
  else
    shasum -a 256 | cut -d' ' -f1
  fi
}

# A Python that can read lesson/recipe.py (standard library only): .venv's when it
# exists, else PYTHON, python3.11 or python3. The Minikube target needs no .venv for this.
settings_python() {
  local candidate
  for candidate in "$REPO_ROOT/.venv/bin/python" "${PYTHON:-}" python3.11 python3; do
    [[ -n "$candidate" ]] || continue
    if command -v "$candidate" >/dev/null 2>&1; then
      echo "$candidate"
      return 0
    fi
  done
  die "No Python was found to read the defaults in lesson/recipe.py. Install Python 3.11 (https://www.python.org/downloads/) or set PYTHON=/path/to/python3.11."
}

# Set DEFAULT_<NAME> for each training default of a mode (default, smoke or full), read from
# lesson/recipe.py, the one place the defaults live: DEFAULT_EPOCHS, DEFAULT_BATCH_SIZE,
# DEFAULT_DATASET, DEFAULT_TRAIN_SIZE, DEFAULT_TEST_SIZE, DEFAULT_NUM_WORKERS,
# DEFAULT_CPUS_PER_WORKER and DEFAULT_MAX_FAILURES.
load_training_defaults() {
  local mode="$1" defaults name value
  local -a flag=()
  case "$mode" in
    smoke) flag=(--smoke-test) ;;
    full) flag=(--full) ;;
  esac
  defaults="$(cd "$REPO_ROOT" && "$(settings_python)" -m lesson.recipe ${flag[@]+"${flag[@]}"})" ||
    die "Could not read the training defaults from lesson/recipe.py (see above)."
  while IFS='=' read -r name value; do
    [[ "$name" =~ ^[A-Z_]+$ ]] && printf -v "DEFAULT_$name" '%s' "$value"
  done <<<"$defaults"
}

# The training recipe of a mode (default, smoke or full): fills whichever of EPOCHS,
# BATCH_SIZE, DATASET, TRAIN_SIZE and TEST_SIZE are empty from lesson/recipe.py, then
# validates all five.
resolve_recipe() {
  load_training_defaults "$1"
  EPOCHS="${EPOCHS:-$DEFAULT_EPOCHS}"
  BATCH_SIZE="${BATCH_SIZE:-$DEFAULT_BATCH_SIZE}"
  DATASET="${DATASET:-$DEFAULT_DATASET}"
  TRAIN_SIZE="${TRAIN_SIZE:-$DEFAULT_TRAIN_SIZE}"
  TEST_SIZE="${TEST_SIZE:-$DEFAULT_TEST_SIZE}"
  require_one_of DATASET "$DATASET" synthetic cifar10
  require_positive_int EPOCHS "$EPOCHS"
  require_positive_int BATCH_SIZE "$BATCH_SIZE"
  require_positive_int TRAIN_SIZE "$TRAIN_SIZE"
  require_positive_int TEST_SIZE "$TEST_SIZE"
}

# The command line of a training entry point after the interpreter, in the array
# TRAINING_ARGS, built from the recipe (EPOCHS, DATASET, TRAIN_SIZE, TEST_SIZE, and
# BATCH_SIZE per worker). The one place the scripts build it, for every target:
#   training_args baseline WORKERS CPUS RESULTS_DIR [FLAG...]   plain Keras, with the global
#       batch of WORKERS workers (BATCH_SIZE x WORKERS) on the CPUs of one worker
#   training_args ray WORKERS CPUS RESULTS_DIR [FLAG...]        Ray Train, WORKERS x CPUS;
#       adds --max-failures MAX_FAILURES (when set), --checkpoint (CHECKPOINT=1) and
#       --resume (RESUME=1)
# FLAGs are appended as they are (e.g. --data-dir DIR, --address ADDRESS).
training_args() {
  local kind="$1" workers="$2" cpus="$3" results_dir="$4"
  shift 4
  local -a recipe=(--dataset "$DATASET" --train-size "$TRAIN_SIZE" --test-size "$TEST_SIZE"
    --epochs "$EPOCHS" --results-dir "$results_dir")
  case "$kind" in
    baseline)
      TRAINING_ARGS=(-m lesson.baseline_training "${recipe[@]}" --batch-size "$((BATCH_SIZE * workers))"
        --cpus "$cpus")
      ;;
    ray)
      TRAINING_ARGS=(-m lesson.ray_training "${recipe[@]}" --batch-size "$BATCH_SIZE"
        --num-workers "$workers" --cpus-per-worker "$cpus")
      [[ -z "${MAX_FAILURES:-}" ]] || TRAINING_ARGS+=(--max-failures "$MAX_FAILURES")
      [[ "${CHECKPOINT:-0}" != 1 ]] || TRAINING_ARGS+=(--checkpoint)
      [[ "${RESUME:-0}" != 1 ]] || TRAINING_ARGS+=(--resume)
      ;;
    *) die "training_args: unknown entry point '$kind' (baseline or ray)." ;;
  esac
  TRAINING_ARGS+=("$@")
}

# Start the local multi-node cluster (local-cluster.sh) with WORKERS worker nodes, reading
# CPUS_PER_WORKER, RAY_PORT, DASHBOARD_PORT, PIN_CPUS (default auto) and CLUSTER_DIR (default:
# local-cluster.sh's); export what a driver needs to reach it. Sets CLUSTER_STARTED=1, so
# that the caller's EXIT trap can stop_started_cluster.
start_cluster_nodes() {
  local workers="$1"
  CLUSTER_STARTED=1
  NUM_WORKERS="$workers" CPUS_PER_WORKER="$CPUS_PER_WORKER" RAY_PORT="$RAY_PORT" \
    DASHBOARD_PORT="$DASHBOARD_PORT" PIN_CPUS="${PIN_CPUS:-auto}" CLUSTER_DIR="${CLUSTER_DIR:-}" \
    "$REPO_ROOT/scripts/local-cluster.sh" start || {
    CLUSTER_STARTED=0
    die "Could not start the local Ray cluster (see the message above)."
  }
  eval "$(RAY_PORT="$RAY_PORT" CLUSTER_DIR="${CLUSTER_DIR:-}" "$REPO_ROOT/scripts/local-cluster.sh" env)"
  log "Dashboard: http://127.0.0.1:$DASHBOARD_PORT (open it while training runs)"
}

# Stop the cluster start_cluster_nodes started, if it did (for EXIT traps; never fails).
stop_started_cluster() {
  if ((${CLUSTER_STARTED:-0} == 1)); then
    CLUSTER_STARTED=0
    RAY_PORT="$RAY_PORT" CLUSTER_DIR="${CLUSTER_DIR:-}" "$REPO_ROOT/scripts/local-cluster.sh" stop || true
  fi
}

# ---------------------------------------------------------------------------
# Run folders: each benchmark run writes into RESULTS_DIR/<YYYYmmdd-HHMMSS>-<suffix>/, never
# into an earlier run's folder; RESULTS_DIR/latest points at the last run that completed.
# ---------------------------------------------------------------------------

# Create a new run folder under ROOT and print its path; a second run in the same second
# gets -2, -3, ... (mkdir without -p fails on an existing folder, so none is reused).
create_run_dir() {
  local root="$1" suffix="$2" base candidate index=1
  mkdir -p "$root" 2>/dev/null || return 1
  base="$root/$(date +%Y%m%d-%H%M%S)-$suffix"
  candidate="$base"
  until mkdir "$candidate" 2>/dev/null; do
    [[ -d "$root" && -w "$root" ]] || return 1
    index=$((index + 1))
    candidate="$base-$index"
  done
  echo "$candidate"
}

# On exit: a completed run (status 0) moves ROOT/latest to RUN_DIR when UPDATE_LATEST is 1;
# a failed or interrupted one leaves RUN_DIR/FAILED naming the reason, and latest unmoved.
# Reads INTERRUPTED (set by the signal trap) and LAST_ERROR (set by die).
close_run_dir() {
  local status="$1" run_dir="$2" update_latest="$3" root reason
  [[ -n "$run_dir" && -d "$run_dir" ]] || return 0
  root="$(dirname "$run_dir")"
  if ((status == 0)); then
    ((update_latest == 1)) || return 0
    if [[ -e "$root/latest" && ! -L "$root/latest" ]]; then
      warn "$root/latest exists and is not a symlink; left alone. The results are in $run_dir"
      return 0
    fi
    # Relative, so the results folder can be moved or copied whole.
    ln -sfn "$(basename "$run_dir")" "$root/latest"
    log "Run complete: $run_dir ($root/latest points at it)"
    return 0
  fi
  if [[ -n "${INTERRUPTED:-}" ]]; then
    reason="Interrupted by a signal (exit status $status)."
  elif [[ -n "${LAST_ERROR:-}" ]]; then
    reason="$LAST_ERROR"
  else
    reason="Exited with status $status; see the output of the run."
  fi
  printf '%s\n' "$reason" >"$run_dir/FAILED" || true
  warn "This run did not complete: $run_dir is kept with a FAILED file saying why; $root/latest was not moved."
}

# ---------------------------------------------------------------------------
# Kubernetes helpers, shared by setup-minikube.sh, install-ray.sh, cleanup.sh,
# minikube-target.sh and docker/build-and-push.sh.
# ---------------------------------------------------------------------------

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

# Print "NAME=value" for each named setting, so a run log shows what was used.
log_settings() {
  local name
  for name in "$@"; do
    log "  $name=${!name-}"
  done
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
      echo "OOMKilled: a process used more memory than the pod's limit. Give the pod more memory in k8s/ray-cluster.yaml (the arithmetic at its top says what fits; scripts/measure-pod-memory.sh measures it) or lower BATCH_SIZE or TRAIN_SIZE, then run ./scripts/install-ray.sh again."
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

# Print the comment block at the top of the running script: what it does and its Usage.
print_usage() {
  sed -n '2,/^set -o/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
}
