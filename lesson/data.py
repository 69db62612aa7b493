"""Datasets for both runs, and the input pipeline that shards them across workers.

Two datasets, never mixed up (no silent fallback from one to the other):
- `cifar10`: the official python archive, downloaded once with its sha256 verified, or an
  already extracted `cifar-10-batches-py` folder given with `--data-dir`.
- `synthetic`: CIFAR-shaped images (32x32x3 in [0, 1], 10 classes), deterministic from a
  seed, and learnable: each class is a smooth random pattern seen through shifts, contrast
  changes and heavy noise, overlaid with a weaker pattern of another class, so accuracy
  climbs well above the 10% of chance within an epoch or two, but not to 100% at once.
"""

import hashlib
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass

import numpy as np

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
# The published sha256 of the official archive (the same one Keras verifies).
CIFAR10_SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{index}" for index in range(1, 6))
CIFAR10_TEST_BATCH = "test_batch"
DEFAULT_DATA_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".data")

# The synthetic pools are generated in fixed chunks, so example i is the same whatever
# --train-size is, and "the first N examples" means the same thing for every run.
SYNTHETIC_CHUNK = 1024
SYNTHETIC_TRAIN_POOL = 50_000
SYNTHETIC_TEST_POOL = 10_000


class DatasetError(ValueError):
    """The dataset asked for cannot be loaded; the message says why and what to do."""


@dataclass
class Dataset:
    name: str
    x_train: np.ndarray  # float32, (N, 32, 32, 3), values in [0, 1]
    y_train: np.ndarray  # int32, (N,)
    x_test: np.ndarray
    y_test: np.ndarray


def load_dataset(name, train_size, test_size, data_dir=None, seed=42):
    """The first `train_size` training and `test_size` test examples of a dataset."""
    if name == "synthetic":
        x_train, y_train = synthetic_split("train", train_size, seed)
        x_test, y_test = synthetic_split("test", test_size, seed)
    elif name == "cifar10":
        x_train, y_train, x_test, y_test = load_cifar10(data_dir or DEFAULT_DATA_DIR)
        x_train, y_train = _first(x_train, y_train, train_size, "training", "--train-size")
        x_test, y_test = _first(x_test, y_test, test_size, "test", "--test-size")
    else:
        raise DatasetError(f"Unknown dataset '{name}'. Use 'synthetic' (offline) or 'cifar10'.")
    return Dataset(name, x_train, y_train, x_test, y_test)


def _first(x, y, size, split, flag):
    if size > len(x):
        raise DatasetError(f"{flag} {size} is larger than the {len(x)} examples of the {split} split.")
    return x[:size], y[:size]


# ---------------------------------------------------------------- CIFAR-10 on disk


def load_cifar10(data_dir, expected_sha256=CIFAR10_SHA256, url=CIFAR10_URL):
    """Load CIFAR-10 as float32 images in [0, 1] and int32 labels.

    Looks, in order, for `data_dir/cifar-10-batches-py`, then for the archive
    `data_dir/cifar-10-python.tar.gz` (verified, then extracted), then downloads the
    archive into `data_dir` (verified before it is kept).
    """
    folder = os.path.join(data_dir, CIFAR10_FOLDER)
    if not os.path.isdir(folder):
        archive = os.path.join(data_dir, CIFAR10_ARCHIVE)
        if not os.path.exists(archive):
            _download(url, archive, expected_sha256)
        _verify_sha256(archive, expected_sha256, downloaded=False)
        _extract(archive, data_dir)
    train_parts = [_read_batch(folder, name) for name in CIFAR10_TRAIN_BATCHES]
    x_test, y_test = _read_batch(folder, CIFAR10_TEST_BATCH)
    x_train = np.concatenate([images for images, _ in train_parts])
    y_train = np.concatenate([labels for _, labels in train_parts])
    return x_train, y_train, x_test, y_test


