"""Where each training step's time goes: input, compute, the gradient all-reduce, the optimizer.

The model's training step is Keras' own (forward pass and loss under a GradientTape,
gradients, then the optimizer), with the gradient all-reduce that the optimizer would do
inside `apply_gradients` done one line earlier, in the open, so that it can be timed on its
own: `tf.distribute.get_replica_context().all_reduce(SUM, gradients)` is exactly what
tf-keras 2.21's optimizer calls (`optimizer_utils.all_reduce_sum_gradients`), and
`apply_gradients(..., skip_gradients_aggregation=True)` then applies them as it would.
Without a strategy (the baseline) the all-reduce is a no-op on one replica, so both runs
execute the same step.

Clock readings inside the step (`tf.timestamp()`, and around the all-reduce a
`tf.py_function` that also reads this process's CPU time), each part made to wait for the
reading before it, split each step into:
- input: from the step's start in Keras' loop (the recorder's on_train_batch_begin) to the
  moment the batch is in the step: waiting for the input pipeline, and Keras' dispatch;
- compute: the forward and backward pass;
- allreduce: the gradient all-reduce across workers, wall time, and the CPU time this
  process spent meanwhile (allreduce_cpu): a worker that waits for a slower one shows wall
  time without CPU;
- optimizer: Adam applying the gradients;
- other: the rest of the step (metrics, Keras' bookkeeping), so that the parts add up to
  the step's measured time.

The model stays a plain Keras model: `attach(model)` (called by harness/instruments.py)
replaces its training step on the instance. DEMO_ALLREDUCE_DTYPE (float32, bfloat16 or
float16; harness/switches.py) compresses the gradients for the all-reduce, as Horovod's
compression does: cast before, cast back after, half the bytes. DEMO_STEP_TIMING=0 leaves
Keras' stock training step in place, to measure what the timing itself costs
(docs/PERFORMANCE.md).
"""

import time

PARTS = ("input", "compute", "allreduce", "allreduce_cpu", "optimizer", "other")
# The keys the training step adds to Keras' logs; the recorder takes them out again.
LOG_PREFIX = "step_clock_"


def attach(model, allreduce_dtype="float32"):
    """Replace a compiled Keras model's training step by the same step timed in parts (see the
    module's doc). Call it before fit(), which builds its training function from the step.
    `allreduce_dtype` is one of switches.ALLREDUCE_DTYPES, checked where DEMO_ALLREDUCE_DTYPE is read."""
    import tensorflow as tf
    from tf_keras.src.engine import data_adapter

    def clock(after=(), cpu=False):
        """The wall time (tf.timestamp) once `after` is computed; with cpu=True also this
        process's CPU time, which needs a call into Python (tf.py_function), so it is read
        only around the all-reduce."""
        with tf.control_dependencies([tensor for tensor in tf.nest.flatten(after) if tensor is not None]):
            if cpu:
                return tf.py_function(_clock, [], [tf.float64, tf.float64])
            return tf.timestamp(), None

    def all_reduce(gradients):
        context = tf.distribute.get_replica_context()
        if allreduce_dtype == "float32":
            return context.all_reduce(tf.distribute.ReduceOp.SUM, gradients)
        packed = [tf.cast(gradient, allreduce_dtype) for gradient in gradients]
        reduced = context.all_reduce(tf.distribute.ReduceOp.SUM, packed)
        return [tf.cast(gradient, original.dtype) for gradient, original in zip(reduced, gradients)]

    def timed_train_step(data):
        x, y, sample_weight = data_adapter.unpack_x_y_sample_weight(data)
        start_wall, _ = clock(after=[x, y])
        # Each part waits for the clock reading before it (else the executor may run the
        # reading late, while the next part already runs).
        with tf.control_dependencies([start_wall]):
            x = tf.nest.map_structure(tf.identity, x)
        with tf.GradientTape() as tape:
            y_pred = model(x, training=True)
            loss = model.compute_loss(x, y, y_pred, sample_weight)
        variables = model.trainable_variables
        gradients = tape.gradient(loss, variables)
        computed_wall, computed_cpu = clock(after=gradients, cpu=True)
        with tf.control_dependencies([computed_wall]):
            gradients = all_reduce([tf.identity(gradient) for gradient in gradients])
        reduced_wall, reduced_cpu = clock(after=gradients, cpu=True)
        with tf.control_dependencies([reduced_wall]):
            model.optimizer.apply_gradients(zip(gradients, variables), skip_gradients_aggregation=True)
        applied_wall, _ = clock(after=[model.optimizer.iterations.read_value()])
        logs = model.compute_metrics(x, y, y_pred, sample_weight)
        return logs | {LOG_PREFIX + "start": start_wall,
                       LOG_PREFIX + "compute": computed_wall - start_wall,
                       LOG_PREFIX + "allreduce": reduced_wall - computed_wall,
                       LOG_PREFIX + "allreduce_cpu": reduced_cpu - computed_cpu,
                       LOG_PREFIX + "optimizer": applied_wall - reduced_wall}

    # Keras sums every output of a step across the workers by default (reduction "auto" is
    # "sum" under MultiWorkerMirroredStrategy); the clock readings are this worker's own,
    # and the metrics are already synchronised when read.
    model.distribute_reduction_method = "first"
    # fit() calls model.train_step: an attribute of the instance wins over the class's method.
    model.train_step = timed_train_step
    return model


