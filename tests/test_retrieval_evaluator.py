"""Retrieval evaluation (models/evaluation.py): scoring on a hand-made model, blessing rules;
the anomaly gate reading its anomalies."""
import os

import numpy as np
import pytest
import tensorflow as tf

from components.anomaly_gate import component as gate
from models import evaluation

ITEMS = np.array(['a', 'b', 'c', 'd'])
VECTORS = {'u1': [1.0, 0.0], 'u2': [0.0, 1.0]}
ITEM_VECTORS = {'a': [1.0, 0.0], 'b': [0.9, 0.1], 'c': [0.0, 1.0], 'd': [0.1, 0.8]}


class FakeModel:
  """Exposes the two embedding signatures of a retrieval SavedModel."""

  def __init__(self):
    def table(vectors):
      return lambda ids: {'embeddings': tf.constant(
          [vectors.get(i.decode(), [0.0, 0.0]) for i in ids.numpy()], tf.float32)}
    self.signatures = {'embed_users': table(VECTORS), 'embed_items': table(ITEM_VECTORS)}


def test_top_k_over_the_catalogue_with_seen_removed():
  metrics = evaluation.evaluate_retrieval(
      FakeModel(), eval_users=np.array(['u1', 'u1', 'u2']), eval_items=np.array(['b', 'c', 'd']),
      catalogue=ITEMS, seen={'u1': {'a'}}, ks=(1, 2))
  # u1 ranks a > b > d > c; u2 ranks c > d > b > a.
  assert metrics['top_1'] == pytest.approx(0.0)
  assert metrics['top_2'] == pytest.approx(2 / 3)  # b (2nd for u1) and d (2nd for u2)
  assert metrics['eval_interactions'] == 3 and metrics['eval_users'] == 2


class TimedModel(FakeModel):
  """Adds embed_users_at: before time 100 u1 looks like u2."""

  def __init__(self):
    super().__init__()

    def at(user_id, request_time):
      return {'embeddings': tf.constant(
          [VECTORS['u2' if t < 100 else u.decode()] for u, t in
           zip(user_id.numpy(), request_time.numpy())], tf.float32)}
    self.signatures['embed_users_at'] = at


def test_each_row_is_scored_as_requested_at_its_time():
  users, items = np.array(['u1', 'u1']), np.array(['a', 'c'])
  timed = evaluation.evaluate_retrieval(TimedModel(), users, items, ITEMS, {}, ks=(1,),
                                        eval_times=np.array([200, 50]))
  assert timed['top_1'] == 1.0  # a at 200 (u1's vector), c at 50 (u2's)
  assert timed['eval_users'] == 1
  # Without times, or for an export without embed_users_at, every row is requested now.
  assert evaluation.evaluate_retrieval(TimedModel(), users, items, ITEMS, {},
                                       ks=(1,))['top_1'] == 0.5
  assert evaluation.evaluate_retrieval(FakeModel(), users, items, ITEMS, {}, ks=(1,),
                                       eval_times=np.array([200, 50]))['top_1'] == 0.5


def test_seen_items_are_removed_for_unseen_metrics():
  metrics = evaluation.evaluate_retrieval(
      FakeModel(), eval_users=np.array(['u1']), eval_items=np.array(['b']),
      catalogue=ITEMS, seen={'u1': {'a'}}, ks=(10, 100))
  assert metrics['top_10_unseen'] == 1.0


def test_eval_items_outside_the_catalogue_are_an_error():
  with pytest.raises(ValueError, match='not in the catalogue'):
    evaluation.evaluate_retrieval(FakeModel(), np.array(['u1']), np.array(['zz']), ITEMS, {})


def test_max_users_samples_eval_users():
  users = np.array(['u1', 'u2'] * 5)
  rows = evaluation.sample_users(users, 1)
  assert rows.sum() == 5 and len(set(users[rows])) == 1
  assert evaluation.sample_users(users, 0).all() and evaluation.sample_users(users, 2).all()


