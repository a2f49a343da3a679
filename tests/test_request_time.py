"""The request's time (models/request_time.py): the share of its window the models' hedges
cover, and the window both trainers read from train."""
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from core import recent_popularity
from models import request_time

DAY = recent_popularity.DAY


def test_the_share_falls_from_one_to_zero_over_the_window_before_until():
  until, window = 100 * DAY, 10 * DAY
  times = tf.constant([until + 5 * DAY, until, until - DAY, until - 5 * DAY, until - 10 * DAY,
                       until - 50 * DAY, request_time.NOW], tf.int64)
  share = request_time.covered_share(times, until, float(window)).numpy()
  np.testing.assert_allclose(share, [1, 1, 0.9, 0.5, 0, 0, 1], atol=1e-6)
  # No window (the hedge spans all of train): every request gets all of it.
  assert np.all(request_time.covered_share(times, until, 0.0).numpy() == 1)


def test_the_window_is_the_recent_popularity_lists(tmp_path):
  # 120 items rated 5 times each in the first days, then item c lately: 4 times the day
  # before the latest 20% of rows, which are all c. All of train ranks c 121st, past the
  # list's 100; a window that leaves the first days out ranks it first.
  rows = ([(f'o{i}-{n}', f'a{i}', n * 3600) for i in range(120) for n in range(5)]
          + [(f'p{n}', 'c', 99 * DAY + n) for n in range(4)]
          + [(f'q{n}', 'c', 100 * DAY + n) for n in range(151)])
  path = tmp_path / 'train.tfrecord'
  with tf.io.TFRecordWriter(str(path), options='GZIP') as writer:  # as ExampleGen writes
    for user, item, time in rows:
      feature = {
          'user_id': tf.train.Feature(bytes_list=tf.train.BytesList(value=[user.encode()])),
          'item_id': tf.train.Feature(bytes_list=tf.train.BytesList(value=[item.encode()])),
          'timestamp': tf.train.Feature(int64_list=tf.train.Int64List(value=[time]))}
      writer.write(tf.train.Example(features=tf.train.Features(feature=feature))
                   .SerializeToString())
  until, window = request_time.train_window([str(path)])
  assert until == 100 * DAY + 151
  frame = pd.DataFrame(rows, columns=['user_id', 'item_id', 'timestamp'])
  _, items = np.unique(frame['item_id'], return_inverse=True)
  expected, shares = recent_popularity.choose_window(
      frame['user_id'].to_numpy(), items, frame['timestamp'].to_numpy(), items.max() + 1)
  assert window == expected and window is not None and shares[None] < shares[window]
  assert request_time.recent_window(np.array([]), np.array([]), np.array([]), 0) == (0, None)
  assert request_time.window_seconds(14) == pytest.approx(14 * DAY)
  assert request_time.window_seconds(None) == 0.0
