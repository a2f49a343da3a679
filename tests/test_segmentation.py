"""UserSegmenter: the library's pure functions (models/segments.py) on hand-made arrays,
publishing, the executor's blessing rule and the component's interface. The segments and audiences of a trained model on planted data are checked in
test_synthetic_run.py.
"""
import os

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from components.segmentation import executor
from core import features as F
from models import segments as X

# --- pure functions ---------------------------------------------------------------------


def test_lift_by_hand():
  # Group 0 has 10 rows, group 1 has 30; a row may carry several values.
  counts = np.array([[6, 4, 0], [6, 3, 27]])
  totals = np.array([10, 30])
  top = X.lift(counts, totals, ['a', 'b', 'c'], min_count=1)
  # P(b|0) = 0.4, P(b) = 7/40 -> 2.2857; P(a|0) = 0.6, P(a) = 12/40 -> 2.0.
  assert [(r['value'], r['lift']) for r in top[0]] == [('b', 2.286), ('a', 2.0)]
  assert top[0][1] == {'value': 'a', 'count': 6, 'share': 0.6, 'overall_share': 0.3,
                       'lift': 2.0}
  # Under-represented values (lift <= 1) are not reported.
  assert [(r['value'], r['lift']) for r in top[1]] == [('c', 1.333)]
  # b has only 4 rows in group 0: below min_count, its lift is noise.
  assert [r['value'] for r in X.lift(counts, totals, ['a', 'b', 'c'], min_count=5)[0]] == ['a']


def test_profile_splits_multi_values_and_averages_numbers():
  table = {'item__tags': np.array(['x|y', 'y', 'z'], dtype=object),
           'item__price': np.array([1.0, 3.0, None], dtype=object)}
  weights = np.array([[2, 0, 0],   # group 0: two interactions with the first item
                      [0, 1, 1]])
  out = X.profile(weights, table, ['item__tags', 'item__price'], min_count=1)
  # x: P(x|0) = 1, P(x) = 2/4; y: 1 vs 3/4; z: P(z|1) = 1/2, P(z) = 1/4.
  assert [(r['value'], r['lift']) for r in out[0]['item__tags']] == [('x', 2.0), ('y', 1.333)]
  assert [(r['value'], r['lift']) for r in out[1]['item__tags']] == [('z', 2.0)]
  # Numbers: weighted means over the rows where the value is present.
  assert out[0]['item__price'] == {'mean': 1.0, 'overall_mean': 1.6667}
  assert out[1]['item__price'] == {'mean': 3.0, 'overall_mean': 1.6667}


def test_describe_segments_small_table():
  users = {F.USER_ID: np.array(['u1', 'u2', 'u3'], dtype=object),
           F.user_feature('country'): np.array(['ES', 'ES', 'FR'], dtype=object),
           F.user_feature('age'): np.array([20.0, 30.0, 60.0], dtype=object)}
  items = {F.ITEM_ID: np.array(['i1', 'i2'], dtype=object),
           F.item_feature('genre'): np.array(['rock|pop', 'jazz'], dtype=object)}
  train_users = np.array(['u1', 'u1', 'u2', 'u3', 'u3', 'u3', 'stranger'])
  train_items = np.array(['i1', 'i2', 'i1', 'i2', 'i2', 'i2', 'i1'])
  out = X.describe_segments(users[F.USER_ID], np.array([0, 0, 1]), users, items,
                            train_users, train_items, min_count=1)
  assert [(s['size'], s['share'], s['train_interactions']) for s in out] == [
      (2, 0.6667, 3), (1, 0.3333, 3)]  # the unknown user's interaction is ignored
  assert [r['value'] for r in out[0]['item_features']['item__genre']] == ['pop', 'rock']
  assert out[0]['top_items_by_count'] == [{'item_id': 'i1', 'count': 2},
                                          {'item_id': 'i2', 'count': 1}]
  assert [r['item_id'] for r in out[1]['top_items_by_lift']] == ['i2']
  assert out[0]['user_features']['user__country'][0]['value'] == 'ES'
  assert out[1]['user_features']['user__age'] == {'mean': 60.0, 'overall_mean': 36.6667}


