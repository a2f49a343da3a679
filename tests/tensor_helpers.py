"""Hand-made feature specs and batches for the model tests (shared by several modules)."""
import numpy as np
import tensorflow as tf

from models import data
from core import features as F

USERS = data.SideSpec(id_key='user_id_xf', id_rows=6, categorical={'user__age_bucket_xf': 4},
                      bags={'user__country_xf': 5}, numeric=['user__age_xf'])
ITEMS = data.SideSpec(id_key='item_id_xf', id_rows=8, categorical={}, bags={'item__genres_xf': 6},
                      numeric=[])


def batch(n=4):
  rng = np.random.default_rng(0)
  return {
      'user_id_xf': tf.constant(rng.integers(0, 4, n), tf.int64),
      'user__age_bucket_xf': tf.constant(rng.integers(0, 3, n), tf.int64),
      'user__country_xf': tf.sparse.from_dense(tf.constant([[1, 0]] * (n - 1) + [[0, 0]],
                                                           tf.int64)),
      'user__age_xf': tf.constant(rng.normal(size=n), tf.float32),
      'item_id_xf': tf.constant(rng.integers(0, 6, n), tf.int64),
      'item__genres_xf': tf.sparse.from_dense(tf.constant([[1, 2]] * n, tf.int64)),
      F.RATING_XF: tf.constant([5.0, 3.0, 4.0, 1.0][:n]),
  }
