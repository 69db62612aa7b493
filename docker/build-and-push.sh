#!/usr/bin/env bash
# Build the training image for this machine's architecture and load it into every node of
# the minikube profile, skipping either step when it is already current. "Current" means the
# content hash of docker/Dockerfile, requirements.txt, the code's folders and the base image matches
# the label on the image: on the local image for the build, and on EACH node for the load
# (checked with `minikube ssh -n NODE -- docker image inspect`, since `minikube image ls`
# lists the union of all nodes). The load goes through a tar file (`docker save`, then
# `minikube image load FILE`): given the image's name instead, minikube reads the whole image
# from Docker into its own memory first (kubernetes/minikube#17983).
#
# Usage: [MINIKUBE_PROFILE=minikube] [IMAGE=ray-training-demo:ray2.60.0-py311]
#        [FORCE_BUILD=0] [LOADED_MARKER=] [IMAGE_TAR_DIR=${TMPDIR:-/tmp}]
#        docker/build-and-push.sh [--help]
#   The base image follows Docker's architecture: rayproject/ray:2.60.0-py311-cpu on amd64,
#   rayproject/ray:2.60.0-py311-cpu-aarch64 on arm64 (Apple Silicon); others are refused.
#   FORCE_BUILD=1    rebuild and reload even when the hashes match.
#   LOADED_MARKER    optional file; the hash is written there when the image was loaded
#                    (install-ray.sh uses it to restart pods running an older image).
#   IMAGE_TAR_DIR    where the image's tar file is saved for the load: it needs about the
#                    image's size (some 5 GB) free, and is removed when the script ends. Set
#                    it to a folder on disk where /tmp is kept in memory (tmpfs).
set -o errexit -o nounset -o pipefail

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib/common.sh"
# shellcheck source=scripts/lib/k8s.sh
source "$SCRIPTS_DIR/lib/k8s.sh"

load_k8s_settings
FORCE_BUILD="${FORCE_BUILD:-0}"
LOADED_MARKER="${LOADED_MARKER:-}"
IMAGE_TAR_DIR="${IMAGE_TAR_DIR:-${TMPDIR:-/tmp}}"
readonly HASH_LABEL="ray-training-demo.content-hash"

STAGING_DIR=""
TAR_DIR=""
IMAGE_TAR=""
BASE_IMAGE=""

# Remove the staging folder and the image's tar file however the script ends.
cleanup() {
  local folder
  for folder in "$STAGING_DIR" "$TAR_DIR"; do
    if [[ -n "$folder" && -d "$folder" ]]; then
      rm -rf "$folder"
    fi
  done
}

# Fail early when a tool is missing or Docker is down.
check_prerequisites() {
  require_tool docker "https://docs.docker.com/get-docker/"
  require_tool minikube "https://minikube.sigs.k8s.io/docs/start/"
  require_docker_running
  local folder
  for folder in "${CODE_DIRS[@]}"; do
    [[ -d "$REPO_ROOT/$folder" ]] || die "$REPO_ROOT/$folder is missing; the image needs the demo's code."
  done
  [[ -f "$REPO_ROOT/requirements.txt" ]] || die "$REPO_ROOT/requirements.txt is missing."
}

# The base image for Docker's architecture: the Dockerfile's default (amd64), with Ray's
# -aarch64 suffix on arm64. `docker version` reports the daemon's Go architecture (amd64,
# arm64), which is what the nodes run; `docker info` would give uname's (x86_64, aarch64).
choose_base_image() {
  local arch
  arch="$(docker version --format '{{.Server.Arch}}' 2>/dev/null || true)"
  BASE_IMAGE="$(ray_base_image "$arch")" ||
    die "Docker runs on architecture '${arch:-unknown}' ('docker version' said so); Ray publishes images for amd64 and arm64 only. Use a machine of one of those."
  log "Docker's architecture is $arch: base image $BASE_IMAGE"
}

