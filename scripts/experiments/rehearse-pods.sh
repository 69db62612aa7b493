#!/usr/bin/env bash
# A rehearsal of the Minikube pods on this machine, for tests and maintainers (Linux, root),
# not the learner's path: each pod of k8s/ray-cluster.yaml is started as KubeRay 1.7.0 would
# start it, with its own network namespace and address on a private bridge (10.244.77.0/24),
# its own memory cgroup holding the container's memory limit, its own CFS CPU quota holding
# its CPU limit, its own /tmp, hostname and /dev/shm (a tmpfs of the manifest's sizeLimit), and
# the `ray start` command line and environment KubeRay builds (tools/pod_rehearsal.py says
# from which lines of its source). Traffic stays inside the namespaces made here.
#
# Usage: ./scripts/experiments/rehearse-pods.sh start|stop|status|exec POD CMD...|submit JOB_ID FILE|cut-network POD|--help
#   REHEARSAL_WORKERS=2          worker pods (the manifest's replicas is 2, maxReplicas 3)
#   REHEARSAL_NAME=ray-demo-rehearsal  names the namespaces (NAME-head, NAME-worker-1, ...)
#                                and the cgroups (/sys/fs/cgroup/{memory,cpu}/NAME/POD)
#   REHEARSAL_DIR=/var/tmp/ray-demo-rehearsal  each pod's env, start.sh, /tmp and log
#   HEAD_MEMORY=, WORKER_MEMORY=, HEAD_CPU=, WORKER_CPU=  replace the manifest's limits
#                                (Kubernetes quantities: 1Gi, 1500m); empty: the manifest's
#   START_TIMEOUT=120            seconds for every worker pod to join the head (counted again
#                                from a container's restart: RayCluster pods restart as the
#                                kubelet restarts them, restartPolicy Always)
#
# `exec POD CMD...` runs CMD in the pod as `kubectl exec` would: its namespaces, cgroups and
# env, in the repository. `submit JOB_ID FILE` starts the RayJob's submitter pod (the limits of
# k8s/ray-job.yaml), which runs KubeRay's `ray job submit` of the entrypoint in FILE against
# the head's dashboard and follows the job's logs; it exits with the submitter's status. `cut-network POD` takes the pod's veth down, as a cut cable would.
# `stop` kills every process of the pods' cgroups and removes the namespaces and cgroups.
set -o errexit -o nounset -o pipefail

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
# shellcheck source=scripts/lib/rehearsal.sh
source "$SCRIPTS_DIR/lib/rehearsal.sh"

REHEARSAL_WORKERS="${REHEARSAL_WORKERS:-2}"
REHEARSAL_NAME="${REHEARSAL_NAME:-ray-demo-rehearsal}"
REHEARSAL_DIR="${REHEARSAL_DIR:-/var/tmp/ray-demo-rehearsal}"
HEAD_MEMORY="${HEAD_MEMORY:-}" WORKER_MEMORY="${WORKER_MEMORY:-}"
HEAD_CPU="${HEAD_CPU:-}" WORKER_CPU="${WORKER_CPU:-}"
START_TIMEOUT="${START_TIMEOUT:-120}"
MAX_START_RESTARTS=2  # container restarts while starting, before the start gives up
export REHEARSAL_NAME
SWITCH="$REHEARSAL_NAME-switch"
MEMORY_CGROUPS="/sys/fs/cgroup/memory/$REHEARSAL_NAME"
CPU_CGROUPS="/sys/fs/cgroup/cpu/$REHEARSAL_NAME"
VENV_PYTHON="$REPO_ROOT/.venv/bin/python"

