"""The Trainers' epoch mean losses and TensorBoard logs, on a tiny Keras model."""
import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from models import history


class LastBatchLoss(keras.Model):
  """A model whose train_step returns its loss as a plain tensor, as TFRS models do."""

  def __init__(self):
    super().__init__()
    self.dense = keras.layers.Dense(1, kernel_initializer='zeros', use_bias=False)

  def call(self, x):
    return self.dense(x)

  def train_step(self, data):
    x, y = data
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean(tf.square(self(x) - y))
    self.optimizer.apply_gradients(
        zip(tape.gradient(loss, self.trainable_variables), self.trainable_variables))
    return {'loss': loss}

  def test_step(self, data):
    x, y = data
    return {'loss': tf.reduce_mean(tf.square(self(x) - y))}


def _data(targets):
  x = np.ones((len(targets), 1), np.float32)
  return tf.data.Dataset.from_tensor_slices((x, np.array(targets, np.float32)[:, None])).batch(1)


def test_epoch_mean_loss_averages_the_batches_not_the_last_one():
  model = LastBatchLoss()
  model.compile(optimizer=keras.optimizers.SGD(0.0))  # no learning: losses are y**2
  callback = history.EpochMeanLoss()
  fit = model.fit(_data([1.0, 2.0, 3.0]), validation_data=_data([0.0, 4.0]), epochs=2,
                  callbacks=[callback], verbose=0)
  assert fit.history['loss'] == pytest.approx([9.0, 9.0])  # Keras keeps the last batch's
  assert fit.history['loss_mean'] == pytest.approx([14 / 3, 14 / 3])
  assert fit.history['val_loss_mean'] == pytest.approx([8.0, 8.0])
  assert callback.history['loss_mean'] == fit.history['loss_mean']
  assert 'total_loss_mean' not in fit.history  # only the losses the model reports


class _FnArgs:
  def __init__(self, model_run_dir=None):
    if model_run_dir is not None:
      self.model_run_dir = model_run_dir


def test_training_callbacks_write_tensorboard_logs_to_model_run_dir(tmp_path):
  callbacks = history.training_callbacks(_FnArgs(str(tmp_path)))
  assert isinstance(callbacks[0], history.EpochMeanLoss)  # before TensorBoard: it logs means
  model = LastBatchLoss()
  model.compile(optimizer=keras.optimizers.SGD(0.1))
  model.fit(_data([1.0, 2.0]), epochs=1, callbacks=callbacks, verbose=0)
  events = [name for _, _, names in os.walk(tmp_path) for name in names
            if name.startswith('events.out.tfevents')]
  assert events
  # benchmarks/sweep.py's stand-in FnArgs has no model_run_dir: no TensorBoard, no error.
  assert [type(c) for c in history.training_callbacks(_FnArgs())] == [history.EpochMeanLoss]
