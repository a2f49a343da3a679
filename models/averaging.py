"""Polyak averaging of the weights over training, as a Keras callback.

In-batch softmax training keeps moving the embeddings as long as it runs (the retrieval loss
plateaus after a few epochs and then wanders); the average of the weights over the last
steps scores better than the last step's weights (seed-42 split: docs/quality.md).

Keras optimizers have ``use_ema``, but their average starts from the initial weights, so a
short run (2 epochs at a million interactions) would end partly at its random
initialisation. Here the average is the plain mean of the weights seen so far until
``1 / (1 - momentum)`` steps have passed, and an exponential average after that.
"""
import tensorflow as tf
import tf_keras as keras


class WeightAveraging(keras.callbacks.Callback):
  """Ends training with the moving average of the model's trainable weights."""

  def __init__(self, momentum: float):
    super().__init__()
    if not 0.0 < momentum < 1.0:
      raise ValueError(f'momentum must be in (0, 1), got {momentum}')
    self.momentum = momentum
    self._averages = None

  def on_train_begin(self, logs=None):
    self._averages = None  # the variables exist once the first step has run

  def _start(self):
    variables = self.model.trainable_variables
    self._averages = [tf.Variable(v, trainable=False) for v in variables]
    steps = tf.Variable(1.0, trainable=False)
    momentum = self.momentum

    @tf.function
    def update():
      steps.assign_add(1.0)
      # The mean of the first n steps (weight (n-1)/n on the average so far), then EMA.
      decay = tf.minimum(momentum, (steps - 1.0) / steps)
      for average, variable in zip(self._averages, variables):
        average.assign(decay * average + (1.0 - decay) * variable)

    self._update = update

  def on_train_batch_end(self, batch, logs=None):
    if self._averages is None:
      self._start()
    else:
      self._update()

  def on_train_end(self, logs=None):
    if self._averages is None:
      return
    for average, variable in zip(self._averages, self.model.trainable_variables):
      variable.assign(average)
