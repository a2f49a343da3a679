"""The query from a user's latest items: a GRU over the item tower's vectors.

The request-time history (RetrievalServing.embed_users_with_history) moves a user's query by
what they did since the push. Averaging the latest items' vectors treats the last click like
the tenth and was never trained as a query; here a GRU reads the latest ``history_length``
item vectors, most recent first (the order a client sends them), and is trained to point at
the item that came next, as in the TFRS sequential-retrieval tutorial. It is fitted after
the two towers, on their frozen item vectors, so the towers, the index and warm start are
untouched and the encoder costs a few epochs over (history, next item) pairs of the train
split; docs/quality.md ("A trained history query") has what it adds.

Library code of the retrieval Trainer: it knows nothing of TFX.
"""
import time
from typing import Any, Dict, Tuple

import numpy as np
import tensorflow as tf

# Padding in the history rows (a row index + 1 elsewhere).
PAD = 0


class HistoryEncoder(tf.keras.Model):
  """[batch, n, d] item vectors (most recent first) and their mask -> a [batch, d] query;
  zeros for a row with no item."""

  def __init__(self, dim: int, units: int, seed: int = 0, **kwargs):
    super().__init__(**kwargs)
    self.gru = tf.keras.layers.GRU(
        units, kernel_initializer=tf.keras.initializers.GlorotUniform(seed),
        recurrent_initializer=tf.keras.initializers.Orthogonal(seed=seed))
    self.project = tf.keras.layers.Dense(
        dim, use_bias=False, kernel_initializer=tf.keras.initializers.GlorotUniform(seed + 1))

  def call(self, vectors, mask):
    any_item = tf.cast(tf.reduce_any(mask, axis=1, keepdims=True), vectors.dtype)
    return self.project(self.gru(vectors, mask=mask)) * any_item


def next_item_examples(users: np.ndarray, items: np.ndarray, times: np.ndarray, length: int
                       ) -> Tuple[np.ndarray, np.ndarray]:
  """(history [m, length], next item [m]) for every interaction after a user's first one.

  ``items`` are row indices (>= 0); a history row holds the rows + 1 of the user's
  ``length`` previous interactions, most recent first, padded with PAD. Ties in time keep
  the input order.
  """
  order = np.lexsort((np.arange(len(users)), times, users))
  users, items = np.asarray(users)[order], np.asarray(items, np.int64)[order]
  history = np.full((len(items), length), PAD, np.int64)
  for back in range(1, length + 1):
    same = np.zeros(len(items), bool)
    same[back:] = users[back:] == users[:-back]
    history[back:, back - 1] = np.where(same[back:], items[:-back] + 1, PAD)
  keep = history[:, 0] != PAD
  return history[keep], items[keep]


def fit(item_vectors: np.ndarray, history: np.ndarray, target: np.ndarray, units: int,
        epochs: int, batch_size: int = 1024, learning_rate: float = 0.005,
        max_examples: int = 0, seed: int = 0) -> Tuple[HistoryEncoder, Dict[str, Any]]:
  """Trains the encoder with an in-batch softmax over the next items' (frozen) vectors,
  corrected by log Q (their share of the targets) so that popular items are not simply
  learnt as everyone's next click. Returns it and a description for the training report.

  Args:
    item_vectors: [rows, d] the item tower's vector of every item row.
    history, target: from next_item_examples over the same rows.
    max_examples: at most this many pairs, drawn at random with ``seed`` (0: all), so that
      the cost stays bounded as the data grows.
  """
  start = time.perf_counter()
  rng = np.random.default_rng(seed)
  if max_examples and len(target) > max_examples:
    pick = rng.choice(len(target), max_examples, replace=False)
    history, target = history[pick], target[pick]
  vectors = np.asarray(item_vectors, np.float32)
  table = tf.constant(np.concatenate([np.zeros((1, vectors.shape[1]), np.float32), vectors]))
  counts = np.bincount(target, minlength=len(vectors)) + 1.0
  log_q = tf.constant(np.log(counts / counts.sum()), tf.float32)
  encoder = HistoryEncoder(vectors.shape[1], units, seed=seed)
  optimizer = tf.keras.optimizers.Adam(learning_rate)

  @tf.function
  def step(rows, next_rows):
    with tf.GradientTape() as tape:
      query = encoder(tf.gather(table, rows), mask=rows != PAD)
      logits = (tf.matmul(query, tf.gather(table, next_rows + 1), transpose_b=True)
                - tf.gather(log_q, next_rows)[tf.newaxis, :])
      # Another example's next item that is this one's too is not a negative.
      size = tf.shape(next_rows)[0]
      twins = tf.cast(tf.equal(next_rows[:, None], next_rows[None, :]), tf.float32)
      logits -= 1e9 * (twins - tf.eye(size))
      loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
          tf.range(size), logits))
    grads = tape.gradient(loss, encoder.trainable_variables)
    optimizer.apply_gradients(zip(grads, encoder.trainable_variables))
    return loss

  data = (tf.data.Dataset.from_tensor_slices((history, target))
          .shuffle(max(1, len(target)), seed=seed, reshuffle_each_iteration=True)
          .batch(batch_size))
  losses = []
  for _ in range(epochs):
    total, steps = 0.0, 0
    for rows, next_rows in data:
      total += float(step(rows, next_rows))
      steps += 1
    losses.append(total / max(1, steps))
  return encoder, {'examples': int(len(target)), 'epochs': epochs, 'loss': losses,
                   'seconds': round(time.perf_counter() - start, 1)}