def _blobs(sizes, dim=16, spread=0.05, seed=0):
  rng = np.random.default_rng(seed)
  centres = rng.normal(size=(len(sizes), dim))
  x = np.concatenate([c + spread * rng.normal(size=(n, dim)) for c, n in zip(centres, sizes)])
  truth = np.repeat(np.arange(len(sizes)), sizes)
  return x / np.linalg.norm(x, axis=1, keepdims=True), truth


def test_silhouette_chooses_the_planted_number_of_blobs():
  x, truth = _blobs([30, 60, 45, 75, 40])
  k, scores = X.choose_k(x, seed=0)
  assert k == 5 and sorted(scores) == list(range(2, 13))
  assert scores[5] == max(scores.values())
  labels = X.cluster(x, k, seed=0)
  assert adjusted_rand_score(truth, labels) == 1.0
  assert np.bincount(labels).tolist() == [75, 60, 45, 40, 30]  # numbered by size


def test_silhouette_uses_a_sample(monkeypatch):
  x, _ = _blobs([40, 40, 40])
  seen = []
  real = X._kmeans
  monkeypatch.setattr(X, '_kmeans', lambda x, k, seed: seen.append(len(x)) or real(x, k, seed))
  assert X.choose_k(x, seed=1, sample=50)[0] == 3
  assert set(seen) == {50}


def test_publish_is_atomic_and_keeps_earlier_versions(tmp_path):
  push = tmp_path / 'segments'
  first = X.publish(str(push), {'segments.csv': 'user_id,segment\nu1,0\n', 'segments.json': '{}'},
                    now=1000)
  assert os.path.basename(first) == '1000'
  # Same second: the version is bumped, never overwritten.
  second = X.publish(str(push), {'segments.csv': 'user_id,segment\nu1,1\n'}, now=1000)
  assert os.path.basename(second) == '1001'
  # A failure half-way leaves neither a temp dir nor a partial version.
  with pytest.raises(OSError):
    X.publish(str(push), {'segments.csv': 'x', 'no/such/dir.json': 'y'}, now=1000)
  assert sorted(os.listdir(push)) == ['1000', '1001']
  with open(push / '1000' / 'segments.csv') as f:
    assert f.read() == 'user_id,segment\nu1,0\n'
  assert sorted(os.listdir(push / '1000')) == ['segments.csv', 'segments.json']
  # A clock behind the newest version still publishes above it.
  assert os.path.basename(X.publish(str(push), {'a': ''}, now=5)) == '1002'


def test_publishes_only_blessed_models_of_this_model():
  from tfx.types import standard_artifacts
  def blessing(blessed, model='/m/1'):
    b = standard_artifacts.ModelBlessing()
    b.set_int_custom_property('blessed', blessed)
    b.set_string_custom_property('current_model', model)
    return b
  assert executor._blessed([], '/m/1')[0]
  assert executor._blessed([blessing(1)], '/m/1')[0]
  assert not executor._blessed([blessing(0)], '/m/1')[0]
  assert not executor._blessed([blessing(1, '/m/2')], '/m/1')[0]


def test_component_declares_its_artifacts():
  from tfx import types
  from tfx.types import standard_artifacts
  from components.segmentation.component import UserSegmenter, UserSegments
  segmenter = UserSegmenter(examples=types.Channel(type=standard_artifacts.Examples),
                            model=types.Channel(type=standard_artifacts.Model))
  assert segmenter.outputs['segments'].type is UserSegments
  assert UserSegments.TYPE_NAME == 'woonkly.UserSegments'
  assert segmenter.exec_properties['num_segments'] == 0
