"""The CNN both runs train, and its evaluation: one definition, so the comparison is about
parallelism only.

Three blocks of 64, 128 and 256 filters (each: two 3x3 convolutions with batch norm and
ReLU, 2x2 max pooling, dropout 0.25), then dense 512 with batch norm, ReLU and dropout 0.5,
and a 10-way softmax: 3,253,834 parameters for 32x32x3 inputs. A plain Keras model: what the
benchmark measures is attached from outside (harness/instruments.py).
"""

INPUT_SHAPE = (32, 32, 3)
NUM_CLASSES = 10
BLOCK_FILTERS = (64, 128, 256)
# LR_SCALING=linear: the learning rate given is the one for this global batch (the quick
# start's, 64 per worker x 2), and is scaled in proportion to the run's global batch.
REFERENCE_GLOBAL_BATCH = 128


def learning_rate(recipe, plan):
    """The run's learning rate: as given, or (LR_SCALING=linear) scaled with the global batch
    and reached by a linear warm-up over the first epoch (Goyal et al., 2017, "Accurate,
    Large Minibatch SGD"), so that a larger global batch takes larger steps from the start
    of the second epoch. Both runs of a comparison use the same global batch, so the same rate."""
    import tensorflow as tf  # already imported, with the workarounds, by workarounds.import_tensorflow

    base = recipe.learning_rate
    if recipe.lr_scaling == "none":
        return base
    peak = base * plan["global_batch_size"] / REFERENCE_GLOBAL_BATCH
    warmup_steps = plan["steps_per_epoch"]

    class LinearWarmUp(tf.keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step):
            progress = tf.minimum(tf.cast(step, tf.float32) / warmup_steps, 1.0)
            return base + (peak - base) * progress

        def get_config(self):
            return {"base": base, "peak": peak, "warmup_steps": warmup_steps}

    return LinearWarmUp()


def create_model(learning_rate, input_shape=INPUT_SHAPE, num_classes=NUM_CLASSES):
    """Build and compile the CNN.

    Under MultiWorkerMirroredStrategy this must be called inside `strategy.scope()`, so
    that the variables are mirrored on every worker and their gradients all-reduced.
    """
    import tensorflow as tf

    layers = tf.keras.layers
    # Batch-norm momentum 0.9 (Keras defaults to 0.99): the moving statistics used at test
    # time then settle within tens of steps, which short demo runs need; with 0.99 a run
    # of ~100 steps is evaluated with statistics still close to their initial values.
    batch_norm = lambda: layers.BatchNormalization(momentum=0.9)  # noqa: E731
    model = tf.keras.Sequential(name="cifar10_cnn")
    model.add(layers.Input(shape=input_shape))
    for filters in BLOCK_FILTERS:
        for _ in range(2):
            model.add(layers.Conv2D(filters, 3, padding="same"))
            model.add(batch_norm())
            model.add(layers.Activation("relu"))
        model.add(layers.MaxPooling2D(2))
        model.add(layers.Dropout(0.25))
    model.add(layers.Flatten())
    model.add(layers.Dense(512))
    model.add(batch_norm())
    model.add(layers.Activation("relu"))
    model.add(layers.Dropout(0.5))
    model.add(layers.Dense(num_classes, activation="softmax"))
    model.compile(
        optimizer=tf.keras.optimizers.Adam(learning_rate=learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def evaluate(model, x_test, y_test, batch_size):
    """Test loss, accuracy and predicted classes of a (non-distributed) model: the same
    evaluation for the baseline and for each Ray worker's share of the test set."""
    import numpy as np

    probabilities = model.predict(x_test, batch_size=batch_size, verbose=0)
    predictions = probabilities.argmax(axis=1)
    picked = probabilities[np.arange(len(y_test)), y_test]
    loss = float(-np.log(np.clip(picked, 1e-7, 1.0)).mean())
    accuracy = float((predictions == y_test).mean())
    return loss, accuracy, predictions
