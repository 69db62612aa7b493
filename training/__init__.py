"""Plain Keras versus Ray Train data-parallel training of one CNN on CIFAR-10."""
