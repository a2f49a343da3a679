"""The history query (models/sequence.py): its training pairs and what it learns."""
import numpy as np
import tensorflow as tf

from models import sequence


def test_next_item_examples_hold_the_previous_items_most_recent_first():
  users = np.array(['a', 'b', 'a', 'a', 'b'])
  items = np.array([0, 1, 2, 3, 4])
  times = np.array([10, 5, 30, 20, 6])
  history, target = sequence.next_item_examples(users, items, times, length=2)
  # a: 0 (t10), 3 (t20), 2 (t30); b: 1 (t5), 4 (t6). Rows are item + 1, 0 pads.
  assert target.tolist() == [3, 2, 4]
  assert history.tolist() == [[1, 0], [4, 1], [2, 0]]


def test_the_encoder_learns_which_item_comes_next():
  # Six items with orthogonal vectors; item k is always followed by k + 1 (mod 6).
  vectors = np.eye(6, dtype=np.float32)
  rng = np.random.default_rng(0)
  users, items, times = [], [], []
  for user in range(60):
    start = rng.integers(6)
    for step in range(5):
      users.append(f'u{user}')
      items.append((start + step) % 6)
      times.append(step)
  history, target = sequence.next_item_examples(np.array(users), np.array(items),
                                                np.array(times), length=3)
  encoder, report = sequence.fit(vectors, history, target, units=16, epochs=60,
                                 batch_size=64, learning_rate=0.02)
  assert report['examples'] == len(target) == 240 and len(report['loss']) == 60
  # The latest item decides: a history ending (most recent first) in k points at k + 1.
  latest = np.array([[k + 1, (k - 1) % 6 + 1, 0] for k in range(6)], np.int64)
  table = np.concatenate([np.zeros((1, 6), np.float32), vectors])
  query = encoder(tf.constant(table[latest]), mask=tf.constant(latest != 0)).numpy()
  assert ((query @ vectors.T).argmax(1) == (np.arange(6) + 1) % 6).all()
  # A row with no item gives a zero query (the user's tower is left as it is).
  empty = encoder(tf.zeros([1, 3, 6]), mask=tf.zeros([1, 3], tf.bool)).numpy()
  assert np.all(empty == 0)


def test_max_examples_bounds_the_pairs_trained_on():
  history = np.ones((50, 2), np.int64)
  target = np.zeros(50, np.int64)
  _, report = sequence.fit(np.eye(2, dtype=np.float32), history, target, units=4, epochs=1,
                           max_examples=20)
  assert report['examples'] == 20