def test_returning_and_new_users_are_scored_apart():
  # u1 is known from train (seen a); u3 is new: no vector (zeros) -> every item ties.
  metrics = evaluation.evaluate_retrieval(
      FakeModel(), eval_users=np.array(['u1', 'u1', 'u3']), eval_items=np.array(['b', 'c', 'a']),
      catalogue=ITEMS, seen={'u1': {'a'}}, ks=(10, 100))
  assert metrics['eval_interactions_returning'] == 2 and metrics['eval_interactions_new'] == 1
  assert metrics['top_10_unseen_returning'] == 1.0 and metrics['top_10_unseen_new'] == 1.0


def test_recent_popularity_list_on_the_same_rows():
  day = 86400
  # Items a and b were popular long ago, c lately: the window chosen inside train puts c
  # first, where the all-time list has it third.
  old = [('o%d' % n, 'a', n) for n in range(40)] + [('p%d' % n, 'b', n) for n in range(30)]
  lately = [('u%d' % n, 'c', 100 * day + n) for n in range(20)] + [('u99', 'b', 100 * day)]
  users, items, times = (np.array(v) for v in zip(*(old + lately)))
  train = {'user_id': users, 'item_id': items, 'timestamp': times.astype(np.int64)}
  seen = evaluation.seen_items(users, items, among=np.array(['new1', 'u0']))
  assert seen == {'u0': {'c'}}  # only the eval users' items are kept
  found = evaluation.recent_popularity(np.array(['new1', 'u0']), np.array(['c', 'd']), ITEMS,
                                       seen, train, ks=(1, 2))
  assert found['window_days'] is not None  # not "all"
  assert found['top_1_unseen_new'] == 1.0  # c first for a new user
  assert found['top_1_unseen_returning'] == 0.0  # d after b for u0 (c removed)
  assert found['top_2_unseen'] == 0.5


def test_the_gate_requires_beating_recent_popularity():
  metrics = {'top_100': 0.3, 'top_100_unseen': 0.40}
  assert evaluation.decide_blessing(metrics, None, 0.2, 0.02, {'top_100_unseen': 0.39})['blessed']
  lost = evaluation.decide_blessing(metrics, None, 0.2, 0.02, {'top_100_unseen': 0.40})
  assert not lost['blessed'] and 'recent-popularity list' in lost['reasons'][0]
  assert evaluation.decide_blessing(metrics, None, 0.2, 0.02, None)['blessed']


def test_blessing_rules():
  assert evaluation.decide_blessing({'top_100': 0.3}, None, 0.2, 0.02)['blessed']
  low = evaluation.decide_blessing({'top_100': 0.1}, None, 0.2, 0.02)
  assert not low['blessed'] and 'threshold' in low['reasons'][0]
  worse = evaluation.decide_blessing({'top_100': 0.30}, {'top_100': 0.35}, 0.2, 0.02)
  assert not worse['blessed'] and 'below the blessed model' in worse['reasons'][0]
  assert evaluation.decide_blessing({'top_100': 0.34}, {'top_100': 0.35}, 0.2, 0.02)['blessed']


def test_anomaly_gate_reads_and_formats_anomalies(tmp_path):
  from tensorflow_metadata.proto.v0 import anomalies_pb2
  anomalies = anomalies_pb2.Anomalies()
  info = anomalies.anomaly_info['rating']
  info.short_description = 'Unexpected data type'
  info.description = 'Expected data of type: FLOAT but got BYTES'
  os.makedirs(tmp_path / 'Split-train')
  (tmp_path / 'Split-train' / 'SchemaDiff.pb').write_bytes(anomalies.SerializeToString())
  os.makedirs(tmp_path / 'Split-eval')
  (tmp_path / 'Split-eval' / 'SchemaDiff.pb').write_bytes(
      anomalies_pb2.Anomalies().SerializeToString())
  found = gate.read_anomalies(str(tmp_path), ['train', 'eval'])
  assert list(found) == ['train']
  message = gate.format_anomalies(found)
  assert "split 'train', column 'rating': Unexpected data type" in message
