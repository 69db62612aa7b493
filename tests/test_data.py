"""Datasets: the CIFAR-10 reader on a tiny archive in the real format, synthetic data, sharding."""

import hashlib
import json
import os
import pickle
import tarfile

import numpy as np
import pytest

from conftest import PYTHON, run
from lesson import data


def write_cifar_folder(root, per_batch=4):
    """Write data_batch_1..5 and test_batch as the official python pickles, in root/cifar-10-batches-py."""
    folder = os.path.join(root, data.CIFAR10_FOLDER)
    os.makedirs(folder)
    rng = np.random.default_rng(0)
    expected = {}
    for name in data.CIFAR10_TRAIN_BATCHES + (data.CIFAR10_TEST_BATCH,):
        pixels = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=per_batch).tolist()
        with open(os.path.join(folder, name), "wb") as out:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": pixels,
                         b"filenames": [b"x.png"] * per_batch}, out, protocol=2)
        expected[name] = (pixels, labels)
    return folder, expected


def write_archive(root, source_root):
    archive = os.path.join(root, data.CIFAR10_ARCHIVE)
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(os.path.join(source_root, data.CIFAR10_FOLDER), arcname=data.CIFAR10_FOLDER)
    with open(archive, "rb") as source:
        return archive, hashlib.sha256(source.read()).hexdigest()


def test_cifar10_reader_decodes_the_official_pickle_layout(tmp_path):
    _, expected = write_cifar_folder(str(tmp_path))
    x_train, y_train, x_test, y_test = data.load_cifar10(str(tmp_path))
    assert x_train.shape == (20, 32, 32, 3) and x_test.shape == (4, 32, 32, 3)
    assert x_train.dtype == np.float32 and 0.0 <= x_train.min() and x_train.max() <= 1.0
    pixels, labels = expected["data_batch_1"]
    # Row layout: 1024 red values, then 1024 green, then 1024 blue, each 32x32 row-major.
    assert x_train[0, 0, 1, 0] == pytest.approx(pixels[0, 1] / 255.0)
    assert x_train[0, 0, 1, 1] == pytest.approx(pixels[0, 1024 + 1] / 255.0)
    assert x_train[0, 2, 0, 2] == pytest.approx(pixels[0, 2048 + 64] / 255.0)
    assert y_train[:4].tolist() == labels
    assert y_test.tolist() == expected["test_batch"][1]


def test_cifar10_archive_with_the_right_checksum_is_verified_and_extracted(tmp_path):
    source, cache = tmp_path / "source", tmp_path / "cache"
    source.mkdir(), cache.mkdir()
    write_cifar_folder(str(source))
    archive, sha256 = write_archive(str(cache), str(source))
    x_train, _, _, _ = data.load_cifar10(str(cache), expected_sha256=sha256)
    assert len(x_train) == 20
    assert os.path.isdir(cache / data.CIFAR10_FOLDER)


def test_cifar10_archive_with_a_wrong_checksum_is_refused_and_kept(tmp_path):
    source, cache = tmp_path / "source", tmp_path / "cache"
    source.mkdir(), cache.mkdir()
    write_cifar_folder(str(source))
    archive, _ = write_archive(str(cache), str(source))
    with pytest.raises(data.DatasetError, match="Checksum mismatch") as raised:
        data.load_cifar10(str(cache))  # the official checksum: this tiny archive is not it
    assert "Delete" in str(raised.value)
    assert os.path.exists(archive), "a user's file is never deleted"
    assert not os.path.exists(cache / data.CIFAR10_FOLDER)


def test_cifar10_download_is_verified_then_cached(tmp_path):
    source, cache = tmp_path / "source", tmp_path / "cache"
    source.mkdir()
    write_cifar_folder(str(source))
    archive, sha256 = write_archive(str(source), str(source))
    data.load_cifar10(str(cache), expected_sha256=sha256, url=f"file://{archive}")
    assert (cache / data.CIFAR10_ARCHIVE).exists()
    assert (cache / data.CIFAR10_FOLDER / "test_batch").exists()


def test_cifar10_corrupted_download_is_not_kept(tmp_path):
    source, cache = tmp_path / "source", tmp_path / "cache"
    source.mkdir()
    write_cifar_folder(str(source))
    archive, _ = write_archive(str(source), str(source))
    with pytest.raises(data.DatasetError, match="was not kept"):
        data.load_cifar10(str(cache), expected_sha256="0" * 64, url=f"file://{archive}")
    assert os.listdir(cache) == []


def test_cifar10_failed_download_names_data_dir_and_the_synthetic_dataset(tmp_path):
    with pytest.raises(data.DatasetError) as raised:
        data.load_cifar10(str(tmp_path), url="http://127.0.0.1:9/cifar-10-python.tar.gz")
    message = str(raised.value)
    assert "Could not download CIFAR-10" in message
    assert "--data-dir" in message and "--dataset synthetic" in message
    assert os.listdir(tmp_path) == []


def test_cifar10_folder_with_a_missing_batch_says_which_file(tmp_path):
    folder, _ = write_cifar_folder(str(tmp_path))
    os.unlink(os.path.join(folder, "data_batch_3"))
    with pytest.raises(data.DatasetError, match="data_batch_3 is missing"):
        data.load_cifar10(str(tmp_path))


