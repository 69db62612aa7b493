"""Checkpoint storage in S3, as on Kubernetes, against a real S3-compatible server.

On Kubernetes the Ray pods share no disk, so runs keep their checkpoints in the
in-cluster S3 store of k8s/checkpoint-storage.yaml (MinIO). MinIO's image cannot run
here; moto's S3 server (a local S3-compatible HTTP server, pip-installed) stands in for
it. The same code path runs: pyarrow's S3 filesystem and the driver's status files (a real
Ray run that checkpoints into S3 and resumes from there is in test_fault_tolerance.py).
A run without checkpoints keeps nothing: its state lives in a temporary folder, removed at its end.
"""

import os
import time

import pytest

from harness import run_state, storage

@pytest.fixture
def s3_env(s3_server, monkeypatch):
    for name, value in s3_server.items():
        monkeypatch.setenv(name, value)
    return s3_server


def test_json_files_round_trip_through_s3_and_folders_are_listed(s3_env):
    location = "s3://unit-bucket/runs"
    storage.prepare(location)  # creates the bucket
    storage.write_json(storage.join(location, "run-a", "run_status.json"), {"status": "running"})
    storage.write_json(storage.join(location, "run-b", "progress.json"), {"epoch": 2})
    assert storage.read_json("s3://unit-bucket/runs/run-a/run_status.json") == {"status": "running"}
    assert sorted(storage.list_folders(location)) == ["run-a", "run-b"]
    assert storage.exists("s3://unit-bucket/runs/run-b/progress.json")
    assert not storage.exists("s3://unit-bucket/runs/run-b/missing.json")
    assert storage.read_json("s3://unit-bucket/runs/missing.json") is None
    assert storage.list_folders("s3://unit-bucket/nothing-here") == []


def test_plan_run_finds_the_latest_unfinished_run_in_s3(s3_env):
    location = "s3://plan-bucket/runs"
    storage.prepare(location)
    for name, status, updated in (("old", "interrupted", 1), ("done", "completed", 3), ("new", "failed", 2)):
        storage.write_json(storage.join(location, name, run_state.STATUS_FILE),
                           {"status": status, "updated": updated, "settings": {"batch_size": 64}})
    name, run_dir, resuming = run_state.plan_run(location, None, True, {"batch_size": 64})
    assert (name, run_dir, resuming) == ("new", "s3://plan-bucket/runs/new", True)
    with pytest.raises(ValueError, match="A run named 'done' already exists in s3://plan-bucket/runs"):
        run_state.plan_run(location, "done", False, {})


def test_an_unreachable_store_fails_at_once_with_what_to_check(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens on port 9
    for name, value in {"AWS_ACCESS_KEY_ID": "ray-demo", "AWS_SECRET_ACCESS_KEY": "ray-demo"}.items():
        monkeypatch.setenv(name, value)
    started = time.time()
    with pytest.raises(ValueError) as error:
        storage.prepare("s3://any-bucket/runs")
    assert time.time() - started < 30
    message = str(error.value)
    assert "Cannot write checkpoints to s3://any-bucket/runs at http://127.0.0.1:9" in message
    assert "AWS_ENDPOINT_URL" in message and "CHECKPOINTS=1 ./scripts/install-ray.sh" in message


@pytest.mark.parametrize("location", ["s3://", "s3://bucket?endpoint_override=x:9000"])
def test_a_malformed_s3_location_is_refused_with_the_expected_form(location):
    with pytest.raises(ValueError, match="is not of the form s3://bucket/prefix"):
        storage.normalize(location)


def test_a_local_location_is_made_absolute_and_s3_kept():
    assert storage.normalize("checkpoints") == os.path.abspath("checkpoints")
    assert storage.normalize("s3://bucket/runs/") == "s3://bucket/runs"
    assert storage.join("s3://bucket/runs", "x", "y.json") == "s3://bucket/runs/x/y.json"


# ------------------------------------------------ a run without checkpoints keeps nothing

def _ray_run(tmp_path, checkpoint):
    from lesson import data, recipe as recipes

    recipe = recipes.Recipe()
    plan = data.shard_plan(recipe.train_size, recipe.batch_size, recipe.num_workers)
    return run_state.RayRun(recipe, plan, str(tmp_path / "results"), "local",
                            storage_path=str(tmp_path / "checkpoints"), checkpoint=checkpoint)


class FailingTrainer:
    """A trainer whose fit() notes where the run's status file is, then fails."""

    def __init__(self, run):
        self.run, self.status_file = run, None

    def fit(self):
        self.status_file = os.path.join(self.run.dir, run_state.STATUS_FILE)
        assert storage.read_json(self.status_file)["status"] == "running"
        raise RuntimeError("the workers failed")


def test_a_run_without_checkpoints_keeps_ray_trains_state_in_a_temporary_folder_removed_when_it_ends(tmp_path):
    run = _ray_run(tmp_path, checkpoint=False)
    # CHECKPOINT_DIR is not where this run lives, and is not even created.
    assert not (tmp_path / "checkpoints").exists()
    temporary = run.storage_path
    assert os.path.basename(temporary).startswith("ray-demo-run-") and os.path.isdir(temporary)
    assert run.ray_storage() == {"storage_path": temporary} and run.dir.startswith(temporary + os.sep)
    trainer = FailingTrainer(run)
    with pytest.raises(RuntimeError, match="the workers failed"):
        run.fit(ray=None, trainer=trainer)
    assert trainer.status_file.startswith(temporary) and not os.path.exists(temporary)
    run.remove_temporary_storage()  # again, at exit: nothing left to do, no error


def test_a_run_with_checkpoints_keeps_its_folder_in_the_checkpoint_dir(tmp_path):
    run = _ray_run(tmp_path, checkpoint=True)
    assert run.storage_path == str(tmp_path / "checkpoints") and run.temporary_storage is None
    with pytest.raises(RuntimeError):
        run.fit(ray=None, trainer=FailingTrainer(run))
    status = storage.read_json(os.path.join(run.dir, run_state.STATUS_FILE))
    assert status["status"] == "failed" and "the workers failed" in status["error"]