def _download(url, archive, expected_sha256):
    os.makedirs(os.path.dirname(os.path.abspath(archive)), exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(archive)), suffix=".part")
    os.close(handle)
    try:
        with urllib.request.urlopen(url, timeout=30) as response, open(partial, "wb") as out:
            shutil.copyfileobj(response, out)
    except (OSError, ValueError) as error:
        os.unlink(partial)
        raise DatasetError(
            f"Could not download CIFAR-10 from {url}: {error}. Either download "
            f"{CIFAR10_ARCHIVE} yourself and put it (or its extracted {CIFAR10_FOLDER} folder) in "
            f"a folder passed with --data-dir, or use --dataset synthetic, which needs no download."
        ) from None
    try:
        _verify_sha256(partial, expected_sha256, downloaded=True)
    except DatasetError:
        os.unlink(partial)
        raise
    os.replace(partial, archive)


def _verify_sha256(path, expected_sha256, downloaded):
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        for block in iter(lambda: source.read(1 << 20), b""):
            digest.update(block)
    actual = digest.hexdigest()
    if actual != expected_sha256:
        if downloaded:
            advice = "The download was corrupted or intercepted and was not kept; try again."
        else:
            advice = (f"Delete {path} (it was left as it is) so that it is downloaded again, "
                      "or replace it with the official archive.")
        raise DatasetError(f"Checksum mismatch for {path}: sha256 {actual}, expected "
                           f"{expected_sha256}. {advice}")


def _extract(archive, data_dir):
    with tarfile.open(archive, "r:gz") as tar:
        members = [member for member in tar.getmembers() if member.name.startswith(CIFAR10_FOLDER + "/")]
        if not members:
            raise DatasetError(f"{archive} has no {CIFAR10_FOLDER}/ folder: it is not the CIFAR-10 "
                               "python archive.")
        tar.extractall(data_dir, members=members, filter="data")


def _read_batch(folder, name):
    path = os.path.join(folder, name)
    if not os.path.exists(path):
        raise DatasetError(f"{path} is missing: {folder} is not a complete CIFAR-10 python folder. "
                           "Delete it to download again, or point --data-dir elsewhere.")
    try:
        with open(path, "rb") as source:
            batch = pickle.load(source, encoding="bytes")
        raw = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int32)
        # Stored as rows of 3072 bytes: 1024 red, then green, then blue, row-major 32x32.
        images = raw.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError) as error:
        raise DatasetError(f"{path} is not a readable CIFAR-10 batch ({error}). Delete {folder} "
                           "to download again.") from None
    if len(images) != len(labels):
        raise DatasetError(f"{path} has {len(images)} images but {len(labels)} labels.")
    return images.astype(np.float32) / 255.0, labels


# ---------------------------------------------------------------- synthetic, learnable


def _class_prototypes(seed, num_classes=10):
    """One smooth 32x32x3 pattern per class: 4x4 random colours, upsampled and blurred."""
    rng = np.random.default_rng([seed, 0])
    coarse = rng.normal(0.0, 1.0, size=(num_classes, 4, 4, 3))
    fine = coarse.repeat(8, axis=1).repeat(8, axis=2)
    # Box blur so neighbouring cells blend: a shift then changes the pattern a little,
    # not completely.
    for axis in (1, 2):
        fine = sum(np.roll(fine, offset, axis=axis) for offset in range(-3, 4)) / 7.0
    fine -= fine.mean(axis=(1, 2, 3), keepdims=True)
    fine /= fine.std(axis=(1, 2, 3), keepdims=True)
    return fine.astype(np.float32)


