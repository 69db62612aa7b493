"""Proof that data parallelism happened as described: each Ray worker read its own shard,
and all of them finished with identical weights; and each worker's share of the final test.

- Sharding: `ShardNotes.wrap(dataset_fn)` notes the input pipeline each process built
  (pipeline k of N, from tf.distribute's InputContext): disjoint shards, one per worker.
- Sync: `weights_checksum` of the final weights is equal on every worker iff the
  gradients were all-reduced.
- The test: each worker evaluates examples k, k+N, ... with a plain copy of the model (no
  collective, the baseline's evaluation code), and the driver puts the shares together
  (results.merge_test_shares), so that no single rank evaluates the whole test set.
"""

import hashlib

import numpy as np

from lesson.model import create_model, evaluate


class ShardNotes:
    """The input pipelines this process built: [pipeline id, number of pipelines]."""

    def __init__(self):
        self.input_pipelines = []

    def wrap(self, dataset_fn):
        """The same dataset function, noting the pipeline each call builds."""
        def noting(input_context):
            shard = [input_context.input_pipeline_id, input_context.num_input_pipelines]
            if shard not in self.input_pipelines:
                self.input_pipelines.append(shard)
            return dataset_fn(input_context)
        return noting


def weights_checksum(weights):
    """sha256 of a list of numpy arrays: equal on every worker iff the models are equal."""
    digest = hashlib.sha256()
    for array in weights:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def sync_proof(weights, trainable_count):
    """The checksums of all the final weights, and of the trainable ones alone."""
    return {"weights_checksum": weights_checksum(weights),
            "trainable_weights_checksum": weights_checksum(weights[:trainable_count])}


def evaluate_test_share(weights, dataset, rank, world_size, batch_size):
    """This worker's share of the final test (examples rank, rank+N, ...), evaluated with a
    plain, non-distributed copy of the model that holds `weights`."""
    local_model = create_model(learning_rate=1e-3)  # for evaluation only: its rate is unused
    local_model.set_weights(weights)
    share = slice(rank, None, world_size)
    loss, accuracy, predictions = evaluate(local_model, dataset.x_test[share], dataset.y_test[share], batch_size)
    return {"count": len(predictions), "loss_sum": loss * len(predictions),
            "correct": int(round(accuracy * len(predictions))),
            "predictions": [int(label) for label in predictions]}
