"""The CNN: the architecture the README describes, one definition for both runs."""

from lesson.model import create_model


def test_model_has_the_documented_parameter_count_and_output(tf):
    model = create_model(learning_rate=1e-3)
    assert model.count_params() == 3_253_834
    assert model.output_shape == (None, 10)
    assert model.input_shape == (None, 32, 32, 3)


def test_model_has_three_blocks_of_64_128_256_filters_and_a_dense_512(tf):
    model = create_model(learning_rate=1e-3)
    conv_filters = [layer.filters for layer in model.layers if isinstance(layer, tf.keras.layers.Conv2D)]
    assert conv_filters == [64, 64, 128, 128, 256, 256]
    dense_units = [layer.units for layer in model.layers if isinstance(layer, tf.keras.layers.Dense)]
    assert dense_units == [512, 10]
    dropout_rates = [layer.rate for layer in model.layers if isinstance(layer, tf.keras.layers.Dropout)]
    assert dropout_rates == [0.25, 0.25, 0.25, 0.5]
    assert sum(isinstance(layer, tf.keras.layers.BatchNormalization) for layer in model.layers) == 7


def test_model_is_tf_keras_not_keras_3(tf):
    # Keras 3's fit fails under MultiWorkerMirroredStrategy (ray-project/ray#47464).
    import tf_keras

    model = create_model(learning_rate=1e-3)
    assert tf.keras.Model is tf_keras.Model and isinstance(model, tf_keras.Sequential)


def test_importing_tensorflow_prints_each_notice_once_and_no_cuda_probe(tmp_path):
    """lesson.workarounds.import_tensorflow in a new process: TensorFlow prints oneDNN's notice
    twice and the CUDA probe's errors on a CPU-only machine; what passes is each other line once."""
    import subprocess
    import sys

    from conftest import REPO_ROOT

    finished = subprocess.run([sys.executable, "-c", "from lesson import workarounds; workarounds.import_tensorflow(1)"],
                              cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
                              env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert "Could not find cuda drivers" not in finished.stderr and "failed call to cuInit" not in finished.stderr
    assert finished.stderr.count("oneDNN custom operations are on") <= 1, finished.stderr
