"""The seam between the lesson and the harness: `instrument(...)` attaches everything the
benchmark measures to a plain Keras model, from outside, in one call.

It returns an `Instruments` whose `callbacks` go to fit(), whose `dataset_fn` wraps the
input function, and whose `finish` writes the record once fit() is done. Each part does one
job:
- the timed training step (step_timing.attach, unless DEMO_STEP_TIMING=0);
- the epoch timer (epoch_timing.py): times, CPU, page faults, the step breakdown;
- the live metrics for Prometheus in a Ray worker (live_metrics.py);
- the progress line of each epoch (`progress_lines`);
- the proof of sharding and sync, and the worker's share of the test (proof.py);
- in a Ray worker, the attempt events of the chaos timeline (`attempt_events`).
The baseline's `finish` writes baseline_results.json; a Ray worker's sends its record home
through the ResultsCollector actor (collector.py).
"""

import os
import socket
import time

from harness import collector, epoch_timing, live_metrics, proof, results, step_timing, switches
from lesson.model import evaluate
from lesson.workarounds import log


def instrument(model, recipe, plan, worker_settings=None, results_dir=None, context=None):
    """Attach the measurements to `model` (compiled; inside the strategy's scope for Ray).

    `worker_settings`: what the driver's RayRun.start_workers() gave this Ray worker (the
    collector, whether checkpoints are on), or a TensorFlow-alone worker's `record_path`;
    None for the baseline, which writes its results into `results_dir` (checked here, before
    training). `context`: the worker's rank and world size (default: Ray Train's context)."""
    if worker_settings is None:
        results.check_writable(results_dir)
        instruments = Instruments(model, results.record_settings(recipe, baseline=True), plan, "baseline")
        instruments.results_dir = results_dir
        return instruments
    if context is None:
        import ray.train

        context = ray.train.get_context()
    settings = results.record_settings(recipe)
    kind = "ray worker" if "collector" in worker_settings else "tensorflow-alone worker"
    label = f"{kind} {context.get_world_rank()}/{context.get_world_size()}"
    return Instruments(model, settings, plan, label, worker_settings, context)


class Instruments:
    def __init__(self, model, settings, plan, label, worker_settings=None, context=None):
        import tensorflow as tf

        self.settings, self.plan, self.label = settings, plan, label
        self.worker_settings, self.context, self.results_dir = worker_settings, context, None
        if switches.step_timing():
            step_timing.attach(model, settings["allreduce_dtype"])
        self.timer = epoch_timing.epoch_timer()
        self.shards = proof.ShardNotes()
        workers = context.get_world_size() if context else 1
        self.callbacks = [self.timer, live_gauges(tf, self.timer, label, plan["samples_per_epoch"]),
                          progress_lines(tf, self.timer, label, plan["samples_per_epoch"], workers)]
        if worker_settings and "collector" in worker_settings:
            self.callbacks.append(attempt_events(tf, context.get_world_rank(), worker_settings))

    def dataset_fn(self, dataset_fn):
        """The input function, noting the shard each pipeline reads (proof of sharding)."""
        return self.shards.wrap(dataset_fn)

    # What a checkpoint keeps of the harness (lesson/fault_tolerance.py saves and restores it).
    def state(self):
        return self.timer.state()

    def restore(self, state, same_run):
        self.timer.restore(state, same_run)

    def finish(self, model, dataset, run_start=None):
        """After fit(): the baseline writes its results JSON (its run started at `run_start`);
        a Ray worker sends its record home, a TensorFlow-alone worker writes it to a file."""
        if self.worker_settings is None:
            return self._write_baseline(model, dataset, run_start)
        rank, world_size = self.context.get_world_rank(), self.context.get_world_size()
        # Every worker must call get_weights(): reading the batch-norm statistics averages them
        # across workers with a collective, so all workers take part.
        weights = model.get_weights()
        sink = self.worker_settings
        record = self.timer.state() | proof.sync_proof(weights, len(model.trainable_weights)) | {
            "rank": rank, "world_size": world_size, "node_id": node_id(sink),
            "hostname": socket.gethostname(), "pid": os.getpid(), "input_pipelines": self.shards.input_pipelines,
            # Steps actually run times this worker's batch: what it really processed.
            "samples_per_epoch": [steps * self.settings["batch_size"] for steps in self.timer.steps_per_epoch],
            "fit_seconds": self.timer.fit_seconds,
            "test_share": proof.evaluate_test_share(weights, dataset, rank, world_size, self.settings["batch_size"]),
        }
        if "collector" in sink:
            collector.send_record(sink["collector"], record)
        else:
            results.write_json_atomic(sink["record_path"], record)

    def _write_baseline(self, model, dataset, run_start):
        test_loss, test_accuracy, predictions = evaluate(model, dataset.x_test, dataset.y_test,
                                                         self.settings["batch_size"])
        state = self.timer.state()
        record = results.run_record("baseline", self.settings, self.plan, run_start, state, test_loss,
                                    test_accuracy, predictions)
        # CPU seconds and page faults per epoch: the per-image cost the Ray workers' records are compared with.
        record.update(epoch_cpu_seconds=state["epoch_cpu_seconds"], epoch_page_faults=state["epoch_page_faults"])
        path = os.path.join(self.results_dir, results.BASELINE_FILE)
        results.write(record, run_start, path)
        log(f"baseline: {results.summary_line(record)} -> {path}")
        return record


