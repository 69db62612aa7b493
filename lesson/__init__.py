"""The demo's training code: model.py, data.py and the two entry points are the lesson.

Importing this package, which every entry point does first, sets three things that must be
in place before TensorFlow and Ray are imported:
- tf-keras instead of Keras 3 (see workarounds.use_tf_keras);
- Ray's log deduplication off in the driver (RAY_DEDUP_LOGS=0, read when Ray is imported):
  it would fold the workers' per-epoch lines, which differ only in their numbers, into one
  line with "[repeated 2x across cluster]";
- Ray Train V2's preemption watcher off (RAY_TRAIN_ENABLE_PREEMPTION_WATCHER=0, which the
  driver passes on to Ray Train's controller): it watches for nodes an autoscaler drains,
  and these clusters have no autoscaler. Its actor is one more process to start while the
  trainer starts: docs/PERFORMANCE.md gives what it cost, measured.
"""

import os

from lesson.workarounds import use_tf_keras

use_tf_keras()
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