def synthetic_split(split, size, seed):
    """The first `size` examples of the synthetic 'train' or 'test' split."""
    pool = SYNTHETIC_TRAIN_POOL if split == "train" else SYNTHETIC_TEST_POOL
    if size > pool:
        flag = "--train-size" if split == "train" else "--test-size"
        raise DatasetError(f"{flag} {size} is larger than the synthetic {split} split ({pool}).")
    prototypes = _class_prototypes(seed)
    split_id = 1 if split == "train" else 2
    images, labels = [], []
    for chunk in range((size + SYNTHETIC_CHUNK - 1) // SYNTHETIC_CHUNK):
        rng = np.random.default_rng([seed, split_id, chunk])
        count = min(SYNTHETIC_CHUNK, size - chunk * SYNTHETIC_CHUNK)
        chunk_labels = rng.integers(0, 10, size=SYNTHETIC_CHUNK)[:count]
        shifts = rng.integers(-4, 5, size=(SYNTHETIC_CHUNK, 2))[:count]
        contrast = rng.uniform(0.4, 1.2, size=SYNTHETIC_CHUNK)[:count]
        # A distracting pattern of another class, up to as strong as the true one:
        # the examples where it nearly wins are the hard ones.
        distractors = (chunk_labels + rng.integers(1, 10, size=SYNTHETIC_CHUNK)[:count]) % 10
        distractor_weight = rng.uniform(0.0, 1.0, size=SYNTHETIC_CHUNK)[:count]
        brightness = rng.normal(0.0, 0.3, size=(SYNTHETIC_CHUNK, 1, 1, 3))[:count]
        noise = rng.normal(0.0, 1.0, size=(SYNTHETIC_CHUNK, 32, 32, 3)).astype(np.float32)[:count]
        chunk_images = np.empty((count, 32, 32, 3), dtype=np.float32)
        for index in range(count):
            pattern = (prototypes[chunk_labels[index]]
                       + distractor_weight[index] * prototypes[distractors[index]])
            pattern = np.roll(pattern, tuple(shifts[index]), axis=(0, 1))
            chunk_images[index] = contrast[index] * pattern + brightness[index] + 4.0 * noise[index]
        images.append(chunk_images)
        labels.append(chunk_labels.astype(np.int32))
    x = np.concatenate(images) if images else np.zeros((0, 32, 32, 3), np.float32)
    y = np.concatenate(labels) if labels else np.zeros((0,), np.int32)
    # Map to [0, 1] like the normalised CIFAR-10 images.
    x = np.clip(x * 0.055 + 0.5, 0.0, 1.0).astype(np.float32)
    return x, y


# ---------------------------------------------------------------- input pipeline


def shard_plan(train_size, per_worker_batch, num_workers):
    """How many steps each worker runs per epoch and how many examples that covers.

    Every worker runs the same number of steps (a collective all-reduce needs every worker
    at every step), so the remainder that does not fill a global batch is left out of
    each epoch, the same way for the baseline (which runs with the global batch).
    """
    global_batch = per_worker_batch * num_workers
    steps_per_epoch = train_size // global_batch
    if steps_per_epoch < 1:
        raise ValueError(
            f"--train-size {train_size} is smaller than one global batch ({per_worker_batch} per "
            f"worker x {num_workers} workers = {global_batch}). Raise --train-size or lower "
            "--batch-size.")
    return dict(global_batch_size=global_batch, steps_per_epoch=steps_per_epoch,
                samples_per_worker_per_epoch=steps_per_epoch * per_worker_batch,
                samples_per_epoch=steps_per_epoch * global_batch)


def make_train_dataset(x, y, batch_size, num_shards, shard_index, seed):
    """A repeating, shuffled, batched tf.data pipeline over shard `shard_index` of `num_shards`.

    Shard k holds examples k, k+N, k+2N, ...: the shards are disjoint and together cover
    the whole training set. Each pass over a shard is reshuffled.
    """
    import tensorflow as tf  # already imported, with the workarounds, by workarounds.import_tensorflow

    shard_x = x[shard_index::num_shards]
    shard_y = y[shard_index::num_shards]
    dataset = tf.data.Dataset.from_tensor_slices((shard_x, shard_y))
    dataset = dataset.shuffle(len(shard_x), seed=seed + shard_index, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, drop_remainder=True).repeat().prefetch(2)
    options = _pipeline_options()
    # Sharding is done explicitly above; stop tf.distribute from sharding a second time.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return dataset.with_options(options)


def make_eval_dataset(x, y, batch_size):
    """Batched test data, for the per-epoch validation inside fit().

    Under MultiWorkerMirroredStrategy, `batch_size` is the global batch and tf.distribute
    splits the batches between workers (auto-sharding by data); the metrics are summed
    over workers, so every worker logs the accuracy on the whole test set.
    """
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size).prefetch(2)
    return dataset.with_options(_pipeline_options())


def _pipeline_options():
    import tensorflow as tf

    options = tf.data.Options()
    # Autotuning sized its own thread pools on every core and, at the end of fit(), kept
    # the process idle for 30-58 s while tearing the iterator down; fixed sizes avoid both.
    options.autotune.enabled = False
    return options
