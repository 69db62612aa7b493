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
    checkpoints = fault_tolerance.epoch_checkpoints(tf, strategy, model, recorder, config)
    model.fit(..., initial_epoch=checkpoints.initial_epoch, callbacks=[recorder, checkpoints])
"""

import json
import os
import tempfile
import time

from harness.records import log

# Two checkpoints on disk: the latest, and the one before it in case the latest is torn.
CHECKPOINTS_TO_KEEP = 2
WEIGHTS_FILE = "model_weights.npz"
OPTIMIZER_FILE = "optimizer_weights.npz"
STATE_FILE = "train_state.json"


def epoch_checkpoints(tf, strategy, model, recorder, config):
    """A Keras callback that checkpoints every epoch (when asked to) and, built after a
    restart, has already loaded the latest checkpoint: `initial_epoch` is where fit() goes on.

    `recorder` is the run's records.epoch_recorder: its epochs so far are saved with the
    checkpoint and put back on restore. Put it before this callback in `callbacks`, so that
    the epoch saved is already recorded. `config` is the worker's train_loop_config.
    """
    import numpy as np
    import ray
    import ray.train

    rank = ray.train.get_context().get_world_rank()
    collector = config["collector"]
    enabled = config["fault_tolerance"]["checkpoint"]
    run_token = config["fault_tolerance"]["run_token"]

    class EpochCheckpoints(tf.keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.first_batch_seen = False
            self.initial_epoch = self._restore_latest()
            # Each worker group attempt registers, so the driver counts restarts itself.
            ray.get(collector.start_attempt.remote(rank, {
                "resumed_from_epoch": self.initial_epoch, "node_id": ray.get_runtime_context().get_node_id(),
                "pid": os.getpid(), "started": time.time()}))

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
            recorder.restore(state["recorder"], same_run=state.get("run_token") == run_token)
            # A new process replays the seeds of epoch 1: the same shuffle order and dropout
            # masks as the batches the restored weights just learned, on which the loss then
            # collapses to ~0. Seed the resumed epochs differently (fit builds the data later).
            tf.keras.utils.set_random_seed(config["settings"]["seed"] + state["epoch"])
            log(f"ray worker {rank}: restored the epoch {state['epoch']} checkpoint "
                f"(weights and optimizer state), resuming at epoch {state['epoch'] + 1}")
            return state["epoch"]

        def on_train_batch_begin(self, batch, logs=None):
            if not self.first_batch_seen:
                self.first_batch_seen = True
                collector.attempt_event.remote(rank, "first_batch", time.time())

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
                    state = {"epoch": epoch + 1, "recorder": recorder.state(), "run_token": run_token,
                             "saved": time.time()}
                    with open(os.path.join(folder, STATE_FILE), "w", encoding="utf-8") as out:
                        json.dump(state, out)
                    checkpoint = ray.train.Checkpoint.from_directory(folder)
                # Every worker reports, the same number of times: report is a barrier.
                ray.train.report({"epoch": epoch + 1}, checkpoint=checkpoint,
                                 checkpoint_dir_name=f"epoch-{epoch + 1:04d}")
            if rank == 0:
                collector.attempt_event.remote(rank, "checkpoint", time.time(), epoch + 1)

    return EpochCheckpoints()


def _load_arrays(np, path):
    with np.load(path) as arrays:
        return [arrays[f"arr_{index}"] for index in range(len(arrays.files))]
