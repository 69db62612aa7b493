#!/usr/bin/env bash
# The pods of the rehearsal (scripts/experiments/rehearse-pods.sh): start one in its network
# namespace and cgroups, run a command in it as `kubectl exec` would, list their processes;
# and, for the rehearsal target, which pod runs a Ray node and which pods are cut off.
# Reads REHEARSAL_NAME, REHEARSAL_DIR, SWITCH, MEMORY_CGROUPS and CPU_CGROUPS. Source it after
# common.sh.

# The PIDs of every process in the pods' cgroups, one a line.
pod_pids() {
  cat "$MEMORY_CGROUPS"/*/cgroup.procs 2>/dev/null || true
}

# The private bridge, in a namespace of its own, that every pod's veth joins.
make_switch() {
  ip netns add "$SWITCH"
  ip -n "$SWITCH" link add br0 type bridge
  ip -n "$SWITCH" link set br0 up
}

# One pod: namespace, veth on the bridge, address, cgroups with its limits, then its container.
# RESTART is the pod's restartPolicy. Always: a container that exits is started again in the
# same pod after kubelet's back-off (10 s, doubling, at most 5 min), with `restarts` counting
# as kubectl's RESTARTS does. That is the RayCluster's pods: KubeRay 1.7 sets Never only with
# autoscaler v2 (ray-operator/controllers/ray/common/pod.go), which k8s/ray-cluster.yaml does
# not enable, so Kubernetes' default holds, and KubeRay leaves such a pod to the kubelet
# (shouldDeletePod). Never: the RayJob's submitter (k8s/ray-job.yaml).
# Usage: start_pod NAME ADDRESS CFS_QUOTA_US MEMORY_BYTES SHM_BYTES INDEX Always|Never
start_pod() {
  local name="$1" address="$2" quota="$3" memory="$4" shm="$5" index="$6" restart="$7"
  local namespace="$REHEARSAL_NAME-$name" pod_dir="$REHEARSAL_DIR/pods/$name"
  ip netns add "$namespace"
  ip -n "$namespace" link set lo up
  ip -n "$namespace" link add eth0 type veth peer name "p$index" netns "$SWITCH"
  ip -n "$SWITCH" link set "p$index" master br0 up
  ip -n "$namespace" addr add "$address/24" dev eth0
  ip -n "$namespace" link set eth0 up
  # Ray finds a node's address by asking the routing table for the way to 8.8.8.8 (no packet
  # is sent); the route leads into the private bridge, which forwards nowhere.
  ip -n "$namespace" route add default dev eth0
  mkdir -p "$MEMORY_CGROUPS/$name" "$CPU_CGROUPS/$name" "$pod_dir/tmp"
  echo "$memory" >"$MEMORY_CGROUPS/$name/memory.limit_in_bytes"
  echo 100000 >"$CPU_CGROUPS/$name/cpu.cfs_period_us"
  echo "$quota" >"$CPU_CGROUPS/$name/cpu.cfs_quota_us"
  chmod 1777 "$pod_dir/tmp"
  # The container: joins the cgroups, then the namespaces (with a cgroup namespace, so that
  # Ray reads the pod's own limit from /sys/fs/cgroup/memory as in a container), mounts its
  # /tmp, /dev/shm and cgroup views, and runs KubeRay's command with the container's env.
  bash -c 'echo $$ >"$1/cgroup.procs"; echo $$ >"$2/cgroup.procs"; shift 2; exec "$@"' _ \
    "$MEMORY_CGROUPS/$name" "$CPU_CGROUPS/$name" \
    ip netns exec "$namespace" unshare --uts --mount --cgroup --propagation private \
    bash -c 'set -e; hostname "$1"
      # A repository under /tmp (a CI clone) would vanish under the /tmp of the pod: it is
      # held at POD_DIR/repo first, and mounted back at its own path afterwards.
      case "$4" in /tmp/*) mkdir -p "$2/repo"; mount --bind "$4" "$2/repo" ;; esac
      mount --bind "$2/tmp" /tmp; mount -t tmpfs -o "size=$3" shm /dev/shm
      case "$4" in /tmp/*) mkdir -p "$4"; mount --bind "$2/repo" "$4" ;; esac
      mount -t tmpfs cgroup /sys/fs/cgroup; mkdir /sys/fs/cgroup/memory /sys/fs/cgroup/cpu
      mount -t cgroup -o memory cgroup /sys/fs/cgroup/memory; mount -t cgroup -o cpu cgroup /sys/fs/cgroup/cpu
      echo $$ >"$2/pid"; set -a; source "$2/env"; set +a
      export PATH="$4/.venv/bin:$PATH" PYTHONPATH="$4" HOME=/tmp; cd "$4"
      restarts=0
      while :; do
        status=0; bash "$2/start.sh" || status=$?; echo "$status" >"$2/exit_code"
        [ "$5" = Always ] || exit "$status"
        restarts=$((restarts + 1)); echo "$restarts" >"$2/restarts"
        delay=$((10 << (restarts < 6 ? restarts - 1 : 5))); [ "$delay" -le 300 ] || delay=300
        echo "[rehearsal] The container exited with status $status; restart $restarts in ${delay}s (restartPolicy Always, kubelet'"'"'s back-off)."
        sleep "$delay"
      done' _ "$REHEARSAL_NAME-$name" "$pod_dir" "$shm" "$REPO_ROOT" "$restart" \
    >"$pod_dir/container.log" 2>&1 </dev/null &
}

# Run CMD in pod NAME as `kubectl exec` would. Usage: pod_exec NAME CMD...
pod_exec() {
  local name="$1" pid
  shift
  pid="$(cat "$REHEARSAL_DIR/pods/$name/pid" 2>/dev/null || true)"
  if [[ -z "$pid" ]] || ! kill -0 "$pid" 2>/dev/null; then
    die "Pod $name is not running (no container process). Check: $0 status"
  fi
  bash -c 'echo $$ >"$1/cgroup.procs"; echo $$ >"$2/cgroup.procs"; set -a; source "$3/env"; set +a
    export PATH="$5/.venv/bin:$PATH" PYTHONPATH="$5" HOME=/tmp; pid="$4"; shift 5
    exec nsenter -t "$pid" -n -m -u -C --wd="$PYTHONPATH" -- "$@"' _ \
    "$MEMORY_CGROUPS/$name" "$CPU_CGROUPS/$name" "$REHEARSAL_DIR/pods/$name" "$pid" "$REPO_ROOT" "$@"
}

# The pods whose network was cut (their veth on the bridge is down), one a line.
cut_pods() {
  local pod link
  while read -r pod link; do
    ip -n "$REHEARSAL_NAME-switch" link show "$link" 2>/dev/null | grep -q "state DOWN" && echo "$pod"
  done <"$REHEARSAL_DIR/links"
}

# The pod whose Ray node has ID NODE: the pod whose raylet was started with --node_id=NODE
# (read from /proc, at once: a Ray driver would take seconds, and an epoch may be shorter).
node_pod() {
  local cgroup pid
  for cgroup in "/sys/fs/cgroup/memory/$REHEARSAL_NAME"/*/; do
    while read -r pid; do
      if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "--node_id=$1"; then
        basename "$cgroup"
        return 0
      fi
    done <"$cgroup/cgroup.procs"
  done
  die "No pod of the rehearsal runs Ray node ${1:0:8}."
}
