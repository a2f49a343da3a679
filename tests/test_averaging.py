"""Polyak averaging callback: the mean of the weights over the first steps, then an EMA."""
import numpy as np
import pytest
import tf_keras as keras

from models.averaging import WeightAveraging


class _Record(keras.callbacks.Callback):
  def __init__(self):
    super().__init__()
    self.weights = []

  def on_train_batch_end(self, batch, logs=None):
    self.weights.append(self.model.layers[0].kernel.numpy().copy())


def _fit(callbacks, steps=6):
  keras.utils.set_random_seed(0)  # Python's random seeds unseeded initializers
  model = keras.Sequential([keras.layers.Dense(1, use_bias=False, input_shape=(3,))])
  model.compile(optimizer=keras.optimizers.SGD(0.1), loss='mse')
  x = np.arange(3 * steps * 4, dtype=np.float32).reshape(-1, 3) / 50.0
  y = x.sum(axis=1, keepdims=True)
  record = _Record()
  model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0,
            callbacks=[record] + callbacks)
  return model.layers[0].kernel.numpy(), record.weights


def test_short_training_ends_at_the_mean_of_its_steps():
  final, seen = _fit([WeightAveraging(0.99, period=1)])  # 6 steps, far fewer than 100
  assert len(seen) == 6
  np.testing.assert_allclose(final, np.mean(seen, axis=0), rtol=1e-5)
  assert not np.allclose(final, seen[-1])


def test_exponential_average_after_the_horizon():
  final, seen = _fit([WeightAveraging(0.5, period=1)])  # mean of steps 1-2, then 0.5
  expected = (seen[0] + seen[1]) / 2
  for w in seen[2:]:
    expected = 0.5 * expected + 0.5 * w
  np.testing.assert_allclose(final, expected, rtol=1e-5)


def test_snapshots_every_period_steps_keep_the_horizon():
  final, seen = _fit([WeightAveraging(0.5, period=2)], steps=8)  # snapshots at steps 2, 4, 6, 8
  snapshots = seen[1::2]
  expected = snapshots[0]
  for w in snapshots[1:]:  # momentum 0.5 ** 2 per snapshot, below (n - 1) / n from n = 2
    expected = 0.25 * expected + 0.75 * w
  np.testing.assert_allclose(final, expected, rtol=1e-5)
  assert WeightAveraging(0.998).period == 10 and WeightAveraging(0.9).period == 1


@pytest.mark.parametrize('bad', [0.0, 1.0, 1.5])
def test_rejects_a_momentum_outside_zero_one(bad):
  with pytest.raises(ValueError, match='momentum'):
    WeightAveraging(bad)
