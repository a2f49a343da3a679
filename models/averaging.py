"""Polyak averaging of the weights over training, as a Keras callback.

In-batch softmax training keeps moving the embeddings as long as it runs (the retrieval loss
plateaus after a few epochs and then wanders); the average of the weights over the last
steps scores better than the last step's weights (docs/quality.md).

Keras optimizers have ``use_ema``, but their average starts from the initial weights, so a
short run (a few epochs over a large data set) would end partly at its random
initialisation. Here the average is the plain mean of the weights seen so far until
``1 / (1 - momentum)`` steps have passed, and an exponential average after that.
"""
import tensorflow as tf
import tf_keras as keras

# Snapshots of the weights per averaging horizon (1 / (1 - momentum) steps). Each update
# reads every weight, embedding tables included (rows in proportion to the catalogue), so
# it is not done at every step.
SNAPSHOTS_PER_HORIZON = 50


class WeightAveraging(keras.callbacks.Callback):
  """Ends training with the moving average of the model's trainable weights.

  The weights are read every ``period`` steps (default: 50 snapshots per horizon), each
  snapshot weighted with ``momentum ** period`` so the horizon in steps stays the same.
  """

  def __init__(self, momentum: float, period: int = 0):
    super().__init__()
    if not 0.0 < momentum < 1.0:
      raise ValueError(f'momentum must be in (0, 1), got {momentum}')
    self.period = period or max(1, round(1.0 / (1.0 - momentum) / SNAPSHOTS_PER_HORIZON))
    self.momentum = momentum ** self.period
    self._averages = None
    self._steps = 0

  def on_train_begin(self, logs=None):
    self._averages = None  # the variables exist once the first step has run
    self._steps = 0

  def _start(self):
    variables = self.model.trainable_variables
    self._averages = [tf.Variable(v, trainable=False) for v in variables]
    snapshots = tf.Variable(1.0, trainable=False)
    momentum = self.momentum

    @tf.function
    def update():
      snapshots.assign_add(1.0)
      # The mean of the first n snapshots (weight (n-1)/n on the average so far), then EMA.
      decay = tf.minimum(momentum, (snapshots - 1.0) / snapshots)
      for average, variable in zip(self._averages, variables):
        average.assign(decay * average + (1.0 - decay) * variable)

    self._update = update

  def on_train_batch_end(self, batch, logs=None):
    self._steps += 1
    if self._steps % self.period:
      return
    if self._averages is None:
      self._start()
    else:
      self._update()

  def on_train_end(self, logs=None):
    if self._averages is None:
      return
    for average, variable in zip(self._averages, self.model.trainable_variables):
      variable.assign(average)
