"""A second model family for the rating: global mean plus shrunk user and item biases.

The ranking model's rating head is a neural factorisation; on ratings of the future it is
overconfident, most of all for users it never saw (their OOV row and features move the
prediction more than they know). Averaging it with a much simpler model of a different family,
fitted on the same rows, cancels part of each one's error: the classic blend of the Netflix
Prize, here with the simplest member. The baseline is fitted in closed form (alternating least
squares, a few vectorised passes over the ratings: seconds at 10M rows) and lives in the
exported model as two vocabulary-indexed tables and a scalar, so serving needs nothing else.
docs/quality.md ("A second family in the rating") has the measurements behind the weight and
the shrinkage.
"""
from typing import Optional, Tuple

import numpy as np
import tensorflow as tf
import tf_keras as keras


def fit_biases(users: np.ndarray, items: np.ndarray, ratings: np.ndarray, n_users: int,
               n_items: int, reg_u: float, reg_i: float,
               item_weights: Optional[np.ndarray] = None, epochs: int = 15
               ) -> Tuple[float, np.ndarray, np.ndarray]:
  """Global mean plus shrunk user and item biases, by alternating least squares.

  ``users`` and ``items`` are row numbers (< ``n_users``, ``n_items``). ``reg_u`` and
  ``reg_i`` shrink a bias towards 0 as if it had that many more ratings equal to the mean.
  ``item_weights`` (one per rating) weigh the ratings in the item biases only: with weights
  that fall with a rating's age, an item's bias follows what it is rated lately (drift); the
  shrinkage ``reg_i`` is then in units of weight. Returns (mean, user biases, item biases);
  a row with no rating gets 0.
  """
  users = np.asarray(users, np.int64)
  items = np.asarray(items, np.int64)
  ratings = np.asarray(ratings, np.float64)
  bu, bi = np.zeros(n_users), np.zeros(n_items)
  if not len(ratings):
    return 0.0, bu, bi
  w = np.ones(len(ratings)) if item_weights is None else np.asarray(item_weights, np.float64)
  mu = float(ratings.mean())
  user_counts = np.bincount(users, minlength=n_users)
  item_mass = np.bincount(items, w, minlength=n_items)
  item_den, user_den = reg_i + item_mass, reg_u + user_counts

  def divide(num, den):  # a row with no rating and no shrinkage: 0, not 0/0
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)

  for _ in range(epochs):
    bi = divide(np.bincount(items, w * (ratings - mu - bu[users]), n_items), item_den)
    bu = divide(np.bincount(users, ratings - mu - bi[items], n_users), user_den)
  return mu, bu, bi


class RatingBaseline(keras.layers.Layer):
  """mean + user bias + item bias, looked up by the Transform's id rows.

  The tables are non-trainable weights (not constants) so that they are sized once, saved
  with the model and refitted in place: ``fit`` after warm start, since a served model's
  biases describe its training rows, not these. Ids outside the tables (never in practice: the
  tables have the vocabularies' rows) are clipped to the last row, an OOV row with bias 0.
  """

  def __init__(self, user_rows: int, item_rows: int, mean: float = 0.0, **kwargs):
    super().__init__(**kwargs)
    zeros = keras.initializers.Zeros()
    # Until fitted it predicts ``mean`` for every pair, a harmless prior to blend with.
    self.mean = self.add_weight(name='mean', shape=[], trainable=False,
                                initializer=keras.initializers.Constant(mean))
    # [rows, 1] like the heads' bias tables, so warm start maps them row by row alike.
    self.user_bias = self.add_weight(name='user_bias', shape=[user_rows, 1], initializer=zeros,
                                     trainable=False)
    self.item_bias = self.add_weight(name='item_bias', shape=[item_rows, 1], initializer=zeros,
                                     trainable=False)

  def assign(self, mean: float, user_bias: np.ndarray, item_bias: np.ndarray) -> None:
    self.mean.assign(float(mean))
    self.user_bias.assign(np.asarray(user_bias, np.float32).reshape([-1, 1]))
    self.item_bias.assign(np.asarray(item_bias, np.float32).reshape([-1, 1]))

  def fit(self, user_ids: np.ndarray, item_ids: np.ndarray, ratings: np.ndarray,
          reg_u: float, reg_i: float) -> None:
    """Fits the biases on these rows (their Transform ids) and stores them."""
    self.assign(*fit_biases(user_ids, item_ids, ratings, int(self.user_bias.shape[0]),
                            int(self.item_bias.shape[0]), reg_u, reg_i))

  def call(self, user_ids: tf.Tensor, item_ids: tf.Tensor) -> tf.Tensor:
    def row(table, ids):
      ids = tf.clip_by_value(tf.reshape(tf.cast(ids, tf.int64), [-1]), 0,
                             tf.cast(tf.shape(table)[0] - 1, tf.int64))
      return tf.reshape(tf.gather(table, ids), [-1])
    return self.mean + row(self.user_bias, user_ids) + row(self.item_bias, item_ids)
