"""The request's time: how much of the models' hedges for the future applies to a request.

Both stages serve the future beyond the end of train with a hedge fitted on its last weeks:
retrieval adds what is popular lately (RetrievalServing), ranking blends its rating head with
the shrunk biases baseline (RankingModel). Both describe the recent window [until - W, until)
chosen on train (core.recent_popularity.choose_window). A request made at time t looks at its
own window [t - W, t), of which that one covers max(0, 1 - (until - t) / W): 1 for every live
request (at or after until), 0 for one dated long before it (a replay, a backfill, a random
hold-out), where the model learnt the period itself and the hedge only costs
(docs/quality.md, "Request time").
"""
from typing import Dict, Optional, Tuple

import numpy as np
import tensorflow as tf

from core import features as F
from core import recent_popularity
from models import data

# A request time after any training data: "now", for requests that give none.
NOW = 2 ** 62


def covered_share(request_time: tf.Tensor, until: int, window_seconds: float) -> tf.Tensor:
  """float32, per request: the share of its recent window that [until - W, until) covers
  (1 everywhere without a window)."""
  if not window_seconds:
    return tf.ones(tf.shape(request_time), tf.float32)
  lag = tf.cast(until - tf.cast(request_time, tf.int64), tf.float64)
  return tf.cast(tf.clip_by_value(1.0 - lag / window_seconds, 0.0, 1.0), tf.float32)


def recent_window(users: np.ndarray, item_rows: np.ndarray, times: np.ndarray, n_items: int
                  ) -> Tuple[int, Optional[int]]:
  """(until, window in days or None for all of train) of train's rows: the window of the
  recent-popularity list, which the retrieval export's recency term also uses."""
  times = np.asarray(times, np.int64)
  if not len(times):
    return 0, None
  window, _ = recent_popularity.choose_window(users, item_rows, times, n_items)
  return int(times.max()) + 1, window


def read_train_table(train_files) -> Dict[str, np.ndarray]:
  """The train split's users and items (str) and timestamps (int64), one entry per row."""
  table = data.read_table(train_files, [F.USER_ID, F.ITEM_ID, F.TIMESTAMP])
  return {F.USER_ID: table[F.USER_ID].astype(str), F.ITEM_ID: table[F.ITEM_ID].astype(str),
          F.TIMESTAMP: table[F.TIMESTAMP].astype(np.int64)}


def train_window(train_files) -> Tuple[int, Optional[int]]:
  """recent_window of the train split's files."""
  table = read_train_table(train_files)
  _, items = np.unique(table[F.ITEM_ID], return_inverse=True)
  return recent_window(table[F.USER_ID], items.reshape(-1), table[F.TIMESTAMP],
                       int(items.max()) + 1 if len(items) else 0)


def window_seconds(window_days: Optional[int]) -> float:
  return float(window_days * recent_popularity.DAY) if window_days else 0.0
