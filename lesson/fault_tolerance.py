"""Fault tolerance on the worker: a checkpoint every epoch, and the restore after a restart.

With checkpoints on (--checkpoint, CHECKPOINT=1), at the end of every epoch rank 0 writes
the model weights, the optimizer state and the epoch number to a temporary folder, and every
worker calls `ray.train.report(..., checkpoint=...)` (rank 0 with the checkpoint, the others
with None: one copy is enough, the weights are identical). Ray Train copies the folder into
`storage_path/run_name/`, which every node must reach (a shared folder, or S3).

When a worker dies, Ray Train restarts the whole worker group (up to
`FailureConfig(max_failures)` times) and `ray.train.get_checkpoint()` hands the new group
the latest checkpoint, which is loaded here before fit() starts; fit() then continues at
the next epoch. Starting a trainer again with the same `RunConfig(storage_path, name)`
resumes an interrupted run the same way (Ray Train V2 has no `Trainer.restore`).
docs/FAULT_TOLERANCE.md tells the whole story; run_state.py is the driver's side.

In the lesson file this is one object:
    checkpoints = fault_tolerance.epoch_checkpoints(strategy, model, recipe, config["checkpoints"], instruments)
    model.fit(..., initial_epoch=checkpoints.initial_epoch, callbacks=[*instruments.callbacks, checkpoints])
"""

import json
import os
import tempfile
import time

from lesson.workarounds import log

# Two checkpoints on disk: the latest, and the one before it in case the latest is torn.
CHECKPOINTS_TO_KEEP = 2
WEIGHTS_FILE = "model_weights.npz"
OPTIMIZER_FILE = "optimizer_weights.npz"
STATE_FILE = "train_state.json"


def epoch_checkpoints(strategy, model, recipe, settings, keep_with_checkpoint=None):
    """A Keras callback that checkpoints every epoch (when asked to) and, built after a
    restart, has already loaded the latest checkpoint: `initial_epoch` is where fit() goes on.

    `settings`: what the driver decided ({"checkpoint": on or off, "run_token": this run's
    token}). `keep_with_checkpoint`: anything with state() and restore(state, same_run) (the
    harness' epoch records) saved with each checkpoint and put back on restore; put its
    callbacks before this one, so that the epoch saved is already recorded.
    """
    import numpy as np
    import ray
    import ray.train
    import tensorflow as tf  # already imported, with the workarounds, by workarounds.import_tensorflow

    rank = ray.train.get_context().get_world_rank()
    enabled, run_token = settings["checkpoint"], settings["run_token"]

    class EpochCheckpoints(tf.keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.initial_epoch = self._restore_latest()

        def _restore_latest(self):
            checkpoint = ray.train.get_checkpoint()
            if checkpoint is None:
                return 0
            with checkpoint.as_directory() as folder:
                with open(os.path.join(folder, STATE_FILE), encoding="utf-8") as source:
                    state = json.load(source)
                weights = _load_arrays(np, os.path.join(folder, WEIGHTS_FILE))
                optimizer_weights = _load_arrays(np, os.path.join(folder, OPTIMIZER_FILE))
            # Adam's slots do not exist before the first step: create them (mirrored, inside
            # the scope) so that its moments and step count are restored, not just the weights.
            with strategy.scope():
                model.optimizer.build(model.trainable_variables)
            model.set_weights(weights)
            model.optimizer.set_weights(optimizer_weights)
            if keep_with_checkpoint is not None:
                keep_with_checkpoint.restore(state["recorder"], same_run=state.get("run_token") == run_token)
            # A new process replays the seeds of epoch 1: the same shuffle order and dropout
            # masks as the batches the restored weights just learned, on which the loss then
            # collapses to ~0. Seed the resumed epochs differently (fit builds the data later).
            tf.keras.utils.set_random_seed(recipe.seed + state["epoch"])
            log(f"ray worker {rank}: restored the epoch {state['epoch']} checkpoint "
                f"(weights and optimizer state), resuming at epoch {state['epoch'] + 1}")
            return state["epoch"]

        def on_epoch_end(self, epoch, logs=None):
            if not enabled:
                return
            # Every worker reads the weights: the batch-norm statistics are averaged across
            # workers by a collective, which waits for all of them.
            weights = self.model.get_weights()
            optimizer_weights = [variable.numpy() for variable in self.model.optimizer.variables()]
            with tempfile.TemporaryDirectory(prefix="ray-demo-checkpoint-") as folder:
                checkpoint = None
                if rank == 0:
                    np.savez(os.path.join(folder, WEIGHTS_FILE), *weights)
                    np.savez(os.path.join(folder, OPTIMIZER_FILE), *optimizer_weights)
                    kept = keep_with_checkpoint.state() if keep_with_checkpoint is not None else {}
                    state = {"epoch": epoch + 1, "recorder": kept, "run_token": run_token, "saved": time.time()}
                    with open(os.path.join(folder, STATE_FILE), "w", encoding="utf-8") as out:
                        json.dump(state, out)
                    checkpoint = ray.train.Checkpoint.from_directory(folder)
                # Every worker reports, the same number of times: report is a barrier.
                ray.train.report({"epoch": epoch + 1}, checkpoint=checkpoint,
                                 checkpoint_dir_name=f"epoch-{epoch + 1:04d}")

    return EpochCheckpoints()


def add_arguments(parser):
    """The Ray run's checkpoint flags (MAX_FAILURES, the restarts, is part of the recipe)."""
    parser.add_argument("--storage-path", default=None,
                        help="with --checkpoint or --resume: where Ray Train keeps the run and its checkpoints; "
                             "every node must reach it: a folder, or s3://bucket/prefix with AWS_ENDPOINT_URL and "
                             "the AWS keys set (default: checkpoints/ in the repository). Without them the run "
                             "keeps nothing: its state goes to a temporary folder, removed when it ends")
    parser.add_argument("--checkpoint", action="store_true",
                        help="save a checkpoint every epoch; a restarted worker group resumes from it")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run (--run-name, or the latest unfinished one in "
                             "--storage-path) from its latest checkpoint; implies --checkpoint")
    parser.add_argument("--run-name", default=None,
                        help="Ray Train run name, the folder under --storage-path (default: generated)")


def _load_arrays(np, path):
    with np.load(path) as arrays:
        return [arrays[f"arr_{index}"] for index in range(len(arrays.files))]