def _clock():
    return [time.time(), time.process_time()]


class StepBreakdown:
    """Sums each epoch's steps by part, from the clock readings in Keras' logs."""

    def __init__(self):
        self.epochs = []  # one dict of PARTS (and "steps", "step") per epoch

    def begin_epoch(self):
        self.epochs.append(dict.fromkeys(PARTS + ("step",), 0.0) | {"steps": 0})

    def add_step(self, began, ended, logs):
        """Take the clock readings out of `logs` (in place) and add this step to the epoch.
        Returns the step's parts in seconds, or None for a step without clock readings."""
        readings = {key[len(LOG_PREFIX):]: float(logs.pop(key)) for key in list(logs or {})
                    if key.startswith(LOG_PREFIX)}
        if not readings or not self.epochs:
            return None
        epoch = self.epochs[-1]
        step = ended - began
        parts = {"input": readings["start"] - began, "compute": readings["compute"],
                 "allreduce": readings["allreduce"], "optimizer": readings["optimizer"]}
        parts["other"] = step - sum(parts.values())
        parts["allreduce_cpu"] = readings["allreduce_cpu"]
        for part, seconds in parts.items():
            epoch[part] += seconds
        epoch["step"] += step
        epoch["steps"] += 1
        return parts

    def strip(self, logs):
        """Remove the clock readings from epoch-end logs (they are not metrics)."""
        for key in [key for key in (logs or {}) if key.startswith(LOG_PREFIX)]:
            logs.pop(key)
        return logs


def summarize(*epoch_lists):
    """Seconds per step by part over the epochs after the first of one or more processes (the
    first traces the graph and counts only when it is the only one; this is not the stricter
    rule of the throughput's steady state, harness/steady_state.py), each
    part's share of the step, and the share of the measured step time that the four timed
    parts (input, compute, allreduce, optimizer) do not account for."""
    steady = []
    for epochs in epoch_lists:
        epochs = [epoch for epoch in epochs if epoch.get("steps")]
        steady += epochs[1:] if len(epochs) >= 2 else epochs
    steps = sum(epoch["steps"] for epoch in steady)
    if not steps:
        return None
    per_step = {part: sum(epoch[part] for epoch in steady) / steps for part in PARTS + ("step",)}
    timed = sum(per_step[part] for part in ("input", "compute", "allreduce", "optimizer"))
    return {"steps": steps, "seconds_per_step": per_step,
            "share_of_step": {part: per_step[part] / per_step["step"] for part in PARTS},
            "unaccounted_share": 1 - timed / per_step["step"]}