# Root, ip, nsenter, unshare and cgroup v1's memory and cpu controllers, or say what is missing.
check_prerequisites() {
  ((EUID == 0)) || die "The rehearsal needs root (network namespaces and cgroups). Run it as root, on Linux."
  local tool
  for tool in ip nsenter unshare; do
    command -v "$tool" >/dev/null 2>&1 || die "The rehearsal needs '$tool' (iproute2, util-linux)."
  done
  [[ -w /sys/fs/cgroup/memory && -w /sys/fs/cgroup/cpu ]] ||
    die "The rehearsal needs cgroup v1's memory and cpu controllers, writable, at /sys/fs/cgroup/{memory,cpu}."
  [[ -x "$VENV_PYTHON" ]] || die "No .venv: run ./scripts/run-benchmark.sh --help once (it creates .venv), then this again."
  [[ "$REHEARSAL_NAME" =~ ^[a-z0-9-]{1,40}$ ]] || die "REHEARSAL_NAME must be 1-40 of a-z, 0-9 and -, got '$REHEARSAL_NAME'."
  # Each pod mounts a folder of REHEARSAL_DIR over its /tmp, then reads its env from there.
  [[ "$REHEARSAL_DIR" == /* && "$REHEARSAL_DIR" != /tmp && "$REHEARSAL_DIR" != /tmp/* ]] ||
    die "REHEARSAL_DIR must be an absolute path outside /tmp (each pod gets a /tmp of its own from it), got '$REHEARSAL_DIR'."
}

# Plan the pods from the manifest, make the network and start every pod; wait for the workers.
start_pods() {
  require_positive_int REHEARSAL_WORKERS "$REHEARSAL_WORKERS"
  require_positive_int START_TIMEOUT "$START_TIMEOUT"
  [[ -z "$(pod_pids)" ]] || die "A rehearsal named $REHEARSAL_NAME is running. Stop it first: $0 stop"
  ip netns list | grep -q "^$REHEARSAL_NAME-" && die "Namespaces of $REHEARSAL_NAME are left from an earlier rehearsal. Remove them: $0 stop"
  mkdir -p "$REHEARSAL_DIR" || die "Cannot create REHEARSAL_DIR '$REHEARSAL_DIR'."
  rm -rf "$REHEARSAL_DIR/pods" "$REHEARSAL_DIR/cgroups.json"
  (umask 077 && od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$REHEARSAL_DIR/auth_token")
  local plan
  plan="$("$VENV_PYTHON" -m tools.pod_rehearsal plan --dir "$REHEARSAL_DIR" --workers "$REHEARSAL_WORKERS" \
    --token-file "$REHEARSAL_DIR/auth_token" --head-memory "$HEAD_MEMORY" --worker-memory "$WORKER_MEMORY" \
    --head-cpu "$HEAD_CPU" --worker-cpu "$WORKER_CPU")" || die "Could not plan the pods from k8s/ray-cluster.yaml (see above)."
  # KubeRay's `ulimit -n 65536` needs a hard limit that high; where this machine's is lower,
  # its own knob (RAY_START_ULIMIT_OPEN_FILES) asks for what the machine allows.
  local hard_limit
  hard_limit="$(ulimit -Hn)"
  if [[ "$hard_limit" != unlimited ]] && ((hard_limit < 65536)); then
    log "This machine's hard limit of open files is $hard_limit, under KubeRay's 65536: RAY_START_ULIMIT_OPEN_FILES=$hard_limit in every pod."
    local env_file
    for env_file in "$REHEARSAL_DIR"/pods/*/env; do
      echo "export RAY_START_ULIMIT_OPEN_FILES=$hard_limit" >>"$env_file"
    done
  fi
  make_switch
  local name address quota memory shm cpus index=0
  WANTED_CPUS=0
  : >"$REHEARSAL_DIR/links"
  while read -r name address quota memory shm cpus; do
    index=$((index + 1))
    echo "$name p$index" >>"$REHEARSAL_DIR/links"
    [[ "$name" == head ]] || WANTED_CPUS=$((WANTED_CPUS + ${cpus%.*}))
    log "Pod $name: $address, CPU limit $((quota / 100))m (CFS quota ${quota} us per 100 ms), memory limit $((memory / 1048576)) MiB, /dev/shm $((shm / 1048576)) MiB"
    start_pod "$name" "$address" "$quota" "$memory" "$shm" "$index" Always
    # KubeRay starts the workers once the head answers; so does this.
    [[ "$name" != head ]] || wait_for_head
  done <<<"$plan"
  wait_for_workers
  log "Pods up: head + $REHEARSAL_WORKERS worker(s). Run in the head pod: $0 exec head python -m ..."
}

# Wait until the head pod's GCS answers on its address.
wait_for_head() {
  local deadline=$((SECONDS + START_TIMEOUT))
  until (pod_exec head python -c 'import socket; socket.create_connection(("127.0.0.1", 6379), 1)') 2>/dev/null; do
    ((SECONDS < deadline)) || die "The head pod's Ray did not answer within ${START_TIMEOUT}s; see $REHEARSAL_DIR/pods/head/container.log"
    sleep 1
  done
}

# Wait until Ray in the head pod sees every worker pod's CPUs. A container whose `ray start`
# exited (on a starved machine Ray's own start-up timeouts can expire) is restarted by its pod,
# as the kubelet would: the wait starts again from its restart, and a pod that keeps failing
# (MAX_START_RESTARTS, kubectl's CrashLoopBackOff) is named with its last line.
wait_for_workers() {
  local deadline=$((SECONDS + START_TIMEOUT)) wanted="$WANTED_CPUS" pod_dir restarts last seen=" "
  while ((SECONDS < deadline)); do
    for pod_dir in "$REHEARSAL_DIR"/pods/*/; do
      restarts="$(cat "$pod_dir/restarts" 2>/dev/null || echo 0)"
      ((restarts == 0)) || [[ "$seen" == *" $pod_dir:$restarts "* ]] && continue
      seen+="$pod_dir:$restarts "
      last="$(grep -v -e '^ *$' -e '^\[rehearsal\]' "$pod_dir/container.log" | tail -n 1 || true)"
      ((restarts <= MAX_START_RESTARTS)) ||
        die "Pod $(basename "$pod_dir")'s container keeps exiting ($restarts restarts): $last (all of it: $pod_dir/container.log)"
      warn "Pod $(basename "$pod_dir")'s container exited and restarts, as the kubelet would (restart $restarts): $last"
      deadline=$((SECONDS + START_TIMEOUT))
    done
    if (pod_exec head ray status) 2>/dev/null | grep -Eq "^ *[0-9.]+/${wanted}\.0 CPU"; then
      return 0
    fi
    sleep 1
  done
  die "Ray did not see the $REHEARSAL_WORKERS worker pod(s) ($wanted CPUs) within ${START_TIMEOUT}s; see $REHEARSAL_DIR/pods/*/container.log"
}

# The RayJob's submitter pod: runs KubeRay's submit command for the entrypoint in FILE with
# submission ID JOB_ID against the head pod, follows the job's logs as `kubectl logs -f` would,
# and exits with the submitter's status. Usage: submit_job JOB_ID FILE
submit_job() {
  local job_id="$1" file="$2" name address quota memory shm cpus index pid
  [[ -n "$job_id" && -f "$file" ]] || die "submit needs a job ID and a file holding the entrypoint, for example: $0 submit my-job entrypoint.txt"
  [[ -n "$(pod_pids)" ]] || die "No rehearsal named $REHEARSAL_NAME is running. Start it first: $0 start"
  read -r name address quota memory shm cpus < <("$VENV_PYTHON" -m tools.pod_rehearsal submitter --dir "$REHEARSAL_DIR" \
    --job-id "$job_id" --entrypoint-file "$file" --token-file "$REHEARSAL_DIR/auth_token") ||
    die "Could not plan the submitter pod from k8s/ray-job.yaml (see above)."
  index=$(($(grep -c '' "$REHEARSAL_DIR/links") + 1))
  echo "$name p$index" >>"$REHEARSAL_DIR/links"
  log "Pod $name (the RayJob's submitter): $address, CPU limit $((quota / 100))m, memory limit $((memory / 1048576)) MiB; job $job_id"
  start_pod "$name" "$address" "$quota" "$memory" "$shm" "$index" Never
  until pid="$(cat "$REHEARSAL_DIR/pods/$name/pid" 2>/dev/null)" && [[ -n "$pid" ]]; do sleep 0.2; done
  tail -n +1 -f --pid="$pid" "$REHEARSAL_DIR/pods/$name/container.log"
  return "$(cat "$REHEARSAL_DIR/pods/$name/exit_code" 2>/dev/null || echo 1)"
}

# Take pod NAME's network down, as a cut cable would: its veth on the bridge side.
cut_network() {
  local name="$1" link
  link="$(awk -v name="$name" '$1 == name {print $2}' "$REHEARSAL_DIR/links" 2>/dev/null)"
  [[ -n "$link" && -d "$MEMORY_CGROUPS/$name" ]] || die "No pod named '$name' runs in this rehearsal. Check: $0 status"
  ip -n "$SWITCH" link set "$link" down
  log "Pod $name: network cut (its veth $link is down on the bridge)."
}

# Kill every process of the pods, then remove their cgroups and namespaces (never fails).
stop_pods() {
  local pids round
  for round in TERM KILL KILL KILL; do
    pids="$(pod_pids | tr '\n' ' ')"
    [[ -n "${pids// /}" ]] || break
    # shellcheck disable=SC2086 # word splitting of the PID list is intended
    kill "-$round" $pids 2>/dev/null || true
    sleep 2
  done
  local cgroup namespace
  for cgroup in "$MEMORY_CGROUPS"/*/ "$CPU_CGROUPS"/*/; do
    [[ -d "$cgroup" ]] && rmdir "$cgroup" 2>/dev/null || true
  done
  rmdir "$MEMORY_CGROUPS" "$CPU_CGROUPS" 2>/dev/null || true
  while read -r namespace _; do
    [[ "$namespace" == "$REHEARSAL_NAME-"* ]] && ip netns delete "$namespace" 2>/dev/null || true
  done < <(ip netns list 2>/dev/null)
  log "Rehearsal $REHEARSAL_NAME stopped: no pod process, cgroup or namespace is left; logs stay in $REHEARSAL_DIR/pods."
}

# Each pod's address, limits and memory now, and Ray's view from the head.
show_status() {
  [[ -n "$(pod_pids)" ]] || {
    log "No rehearsal named $REHEARSAL_NAME is running."
    return 1
  }
  "$VENV_PYTHON" -m tools.pod_rehearsal snapshot --dir "$REHEARSAL_DIR" --phase status >/dev/null &&
    "$VENV_PYTHON" -m tools.pod_rehearsal report --dir "$REHEARSAL_DIR" || true
  pod_exec head ray status
}

main() {
  local command="${1:-}"
  case "$command" in
    -h | --help | help)
      print_usage
      return 0
      ;;
    start | stop | status | exec | submit | cut-network) check_prerequisites ;;
    *)
      print_usage >&2
      die "Unknown command '$command'. Use start, stop, status, exec POD CMD..., submit JOB_ID FILE or cut-network POD."
      ;;
  esac
  case "$command" in
    start) start_pods ;;
    stop) stop_pods ;;
    status) show_status ;;
    exec)
      [[ $# -ge 3 ]] || die "exec needs a pod and a command, for example: $0 exec head ray status"
      shift
      pod_exec "$@"
      ;;
    cut-network) cut_network "${2:-}" ;;
    submit) submit_job "${2:-}" "${3:-}" ;;
  esac
}

main "$@"
