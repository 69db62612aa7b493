#!/usr/bin/env bash
# Build the training image and load it into the minikube profile, skipping either step
# when it is already current. "Current" means the content hash of docker/Dockerfile,
# requirements.txt and training/ matches the label on the local image, and minikube
# already holds the tag that carries that hash.
#
# Usage: [MINIKUBE_PROFILE=minikube] [IMAGE=ray-training-demo:ray2.60.0-py311]
#        [FORCE_BUILD=0] [LOADED_MARKER=] docker/build-and-push.sh [--help]
#   FORCE_BUILD=1    rebuild and reload even when the hashes match.
#   LOADED_MARKER    optional file; the hash is written there when the image was loaded
#                    (install-ray.sh uses it to restart pods running an older image).
set -o errexit -o nounset -o pipefail

# shellcheck source-path=SCRIPTDIR source=../scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

load_k8s_settings
FORCE_BUILD="${FORCE_BUILD:-0}"
LOADED_MARKER="${LOADED_MARKER:-}"
readonly HASH_LABEL="ray-training-demo.content-hash"

STAGING_DIR=""

# Remove the staging folder however the script ends.
cleanup() {
  if [[ -n "$STAGING_DIR" && -d "$STAGING_DIR" ]]; then
    rm -rf "$STAGING_DIR"
  fi
}

# Fail early when a tool is missing or Docker is down.
check_prerequisites() {
  require_tool docker "https://docs.docker.com/get-docker/"
  require_tool minikube "https://minikube.sigs.k8s.io/docs/start/"
  require_docker_running
  [[ -d "$REPO_ROOT/training" ]] || die "$REPO_ROOT/training is missing; the image needs the training code."
  [[ -f "$REPO_ROOT/requirements.txt" ]] || die "$REPO_ROOT/requirements.txt is missing."
}

# Copy exactly what the image is built from into a fresh folder (no .venv, no caches).
stage_build_context() {
  STAGING_DIR="$(mktemp -d "${TMPDIR:-/tmp}/ray-image.XXXXXX")"
  cp "$REPO_ROOT/docker/Dockerfile" "$REPO_ROOT/requirements.txt" "$STAGING_DIR/"
  local file
  while IFS= read -r file; do
    mkdir -p "$STAGING_DIR/$(dirname "$file")"
    cp "$REPO_ROOT/$file" "$STAGING_DIR/$file"
  done < <(cd "$REPO_ROOT" && find training -type d -name __pycache__ -prune -o -type f ! -name '*.pyc' -print)
}

# sha256 over the staged files' names and contents, in a fixed order.
content_hash() {
  (
    cd "$STAGING_DIR"
    find . -type f -print | LC_ALL=C sort | while IFS= read -r file; do
      printf '%s\n' "$file"
      cat "$file"
    done
  ) | sha256sum_portable
}

# The hash label of the local image, or nothing when there is no such image.
local_image_hash() {
  docker image inspect --format "{{ index .Config.Labels \"$HASH_LABEL\" }}" "$IMAGE" 2>/dev/null || true
}

# True when minikube lists the given name:tag. `minikube image ls` prints short names
# fully qualified (docker.io/library/NAME:TAG), so compare both spellings.
minikube_has_image() {
  local wanted="$1" listed
  listed="$(minikube -p "$MINIKUBE_PROFILE" image ls 2>/dev/null || true)"
  grep -qxF -e "$wanted" -e "docker.io/library/$wanted" <<<"$listed"
}

# Build the image with the hash as a label and as a second tag.
build_image() {
  local hash="$1" hash_tag="$2"
  log "Building $IMAGE (content hash ${hash:0:12}); the first build downloads about 2 GB and takes 5-10 minutes."
  docker build --label "$HASH_LABEL=$hash" --tag "$IMAGE" --tag "$hash_tag" \
    --file "$STAGING_DIR/Dockerfile" "$STAGING_DIR" ||
    die "docker build failed (output above). Check your network and free disk space ('docker system df'), then run this script again."
}

# Load both tags into every node of the profile.
load_image() {
  local hash="$1" hash_tag="$2"
  log "Loading $IMAGE into minikube profile '$MINIKUBE_PROFILE' (1-3 minutes)."
  minikube -p "$MINIKUBE_PROFILE" image load "$IMAGE" "$hash_tag" ||
    die "'minikube image load' failed. Is the profile running ('minikube -p $MINIKUBE_PROFILE status')? Then run this script again."
  if [[ -n "$LOADED_MARKER" ]]; then
    printf '%s\n' "$hash" >"$LOADED_MARKER"
  fi
}

main() {
  if [[ "${1:-}" == "--help" || "${1:-}" == "-h" ]]; then
    print_usage
    return 0
  fi
  log "Settings:"
  log_settings MINIKUBE_PROFILE IMAGE FORCE_BUILD
  check_prerequisites
  trap cleanup EXIT
  stage_build_context

  local hash hash_tag
  hash="$(content_hash)"
  # A tag that names the content: if minikube lists it, minikube has this exact build.
  hash_tag="${IMAGE%%:*}:src-${hash:0:12}"

  if [[ "$FORCE_BUILD" != "1" && "$(local_image_hash)" == "$hash" ]]; then
    log "Image $IMAGE is current (content hash ${hash:0:12}); not rebuilding."
  else
    build_image "$hash" "$hash_tag"
  fi

  if [[ "$FORCE_BUILD" != "1" ]] && minikube_has_image "$hash_tag"; then
    log "minikube profile '$MINIKUBE_PROFILE' already has $hash_tag; not loading again."
  else
    load_image "$hash" "$hash_tag"
  fi
  log "Image ready: $IMAGE"
}

main "$@"
