"""The demo's training code: model.py, data.py and the two entry points are the lesson.

Importing this package, which every entry point does first, sets two things that must be
in place before TensorFlow and Ray are imported:
- tf-keras instead of Keras 3 (see workarounds.use_tf_keras);
- Ray's log deduplication off in the driver (RAY_DEDUP_LOGS=0, read when Ray is imported):
  it would fold the workers' per-epoch lines, which differ only in their numbers, into one
  line with "[repeated 2x across cluster]".
"""

import os

from training.workarounds import use_tf_keras

use_tf_keras()
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
