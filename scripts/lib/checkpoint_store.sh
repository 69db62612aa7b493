#!/usr/bin/env bash
# The in-cluster checkpoint store of the Minikube path (k8s/checkpoint-storage.yaml, which
# CHECKPOINTS=1 ./scripts/install-ray.sh installs): check that the pods can use it, and keep
# it from filling up. Source it after common.sh, k8s.sh and pod.sh.

# Run in the head pod: delete all but the newest argv[2] runs under argv[1] (s3://bucket/prefix)
# of the in-cluster store, newest by their latest object. Same endpoint and keys as the runs
# (AWS_ENDPOINT_URL and the AWS_* keys of the pod). Prints KEPT N and REMOVED NAME MB lines.
PRUNE_RUNS_PY='
import os, sys
from pyarrow import fs
location, keep = sys.argv[1], int(sys.argv[2])
options = {}
endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
if endpoint:
    scheme, _, host = endpoint.rpartition("://")
    options.update(endpoint_override=host.rstrip("/"), scheme=scheme or "https",
                   region=os.environ.get("AWS_REGION", "us-east-1"))
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
store = fs.S3FileSystem(access_key=os.environ.get("AWS_ACCESS_KEY_ID"),
                        secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY"), **options)
root = location[len("s3://"):].strip("/")
runs = []
for run in store.get_file_info(fs.FileSelector(root, allow_not_found=True)):
    if run.type == fs.FileType.Directory:
        files = [info for info in store.get_file_info(fs.FileSelector(run.path, recursive=True))
                 if info.type == fs.FileType.File]
        newest = max((info.mtime.timestamp() for info in files if info.mtime), default=0)
        runs.append((newest, run.path, sum(info.size or 0 for info in files)))
runs.sort(reverse=True)
for _, path, size in runs[keep:]:
    store.delete_dir(path)
    print("REMOVED %s %.0f" % (path.rsplit("/", 1)[-1], size / 1e6))
print("KEPT %d" % min(keep, len(runs)))
'

# Fail with what to do unless the head pod can use the in-cluster checkpoint store.
# Checkpoints need storage every pod reaches; the pods get its keys from the Secret that
# CHECKPOINTS=1 ./scripts/install-ray.sh creates (k8s/checkpoint-storage.yaml).
require_k8s_checkpoint_storage() {
  local context="$1" head="$2"
  if ! minikube_exec_head "$context" "$head" printenv AWS_ACCESS_KEY_ID >/dev/null 2>&1; then
    die "Checkpoints on Kubernetes need the in-cluster checkpoint store: the pods share no disk. Install it with 'CHECKPOINTS=1 ./scripts/install-ray.sh' (it restarts the Ray pods so they get its keys), then run this again. Or leave CHECKPOINT and RESUME unset."
  fi
}

# Keep the newest KEEP_RUNS runs in the checkpoint store (k8s/checkpoint-storage.yaml states
# its size budget), so that it never fills its volume and gets evicted with every checkpoint.
# A failure only warns: the run itself can still go ahead.
prune_checkpoint_runs() {
  local context="$1" head="$2" output
  require_positive_int KEEP_RUNS "$KEEP_RUNS"
  if output="$(minikube_exec_head "$context" "$head" python -c "$PRUNE_RUNS_PY" "$K8S_CHECKPOINT_PATH" "$KEEP_RUNS" 2>&1)"; then
    local removed
    removed="$(grep -c '^REMOVED ' <<<"$output" || true)"
    log "Checkpoint store: kept the newest $KEEP_RUNS run(s) of $K8S_CHECKPOINT_PATH (KEEP_RUNS), removed $removed older one(s)."
  else
    warn "Could not remove old runs from the checkpoint store ($output). It holds about 2 GiB; if it fills up its pod is evicted and every checkpoint is lost. Remove old runs by hand or reinstall the store: CHECKPOINTS=1 ./scripts/install-ray.sh"
  fi
}