# Copy exactly what the image is built from into a fresh folder (no .venv, no caches).
stage_build_context() {
  STAGING_DIR="$(mktemp -d "${TMPDIR:-/tmp}/ray-image.XXXXXX")"
  cp "$REPO_ROOT/docker/Dockerfile" "$REPO_ROOT/requirements.txt" "$STAGING_DIR/"
  local file
  while IFS= read -r file; do
    mkdir -p "$STAGING_DIR/$(dirname "$file")"
    cp "$REPO_ROOT/$file" "$STAGING_DIR/$file"
  done < <(cd "$REPO_ROOT" && find "${CODE_DIRS[@]}" -type d -name __pycache__ -prune -o -type f ! -name '*.pyc' -print)
}

# sha256 over the base image's name and the staged files' names and contents, in a fixed order.
content_hash() {
  (
    printf 'base %s\n' "$BASE_IMAGE"
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

# The nodes of the profile, one name a line (`minikube node list` prints "NAME<TAB>IP").
profile_nodes() {
  minikube -p "$MINIKUBE_PROFILE" node list 2>/dev/null | cut -f1 | grep . || true
}

# The hash label of the image on one node, or what docker printed instead. `minikube ssh`
# joins its arguments into one remote shell command, so the format is quoted for that
# shell; it always allocates a terminal, hence the carriage returns to strip.
node_image_hash() {
  local node="$1"
  minikube -p "$MINIKUBE_PROFILE" ssh -n "$node" -- \
    "docker image inspect --format '{{index .Config.Labels \"$HASH_LABEL\"}}' $IMAGE" </dev/null 2>&1 |
    tr -d '\r' | tail -n 1 || true
}

# Build the image with the hash as a label.
build_image() {
  local hash="$1"
  log "Building $IMAGE FROM $BASE_IMAGE (content hash ${hash:0:12}); the first build downloads about 2 GB and takes 5-10 minutes."
  docker build --build-arg "RAY_BASE_IMAGE=$BASE_IMAGE" --label "$HASH_LABEL=$hash" --tag "$IMAGE" \
    --file "$STAGING_DIR/Dockerfile" "$STAGING_DIR" ||
    die "docker build failed (output above). Check your network and free disk space ('docker system df'), then run this script again."
}

# Save the image to IMAGE_TAR, a tar file in a fresh folder of IMAGE_TAR_DIR. Its name is
# fixed because minikube copies it to /var/lib/minikube/images/ on each node under the same
# name and leaves it there: each load then replaces the last one's copy.
save_image() {
  TAR_DIR="$(mktemp -d "$IMAGE_TAR_DIR/ray-image-tar.XXXXXX")" ||
    die "Could not create a folder in IMAGE_TAR_DIR=$IMAGE_TAR_DIR for the image's tar file. Set IMAGE_TAR_DIR to a folder you can write, then run this script again."
  TAR_DIR="$(cd "$TAR_DIR" && pwd)"
  IMAGE_TAR="$TAR_DIR/ray-training-demo-image.tar"
  log "Saving $IMAGE to $IMAGE_TAR (about the image's size on disk, some 5 GB; removed when this script ends)."
  docker save --output "$IMAGE_TAR" "$IMAGE" ||
    die "'docker save' failed (output above). The tar file needs about the image's size free on disk in $IMAGE_TAR_DIR ('docker image ls $IMAGE' shows the size, 'df -h $IMAGE_TAR_DIR' the free space): free space there or set IMAGE_TAR_DIR to a folder with more, then run this script again."
}

# Load the image's tar file into every node of the profile, after untagging an older build
# on the nodes that have one. For a file, minikube copies it to each node and runs
# `docker load` there (DoLoadImages, LoadLocalImages and transferAndLoadImage in
# pkg/minikube/machine/cache_images.go); `docker load` moves the tag by itself but leaves
# the older build on the node's disk, untagged. Forced, `docker image rm` deletes an older
# build no container uses and only untags one that a Ray container still runs; the running
# pods keep it until they restart.
load_image() {
  local hash="$1" node
  shift
  for node in "$@"; do
    log "Untagging the older build of $IMAGE on node $node so the new one can take its name."
    minikube -p "$MINIKUBE_PROFILE" ssh -n "$node" -- "docker image rm --force $IMAGE" </dev/null >/dev/null 2>&1 || true
  done
  log "Loading $IMAGE into minikube profile '$MINIKUBE_PROFILE' from $IMAGE_TAR (1-3 minutes per node)."
  minikube -p "$MINIKUBE_PROFILE" image load "$IMAGE_TAR" ||
    die "'minikube image load' failed. Is the profile running ('minikube -p $MINIKUBE_PROFILE status')? Then run this script again."
  if [[ -n "$LOADED_MARKER" ]]; then
    printf '%s\n' "$hash" >"$LOADED_MARKER"
  fi
}

# Print "NODE HASH" for every node of the profile: the content-hash label of its IMAGE, or
# "-" when it has none.
node_hashes() {
  local node found
  while IFS= read -r node; do
    [[ -n "$node" ]] || continue
    found="$(node_image_hash "$node")"
    [[ "$found" =~ ^[0-9a-f]{64}$ ]] || found="-"
    printf '%s %s\n' "$node" "$found"
  done <<<"$NODES"
}

# The nodes of a node_hashes listing that need the build HASH: all (without it) or older
# (with another build of IMAGE, which must be untagged first).
nodes_needing() {
  local listing="$1" hash="$2" which="$3"
  awk -v hash="$hash" -v which="$which" -v force="$FORCE_BUILD" '
    ($2 != hash || force == "1") && (which == "all" || $2 != "-") { print $1 }' <<<"$listing"
}

main() {
  parse_common_flags "$@"
  log "Settings:"
  log_settings MINIKUBE_PROFILE IMAGE FORCE_BUILD IMAGE_TAR_DIR
  check_prerequisites
  choose_base_image
  trap cleanup EXIT
  stage_build_context

  local hash
  hash="$(content_hash)"
  if [[ "$FORCE_BUILD" != "1" && "$(local_image_hash)" == "$hash" ]]; then
    log "Image $IMAGE is current (content hash ${hash:0:12}); not rebuilding."
  else
    build_image "$hash"
  fi

  NODES="$(profile_nodes)"
  [[ -n "$NODES" ]] ||
    die "minikube profile '$MINIKUBE_PROFILE' has no nodes ('minikube -p $MINIKUBE_PROFILE node list' printed none). Run ./scripts/setup-minikube.sh first."
  local listing node
  local -a missing=() older=()
  listing="$(node_hashes)"
  while IFS= read -r node; do [[ -z "$node" ]] || missing+=("$node"); done < <(nodes_needing "$listing" "$hash" all)
  if ((${#missing[@]} == 0)); then
    log "Every node of profile '$MINIKUBE_PROFILE' ($(cut -d' ' -f1 <<<"$listing" | paste -sd' ' -)) has $IMAGE with content hash ${hash:0:12}; not loading again."
  else
    log "Node(s) to load $IMAGE (content hash ${hash:0:12}) into: ${missing[*]}"
    while IFS= read -r node; do [[ -z "$node" ]] || older+=("$node"); done < <(nodes_needing "$listing" "$hash" older)
    save_image
    load_image "$hash" ${older[@]+"${older[@]}"}
    missing=()
    FORCE_BUILD=0
    while IFS= read -r node; do [[ -z "$node" ]] || missing+=("$node"); done < <(nodes_needing "$(node_hashes)" "$hash" all)
    if ((${#missing[@]} > 0)); then
      die "After 'minikube image load', node(s) ${missing[*]} still lack $IMAGE with content hash ${hash:0:12} ('minikube image load' reports success even when a node fails). Check that every node runs ('minikube -p $MINIKUBE_PROFILE status') and has free disk ('minikube -p $MINIKUBE_PROFILE ssh -n ${missing[0]} -- df -h /var'), then run docker/build-and-push.sh again: it loads the image again on every node that lacks it."
    fi
    log "Every node now has $IMAGE with content hash ${hash:0:12}."
  fi
  log "Image ready: $IMAGE (base $BASE_IMAGE)"
}

main "$@"
