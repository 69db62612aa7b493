#!/usr/bin/env bash
# Working in the Ray head pod of the Minikube path (scripts/targets/minikube.sh and the
# RayJob of rayjob.sh): find it, run commands in it, stop a run's processes in it, copy a run
# folder out of it, and refuse a recipe bigger than the pods hold. Source it after common.sh
# and k8s.sh (load_k8s_settings first).

# Where the results are written inside the head pod; one folder per run.
POD_RESULTS_ROOT="${POD_RESULTS_ROOT:-/tmp/results}"

# Run in a pod: stop the processes whose command line holds the marker (argv[1]), SIGINT first
# (a Ray driver then stops its workers and records the run as interrupted), SIGKILL what is
# left after 20 s. Python, since the image (Ubuntu) has no pkill. Prints STOPPED or LEFT pids.
STOP_PROCESSES_PY='
import os, signal, sys, time
marker = sys.argv[1].encode()
def matching():
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open("/proc/%s/cmdline" % entry, "rb") as cmdline:
                    if marker in cmdline.read().replace(b"\0", b" "):
                        found.append(int(entry))
            except OSError:
                pass
    return found
for signum, grace in ((signal.SIGINT, 20), (signal.SIGKILL, 5)):
    for pid in matching():
        try:
            os.kill(pid, signum)
        except OSError:
            pass
    deadline = time.time() + grace
    while matching() and time.time() < deadline:
        time.sleep(0.5)
left = matching()
print("LEFT %s" % left if left else "STOPPED")
'

# Check the tools and the kube-context, and find the running head pod: sets KUBE_CONTEXT and
# HEAD_POD, or fails with what to run (the second argument, e.g. ./scripts/install-ray.sh).
connect_to_head() {
  local install="${1:-./scripts/install-ray.sh}"
  require_tool kubectl "https://kubernetes.io/docs/tasks/tools/"
  require_minikube_context
  KUBE_CONTEXT="$(current_kube_context)"
  HEAD_POD="$(ray_head_pod --context "$KUBE_CONTEXT" --request-timeout=10s)"
  if [[ -z "$HEAD_POD" ]]; then
    die "No running Ray head pod (labels ray.io/cluster=$RAY_CLUSTER_NAME, ray.io/node-type=head) in namespace '$RAY_NAMESPACE' of context '$KUBE_CONTEXT'. Run $install, then check 'kubectl get pods -n $RAY_NAMESPACE'."
  fi
  log "Ray head pod: $HEAD_POD (context $KUBE_CONTEXT, namespace $RAY_NAMESPACE)"
}

# Run a command in the head pod's Ray container (with DEMO_ALLOCATOR, when it is set here).
minikube_exec_head() {
  local context="$1" head="$2"
  shift 2
  local -a settings=()
  [[ -z "${DEMO_ALLOCATOR:-}" ]] || settings=(env "DEMO_ALLOCATOR=$DEMO_ALLOCATOR")
  kubectl --context "$context" --namespace "$RAY_NAMESPACE" exec "$head" -c ray-head -- \
    ${settings[@]+"${settings[@]}"} "$@"
}

# Fail before any training when the recipe holds more examples (TRAIN_SIZE + TEST_SIZE) than
# the pods of k8s/ray-cluster.yaml are sized for: its max-examples annotation, with the
# measured arithmetic beside it. Each worker holds the whole data set, so a bigger one would
# be OOM-killed mid-run instead.
require_recipe_fits_pods() {
  local manifest="$REPO_ROOT/k8s/ray-cluster.yaml" max examples=$((TRAIN_SIZE + TEST_SIZE))
  max="$(sed -n 's/^ *ray-parallel-training-demo\/max-examples: *"\{0,1\}\([0-9][0-9]*\)"\{0,1\} *$/\1/p' "$manifest" | head -n 1)"
  [[ -n "$max" ]] || return 0
  if ((examples > max)); then
    die "TRAIN_SIZE + TEST_SIZE = $examples examples, but the pods of k8s/ray-cluster.yaml are sized for at most $max (its max-examples annotation: each worker and the baseline hold the whole data set, about 35 KB per example). CIFAR-10 size (--full, 60000) needs a head of 4608 MiB and workers of 4352 MiB (measured; the arithmetic is at the top of k8s/ray-cluster.yaml): set those and max-examples there, start nodes of 11 GiB (NODE_MEMORY=11264 ./scripts/setup-minikube.sh on a new profile) and run ./scripts/install-ray.sh. Or lower TRAIN_SIZE."
  fi
}

# Stop the processes in POD (container CONTAINER) whose command line holds MARKER.
stop_pod_processes() {
  local context="$1" pod="$2" container="$3" marker="$4" output
  log "Stopping the processes of this run in pod $pod (those with '$marker' in their command line)."
  output="$(kubectl --context "$context" --namespace "$RAY_NAMESPACE" exec "$pod" -c "$container" -- \
    python -c "$STOP_PROCESSES_PY" "$marker" 2>&1)" || true
  if [[ "$output" != *STOPPED* ]]; then
    warn "Could not confirm that they stopped (${output:-no answer from the pod}). Check with: kubectl exec -n $RAY_NAMESPACE $pod -c $container -- ps -ef"
  fi
}

# Copy the folder POD_DIR of a pod into LOCAL_DIR (through tar, as kubectl cp does, but with
# plain tar semantics: the folder's content lands in LOCAL_DIR).
copy_from_pod() {
  local context="$1" pod="$2" container="$3" pod_dir="$4" local_dir="$5"
  mkdir -p "$local_dir"
  kubectl --context "$context" --namespace "$RAY_NAMESPACE" exec "$pod" -c "$container" -- \
    tar -C "$pod_dir" -cf - . | tar -C "$local_dir" -xf - ||
    die "Could not copy $pod_dir from pod '$pod' to $local_dir (output above)."
}

# Copy a run's results from the head pod and check that every file of a run came back.
copy_results_from_head() {
  local context="$1" head="$2" pod_dir="$3" local_dir="$4" file
  shift 4
  copy_from_pod "$context" "$head" ray-head "$pod_dir" "$local_dir"
  for file in "$@"; do
    [[ -f "$local_dir/$file" ]] || die "$file is missing from the results copied from $head:$pod_dir to $local_dir."
  done
  log "Results copied from $head:$pod_dir to $local_dir (JSON, REPORT.md, plots)."
}
