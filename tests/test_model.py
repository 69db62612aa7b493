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
