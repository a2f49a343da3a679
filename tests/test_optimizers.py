"""Lazy Adam and the row penalty: embedding tables move only where a batch looked them up."""
import numpy as np
import tensorflow as tf
import tf_keras as keras

from models.optimizers import LazyAdam
from models.towers import Encoder, table_penalty
from tests.tensor_helpers import USERS, batch


def _adam_rows(rows: np.ndarray, grads: np.ndarray, lr: float, steps: int) -> np.ndarray:
  """Textbook Adam on rows that receive a gradient at every one of ``steps`` steps."""
  m = v = np.zeros_like(rows)
  for t in range(1, steps + 1):
    m = 0.9 * m + 0.1 * grads
    v = 0.999 * v + 0.001 * grads ** 2
    rows = rows - lr * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t) * m / (np.sqrt(v) + 1e-7)
  return rows


def test_lazy_adam_moves_only_the_looked_up_rows_and_is_adam_on_them():
  table = tf.Variable(np.arange(12, dtype=np.float32).reshape(6, 2))
  dense = tf.Variable([1.0, -2.0])
  start_table, start_dense = table.numpy(), dense.numpy()
  optimizer, reference = LazyAdam(0.1), keras.optimizers.Adam(0.1)
  reference_dense = tf.Variable(start_dense)
  looked_up = tf.constant([4, 1, 4])  # row 4 twice: its gradients add up
  for _ in range(3):
    with tf.GradientTape() as tape:
      loss = (tf.reduce_sum(tf.gather(table, looked_up) * [[1.0, 2.0]])
              + tf.reduce_sum(dense ** 2))
    grads = tape.gradient(loss, [table, dense])
    assert isinstance(grads[0], tf.IndexedSlices)
    optimizer.apply_gradients(zip(grads, [table, dense]))
    with tf.GradientTape() as tape:
      reference_loss = tf.reduce_sum(reference_dense ** 2)
    reference.apply_gradients([(tape.gradient(reference_loss, reference_dense),
                                reference_dense)])

  untouched = [0, 2, 3, 5]
  np.testing.assert_array_equal(table.numpy()[untouched], start_table[untouched])
  np.testing.assert_allclose(table.numpy()[[1, 4]],
                             _adam_rows(start_table[[1, 4]], np.array([[1.0, 2.0], [2.0, 4.0]]),
                                        0.1, 3), rtol=1e-5)
  # Dense variables get Keras Adam unchanged.
  np.testing.assert_allclose(dense.numpy(), reference_dense.numpy(), rtol=1e-6)


def test_keras_adam_moves_rows_the_batch_never_saw_and_lazy_adam_does_not():
  """The reason for LazyAdam: with momentum, Keras Adam keeps moving every row."""
  for optimizer, moves in ((keras.optimizers.Adam(0.1), True), (LazyAdam(0.1), False)):
    table = tf.Variable(np.ones((4, 2), np.float32))
    row_0 = []
    for rows in ([0], [1]):
      with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.gather(table, rows))
      optimizer.apply_gradients([(tape.gradient(loss, table), table)])
      row_0.append(table.numpy()[0, 0])
    assert row_0[0] < 1.0  # row 0 moved at its own step
    assert (row_0[1] != row_0[0]) == moves


def test_row_penalty_keeps_the_table_gradient_sparse_and_penalises_looked_up_rows():
  features = batch()
  for lazy, sparse in ((True, True), (False, False)):
    encoder = Encoder(USERS, dim=4, table_l2=0.5, lazy=lazy)
    with tf.GradientTape() as tape:
      encoder(features, training=True)
      penalty = tf.add_n(encoder.losses)
    table = encoder.id_embedding.embeddings
    assert isinstance(tape.gradient(penalty, table), tf.IndexedSlices) == sparse
    rows = tf.gather(table, tf.reshape(features[USERS.id_key], [-1]))
    expected = (0.5 * tf.reduce_mean(tf.reduce_sum(rows ** 2, axis=1)) if lazy
                else 0.5 * tf.reduce_sum(table ** 2))
    np.testing.assert_allclose(penalty.numpy(), expected.numpy(), rtol=1e-5)
  assert table_penalty(0.0, lazy=True) == {}
