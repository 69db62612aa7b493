"""What a Ray Train worker process imports at its start, with and without the stand-ins of
ray_data_stand_ins.patch (apply it first: `git apply docs/results/worker_startup/ray_data_stand_ins.patch`).
`old`: the patch's section 8 and 9 changes without its set-up hook for section 10; `hook`: the
whole set-up hook. Then TensorFlow's import, as the training function does it. One core:
    PYTHONPATH=. taskset -c 1 .venv/bin/python docs/results/worker_startup/ray_data_imports.py old|hook
"""
import sys, time
t0 = time.process_time()
import ray
from lesson import workarounds
if sys.argv[1] == "hook":
    workarounds.prepare_worker_process()
else:
    workarounds.on_first_import("tensorflow", workarounds.quietly)
    workarounds.ray_train_tensorflow_without_tensorflow(lazily=True)
t1 = time.process_time()
import ray.train.v2._internal.execution.worker_group.worker  # the RayTrainWorker actor's class
from ray.train.tensorflow.config import TensorflowConfig     # its backend config, unpickled
TensorflowConfig().backend_cls
t2 = time.process_time()
print(sys.argv[1], "ray %.2f, Ray Train's worker side %.2f CPU s;" % (t1 - t0, t2 - t1),
      "pandas loaded:", "pandas" in sys.modules, "ray.data loaded:", "ray.data" in sys.modules)
if len(sys.argv) > 2:  # then what a trial driver or controller does
    from ray.train.tensorflow import TensorflowTrainer
    from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer
    from ray.train.v2._internal.execution.scaling_policy import autoscaling_coordinator_client as c
    import ray.train.v2._internal.execution.controller
    import ray.data, pandas, ray.tune
    print("trainer", TensorflowTrainer.__name__, DataParallelTrainer._create_default_callbacks.__qualname__,
          c.TrainAutoscalingCoordinatorClient.send_resource_request.__qualname__, type(ray.data).__name__,
          ray.data.range.__name__, pandas.DataFrame.__name__, sys.modules["ray.data"] is ray.data)
t3 = time.process_time()
tf = workarounds.import_tensorflow(1)
print(sys.argv[1], "then TensorFlow %.2f CPU s; worker side + TensorFlow %.2f" % (time.process_time() - t3, time.process_time() - t1),
      "pandas loaded:", "pandas" in sys.modules, "ray.data loaded:", "ray.data" in sys.modules)
