"""How each Ray worker's record reaches the driver.

Under Ray Train V2 (Ray 2.60) the training function's return value is discarded, and
metrics reported without a checkpoint never reach `Result.metrics`. So every worker sends
its record to a small actor, the ResultsCollector (0 CPUs, on the head node), and the
driver reads it after `trainer.fit()`. This works when the workers are on other machines
with no shared filesystem, as on Kubernetes.

A worker's record proves what happened on it: its node, the input shard it read, the
samples it processed per epoch, a checksum of its final weights (equal on every worker iff
the gradients were all-reduced), its epoch times, and its share of the final test: each
worker evaluates examples k, k+N, ... with a plain copy of the model (no collective, the
baseline's evaluation code), and the driver puts the shares together. Rank 0 alone took
12 s of the run's end on the quick start's test set.
"""

import hashlib
import os
import socket

import numpy as np

from lesson.model import create_model, evaluate
from harness.run_state import AttemptTracker


def start_collector(ray):
    """The ResultsCollector actor, on the head node: a worker node may be killed
    (scripts/chaos.sh), the head may not."""

    @ray.remote(num_cpus=0)
    class ResultsCollector(AttemptTracker):
        """Holds what the workers send; lives in the cluster, read by the driver."""

        def __init__(self):
            super().__init__()  # counts worker group attempts (restarts): run_state.py
            self.records = []

        def add(self, record):
            self.records.append(record)

        def get_all(self):
            return list(self.records)

    return ResultsCollector.options(resources={"node:__internal_head__": 0.001}).remote()


def send_record(collector, recorder, model, dataset, settings):
    """Build this worker's record, evaluate its share of the test set, send both home."""
    import ray
    import ray.train
    import tensorflow as tf  # already imported by workarounds.import_tensorflow in this process

    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    # Every worker must call get_weights(): reading the batch-norm statistics averages them
    # across workers with a collective, so all workers take part.
    weights = model.get_weights()
    trainable_count = len(model.trainable_weights)
    record = recorder.state() | {
        "rank": rank,
        "world_size": world_size,
        "node_id": ray.get_runtime_context().get_node_id(),
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        "input_pipelines": recorder.input_pipelines,
        # Steps actually run times this worker's batch: what it really processed.
        "samples_per_epoch": [steps * settings["batch_size"] for steps in recorder.steps_per_epoch],
        "weights_checksum": weights_checksum(weights),
        "trainable_weights_checksum": weights_checksum(weights[:trainable_count]),
        "fit_seconds": recorder.fit_seconds,
    }
    # The final test on this worker's share, with a plain, non-distributed copy of the model.
    local_model = create_model(tf, settings["learning_rate"])  # for evaluation only: its rate is unused
    local_model.set_weights(weights)
    share = slice(rank, None, world_size)
    loss, accuracy, predictions = evaluate(local_model, dataset.x_test[share], dataset.y_test[share],
                                           settings["batch_size"])
    record["test_share"] = {"count": len(predictions), "loss_sum": loss * len(predictions),
                            "correct": int(round(accuracy * len(predictions))),
                            "predictions": [int(label) for label in predictions]}
    ray.get(collector.add.remote(record))


def weights_checksum(weights):
    """sha256 of a list of numpy arrays: equal on every worker iff the models are equal."""
    digest = hashlib.sha256()
    for array in weights:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()