def test_cifar10_folder_with_a_corrupt_batch_is_reported(tmp_path):
    folder, _ = write_cifar_folder(str(tmp_path))
    with open(os.path.join(folder, "test_batch"), "wb") as out:
        out.write(b"not a pickle")
    with pytest.raises(data.DatasetError, match="not a readable CIFAR-10 batch"):
        data.load_cifar10(str(tmp_path))


def test_load_dataset_takes_the_first_n_examples_and_rejects_too_many(tmp_path):
    write_cifar_folder(str(tmp_path))
    dataset = data.load_dataset("cifar10", train_size=7, test_size=3, data_dir=str(tmp_path))
    assert len(dataset.x_train) == 7 and len(dataset.y_test) == 3
    with pytest.raises(data.DatasetError, match="--train-size 21 is larger"):
        data.load_dataset("cifar10", train_size=21, test_size=3, data_dir=str(tmp_path))
    with pytest.raises(data.DatasetError, match="Unknown dataset"):
        data.load_dataset("imagenet", train_size=1, test_size=1)


def test_synthetic_data_is_deterministic_and_prefix_stable():
    small_x, small_y = data.synthetic_split("train", 100, seed=42)
    large_x, large_y = data.synthetic_split("train", 1500, seed=42)
    assert small_x.shape == (100, 32, 32, 3) and small_x.dtype == np.float32
    np.testing.assert_array_equal(small_x, large_x[:100])
    np.testing.assert_array_equal(small_y, large_y[:100])
    other_x, _ = data.synthetic_split("train", 100, seed=43)
    assert not np.array_equal(small_x, other_x)
    test_x, _ = data.synthetic_split("test", 100, seed=42)
    assert not np.array_equal(small_x, test_x), "train and test are different examples"
    assert 0.0 <= large_x.min() and large_x.max() <= 1.0
    assert set(np.unique(large_y)) == set(range(10))


def test_synthetic_data_is_learnable_far_above_chance():
    from sklearn.linear_model import LogisticRegression

    x_train, y_train = data.synthetic_split("train", 3000, seed=42)
    x_test, y_test = data.synthetic_split("test", 1000, seed=42)
    classifier = LogisticRegression(max_iter=300)
    classifier.fit(x_train.reshape(len(x_train), -1), y_train)
    accuracy = classifier.score(x_test.reshape(len(x_test), -1), y_test)
    # Chance is 0.10. Even a linear model learns it; it is not trivial either.
    assert 0.4 < accuracy < 0.99, accuracy


def test_shard_plan_gives_every_worker_the_same_steps_and_an_equal_share():
    plan = data.shard_plan(train_size=1000, per_worker_batch=64, num_workers=2)
    assert plan == {"global_batch_size": 128, "steps_per_epoch": 7,
                    "samples_per_worker_per_epoch": 448, "samples_per_epoch": 896}
    with pytest.raises(ValueError, match="smaller than one global batch"):
        data.shard_plan(train_size=100, per_worker_batch=64, num_workers=2)


def test_shards_are_disjoint_and_cover_the_training_set(tf):
    x = np.arange(24, dtype=np.float32).reshape(24, 1)
    y = np.arange(24, dtype=np.int32)
    seen = []
    for shard in range(3):
        dataset = data.make_train_dataset(x, y, batch_size=4, num_shards=3, shard_index=shard, seed=1)
        labels = [int(label) for _, batch in dataset.take(2) for label in batch.numpy()]
        assert len(labels) == 8
        seen.append(set(labels))
    assert seen[0].isdisjoint(seen[1]) and seen[1].isdisjoint(seen[2]) and seen[0].isdisjoint(seen[2])
    assert set.union(*seen) == set(range(24))


PER_DEVICE_AUTOTUNE = """
import json
from tensorflow.python.data.ops import multi_device_iterator_ops
from lesson import data, workarounds

tf = workarounds.import_tensorflow(1)
strategy = tf.distribute.MultiWorkerMirroredStrategy()  # no TF_CONFIG: one local worker
x = tf.zeros((8, 2)).numpy()
y = tf.zeros((8,), dtype=tf.int32).numpy()


def per_device_autotune():
    # fit() distributes a DatasetCreator's function the same way.
    distributed = strategy.distribute_datasets_from_function(
        lambda context: data.make_train_dataset(x, y, 2, 1, 0, seed=0))
    worker_iterators = iter(distributed)._iterators
    return [device._dataset.options().autotune.enabled  # None: not set, so on
            for worker in worker_iterators for device in worker._iterator._device_iterators]


patched = per_device_autotune()
multi_device_iterator_ops._create_device_dataset = multi_device_iterator_ops._create_device_dataset.wrapped
unpatched = per_device_autotune()
workarounds.disable_autotune_on_device_iterators(tf)
print(json.dumps({"patched": patched, "unpatched": unpatched, "again": per_device_autotune()}))
"""


def test_the_per_device_iterators_of_multiworker_input_do_not_autotune():
    # Their autotuning thread kept fit() idle for up to a minute at its end (workarounds.py).
    finished = run([PYTHON, "-c", PER_DEVICE_AUTOTUNE], timeout=120)
    assert finished.returncode == 0, finished.stderr[-3000:]
    seen = json.loads(finished.stdout.strip().splitlines()[-1])
    assert seen["unpatched"] == [None]  # TensorFlow's default, autotuning on: the control
    assert seen["patched"] == [False] and seen["again"] == [False]
