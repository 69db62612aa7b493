"""The retention of the in-cluster checkpoint store (KEEP_RUNS), run against a local S3 server.

scripts/lib/checkpoint_store.sh's PRUNE_RUNS_PY runs in the head pod with pyarrow; here the same code runs
against moto's S3 server (a dev requirement), as the checkpoint store would answer it.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
KEYS = {"AWS_ACCESS_KEY_ID": "ray-demo", "AWS_SECRET_ACCESS_KEY": "ray-demo-checkpoints"}


@pytest.fixture(scope="module")
def store(s3_server):
    """The session's local S3 server (conftest.py); the variables that point pyarrow at it."""
    assert {name: s3_server[name] for name in KEYS} == KEYS
    return {**s3_server, "AWS_EC2_METADATA_DISABLED": "true"}


def prune_code():
    """PRUNE_RUNS_PY, as scripts/lib/checkpoint_store.sh defines it."""
    shown = subprocess.run(["bash", "-c", 'source scripts/lib/common.sh && source scripts/lib/checkpoint_store.sh && '
                                          'printf "%s" "$PRUNE_RUNS_PY"'],
                           cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    return shown.stdout


def test_the_store_keeps_the_newest_runs_by_their_latest_checkpoint_and_deletes_the_rest(store):
    from pyarrow import fs

    s3 = fs.S3FileSystem(access_key=KEYS["AWS_ACCESS_KEY_ID"], secret_key=KEYS["AWS_SECRET_ACCESS_KEY"],
                         endpoint_override=store["AWS_ENDPOINT_URL"][len("http://"):], scheme="http",
                         region="us-east-1", allow_bucket_creation=True)
    s3.create_dir("ray-checkpoints")
    # A folder of its own: the session's S3 server also holds the checkpoint runs of
    # tests/test_fault_tolerance.py in ray-checkpoints/runs, which would count here.
    # Written oldest first, a second apart (S3 dates have whole seconds); "b-newest" is named
    # so that its name sorts before the others: the date, not the name, decides.
    for run in ("z-oldest", "y-middle", "b-newest"):
        with s3.open_output_stream(f"ray-checkpoints/retention/{run}/checkpoint_000001/model.bin") as out:
            out.write(b"x" * 1000)
        time.sleep(1.1)
    result = subprocess.run([sys.executable, "-c", prune_code(), "s3://ray-checkpoints/retention", "2"],
                            env=dict(os.environ, **store), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["REMOVED z-oldest 0", "KEPT 2"]
    left = [info.base_name for info in s3.get_file_info(fs.FileSelector("ray-checkpoints/retention"))]
    assert sorted(left) == ["b-newest", "y-middle"]


def test_a_store_whose_bucket_no_run_has_made_yet_keeps_nothing_without_an_error(store):
    # The first run that checkpoints creates the bucket; the pruning before it finds none.
    result = subprocess.run([sys.executable, "-c", prune_code(), "s3://bucket-made-by-no-run/runs", "5"],
                            env=dict(os.environ, **store), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "KEPT 0\n"