def node_id(worker_settings):
    """The Ray node this worker runs on; a process without Ray: its host and process."""
    if "collector" not in worker_settings:
        return f"{socket.gethostname()}:{os.getpid()}"
    import ray

    return ray.get_runtime_context().get_node_id()


def progress_lines(tf, timer, label, samples_per_epoch, workers):
    """A progress line per epoch: its time, the images per second of all workers together,
    and Keras' metrics."""
    together = f" ({workers} workers together)" if workers > 1 else ""

    class ProgressLines(tf.keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            entry = timer.history[-1]
            summary = " ".join(f"{key}={value:.4f}" for key, value in entry.items() if key not in ("epoch", "seconds"))
            rate = samples_per_epoch / entry["seconds"]
            log(f"{label} epoch {epoch + 1}: {entry['seconds']:.1f}s, {rate:.1f} img/s{together}, {summary}")

    return ProgressLines()


def live_gauges(tf, timer, label, samples_per_epoch):
    """The Prometheus gauges of a Ray worker (live_metrics.py), fed from the epoch timer.
    Outside a Ray Train worker they do nothing."""
    gauges = live_metrics.LiveMetrics(samples_per_epoch)

    class Gauges(tf.keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            gauges.begin(self.params.get("steps"))

        def on_train_batch_end(self, batch, logs=None):
            gauges.step(timer.last_step_seconds, timer.last_step_parts)

        def on_epoch_end(self, epoch, logs=None):
            gauges.epoch(epoch + 1, {key: value for key, value in timer.history[-1].items()
                                     if key not in ("epoch", "seconds")})

        def on_train_end(self, logs=None):
            if gauges.enabled:
                log(f"{label} {gauges.summary(timer.fit_seconds)}")

    return Gauges()


def attempt_events(tf, rank, worker_settings):
    """Each worker group attempt registers with the collector (the epoch it resumed from,
    its node, its first batch), and rank 0 notes each checkpoint as it is registered: the
    driver's count of restarts and the chaos demo's timeline (attempts.py)."""
    import ray

    collector_actor = worker_settings["collector"]
    started = time.time()

    class AttemptEvents(tf.keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.first_epoch = None
            self.first_batch_seen = False

        def on_epoch_begin(self, epoch, logs=None):
            if self.first_epoch is None:
                self.first_epoch = epoch  # fit's initial_epoch: where a restored checkpoint left off
                ray.get(collector_actor.start_attempt.remote(rank, {
                    "resumed_from_epoch": epoch, "node_id": ray.get_runtime_context().get_node_id(),
                    "pid": os.getpid(), "started": started}))
            else:
                self._note_checkpoint(epoch)

        def on_train_batch_begin(self, batch, logs=None):
            if not self.first_batch_seen:
                self.first_batch_seen = True
                collector_actor.attempt_event.remote(rank, "first_batch", time.time())

        def on_train_end(self, logs=None):
            if self.first_epoch is not None:
                self._note_checkpoint(self.params.get("epochs"))

        def _note_checkpoint(self, epochs_done):
            # The checkpoint callback of the epoch just ended has reported (a barrier) by now.
            if rank == 0 and worker_settings["checkpoint"]:
                collector_actor.attempt_event.remote(rank, "checkpoint", time.time(), epochs_done)

    return AttemptEvents()
