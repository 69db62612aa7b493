#!/usr/bin/env bash
# What the KubeRay operator does with install-ray.sh's RayCluster after an apply: its
# generations, its live pods, and whether a changed spec makes it recreate them. Reads
# KUBE_CONTEXT, RAY_NAMESPACE, RAY_CLUSTER_NAME, POLL_INTERVAL, POD_READY_TIMEOUT and
# OPERATOR_NAMESPACE; sets RECREATED. Source it after common.sh and k8s.sh.

# shellcheck disable=SC2034 # set here, read by the script that sources this file

# "GENERATION OBSERVED-GENERATION" of the RayCluster; equal once the operator acted on the spec.
raycluster_generations() {
  kubectl --context "$KUBE_CONTEXT" --namespace "$RAY_NAMESPACE" get raycluster "$RAY_CLUSTER_NAME" \
    --output 'jsonpath={.metadata.generation} {.status.observedGeneration}' 2>/dev/null || true
}

# The names of the Ray pods of the RayCluster that are not being deleted, one a line.
live_ray_pods() {
  kubectl --context "$KUBE_CONTEXT" --namespace "$RAY_NAMESPACE" get pods \
    --selector "ray.io/cluster=$RAY_CLUSTER_NAME" \
    --output 'jsonpath={range .items[*]}{.metadata.name}{" "}{.metadata.deletionTimestamp}{"\n"}{end}' 2>/dev/null |
    awk 'NF == 1 {print $1}' || true
}

# After an apply that changed the RayCluster: wait until the operator has acted on the new
# spec, then say whether it is recreating the pods and wait for the old ones to go. KubeRay
# deletes them in the same reconcile that records observedGeneration (raycluster_controller.go:
# reconcilePods, then calculateStatus); with `upgradeStrategy: Recreate` it does so whenever
# anything but the worker counts changed. Sets RECREATED=1 when it did.
follow_spec_change() {
  local old_head="$1" old_pods="$2" generation="" observed="" deadline=$((SECONDS + 60))
  while true; do
    read -r generation observed <<<"$(raycluster_generations)" || true
    [[ -z "$generation" || "$generation" != "$observed" ]] || break
    if ((SECONDS >= deadline)); then
      warn "KubeRay has not acted on the changed RayCluster within 60s (generation ${generation:-?}, observed ${observed:-none}). Is the operator running? kubectl --context $KUBE_CONTEXT -n $OPERATOR_NAMESPACE logs deployment/kuberay-operator"
      return 0
    fi
    sleep "$POLL_INTERVAL"
  done
  if [[ -n "$old_head" ]] && ! grep -qxF "$old_head" <<<"$(live_ray_pods)"; then
    RECREATED=1
    log "The RayCluster's spec changed, so KubeRay is deleting every Ray pod and creating it anew with the new spec (upgradeStrategy: Recreate in k8s/ray-cluster.yaml). Waiting up to ${POD_READY_TIMEOUT}s for the old pods to go."
    local -a pods=()
    local pod
    while IFS= read -r pod; do [[ -z "$pod" ]] || pods+=("pod/$pod"); done <<<"$old_pods"
    wait_until_deleted kubectl --context "$KUBE_CONTEXT" --namespace "$RAY_NAMESPACE" wait --for=delete "${pods[@]}" \
      --timeout="${POD_READY_TIMEOUT}s" ||
      die "The old Ray pods did not go within ${POD_READY_TIMEOUT}s. See 'kubectl --context $KUBE_CONTEXT -n $RAY_NAMESPACE get pods' (a pod stuck Terminating: 'kubectl delete pod NAME --force')."
  else
    log "The RayCluster changed, but not its pods: the worker count (KubeRay adds or removes worker pods) or only its annotations. No pod restarts."
  fi
}
