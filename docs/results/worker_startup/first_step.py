"""The first training step of the model with the harness' timed step, in one process under
MultiWorkerMirroredStrategy (no TF_CONFIG: one worker), batch 64, 8 steps: how long the first
step (tracing, Grappler, the first run) takes, as is, without AutoGraph converting the step,
and without Grappler. Run from the repository root, on one core:
    TF_USE_LEGACY_KERAS=1 PYTHONPATH=. taskset -c 1 .venv/bin/python \
        docs/results/worker_startup/first_step.py convert|noconvert|nograppler
"""
import json, sys, time
mode = sys.argv[1]  # convert | noconvert | nograppler
from lesson import workarounds, data
from lesson.model import create_model
tf = workarounds.import_tensorflow(1)
from harness import step_timing
tf.keras.utils.set_random_seed(42)
strategy = tf.distribute.MultiWorkerMirroredStrategy()
x, y = data.synthetic_split("train", 1024, 42)
ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(64, drop_remainder=True).repeat()
with strategy.scope():
    model = create_model(1e-3)
step_timing.attach(model)
if mode == "nograppler":
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
if mode == "noconvert":
    model.train_step = tf.autograph.experimental.do_not_convert(model.train_step)
T = {}
cb = tf.keras.callbacks.LambdaCallback(
    on_train_batch_begin=lambda b, l: T.setdefault("b%d" % b, [time.time(), time.process_time()]),
    on_train_batch_end=lambda b, l: T.setdefault("e%d" % b, [time.time(), time.process_time()]))
t1 = time.time()
model.fit(ds, epochs=1, steps_per_epoch=8, callbacks=[cb], verbose=0)
print(json.dumps({"mode": mode, "fit_to_first_begin": T["b0"][0] - t1, "first_step": T["e0"][0] - T["b0"][0],
                  "first_step_cpu": T["e0"][1] - T["b0"][1], "steps_2_7": (T["e7"][0] - T["b2"][0]) / 6}))
