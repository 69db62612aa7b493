#!/usr/bin/env bash
# Shared helpers for the scripts in this folder. Source it, do not run it:
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# It defines logging, error and validation helpers and the .venv bootstrap.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export REPO_ROOT

# Print a progress line on stdout, prefixed with the script's name.
log() {
  printf '[%s] %s\n' "$(basename "$0")" "$*"
}

# Print a warning on stderr.
warn() {
  printf '[%s] WARNING: %s\n' "$(basename "$0")" "$*" >&2
}

# Print an error on stderr and exit non-zero. Say what failed and what to do next.
die() {
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
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]]; then
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
  export MINIKUBE_PROFILE RAY_NAMESPACE RAY_CLUSTER_NAME OPERATOR_NAMESPACE IMAGE
}

# Print "NAME=value" for each named setting, so a run log shows what was used.
log_settings() {
  local name
  for name in "$@"; do
    log "  $name=${!name-}"
  done
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

# Name of the running Ray head pod of RAY_CLUSTER_NAME, or nothing. Extra args go to kubectl.
ray_head_pod() {
  kubectl "$@" get pods --namespace "$RAY_NAMESPACE" \
    --selector "ray.io/cluster=$RAY_CLUSTER_NAME,ray.io/node-type=head" \
    --field-selector status.phase=Running \
    --output 'jsonpath={.items[0].metadata.name}' 2>/dev/null || true
}

# Print the comment block at the top of the running script: what it does and its Usage.
print_usage() {
  sed -n '2,/^set -o/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
}
