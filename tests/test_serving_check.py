"""ServingCheck: answer checks on arrays, the requests, blessings, and the probe on real models.

A hand-made Examples artifact (four users, four items) and tiny feed SavedModels — a good
one, one answering NaN scores, one answering the wrong shape — show what gets blessed; the
ranking model of the movielens_run fixture must pass its own contract.
"""
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from tfx.types import artifact_utils, standard_artifacts

from components.serving_check import component as sc
from components.serving_check import executor as sx
from components.serving_check import probe
from core import features as F

CATALOGUE = {'i1', 'i2', 'i3', 'i4', 'i5', 'i6'}


def _top(ids, scores):
  return {'item_ids': np.array(ids, dtype=object), 'scores': np.array(scores, np.float32)}


# --- Checks on answers -----------------------------------------------------------------------

def test_top_list_accepts_a_good_answer():
  assert probe.check_top_list(_top([[b'i1', b'i2'], [b'i3', b'i1']], [[2, 1], [5, 5]]), 2,
                              CATALOGUE) == []


@pytest.mark.parametrize('outputs, expected', [
    (_top([[b'i1', b'i2']], [[np.nan, 1]]), 'non-finite'),
    (_top([[b'i1', b'i2']], [[1, 2]]), 'not sorted'),
    (_top([[b'i1', b'zz']], [[2, 1]]), 'not in the catalogue'),
    (_top([[b'i1', b'i1']], [[2, 1]]), 'repeat'),
    (_top([b'i1'], [1]), 'shape'),
    (_top([[b'i1', b'i2'], [b'i1', b'i2']], [[2, 1], [2, 1]]), 'shape'),  # batch of 2, not 1
    ({'item_ids': np.array([[b'i1']], dtype=object)}, 'output keys'),
    ({'item_ids': np.array([[1]]), 'scores': np.array([[1.0]])}, 'dtype'),
])
def test_top_list_problems(outputs, expected):
  problems = probe.check_top_list(outputs, 1, CATALOGUE)
  assert problems and expected in ' '.join(problems)


def test_not_seen_ratings_and_vectors():
  ids = np.array([[b'i1', b'i2'], [b'i3', b'i4']], dtype=object)
  assert probe.check_not_seen(ids, ['u1', 'u2'], {'u1': ['i3'], 'u2': ['i1']}) == []
  assert 'items they already have' in probe.check_not_seen(ids, ['u1', 'u2'],
                                                           {'u2': ['i4']})[0]
  two = lambda *v: np.array(v, np.float32)
  rank = {'rating': two(4.0, 3.0), 'engagement': two(0.9, 0.1), 'engagement_logit': two(2, -2)}
  assert probe.check_ratings(rank, 2) == []
  implicit = {'engagement': two(0.9, 0.1), 'engagement_logit': two(2, -2)}
  assert probe.check_ratings(implicit, 2) == []
  assert probe.check_ratings({'rating': two(4.0, 3.0)}, 2)  # rank without engagement
  assert probe.check_ratings(dict(rank, rating=np.array([[4.0], [3.0]], np.float32)), 2)
  assert probe.check_ratings(dict(rank, rating=two(np.inf, 3.0)), 2)
  assert 'outside' in probe.check_ratings(dict(rank, engagement=two(1.5, 0.1)), 2)[0]
  default = probe.SERVING_DEFAULT_OUTPUTS
  assert probe.check_ratings({'rating': two(4.0, 3.0)}, 2, default) == []
  assert probe.check_ratings({'engagement': two(0.5, 0.5)}, 2, default) == []
  assert probe.check_ratings(rank, 2, default)  # TFMA reads a single output
  assert probe.check_vectors({'embeddings': np.ones([3, 4], np.float32)}, 3) == []
  assert probe.check_vectors({'embeddings': np.ones([3], np.float32)}, 3)


def test_parse_report_takes_the_last_json_line():
  stdout = 'log line\n{"not": "a report"}\n{"checks": [], "passed": true}\n'
  assert sx.parse_report(stdout) == {'checks': [], 'passed': True}
  assert sx.parse_report('Traceback ...\n') is None


def test_probe_spec_requests():
  spec = sx.probe_spec('ranking', np.array(['u1', 'u1', 'u2']), np.array(['i1', 'i2', 'i1']),
                       np.array(['i1', 'i2', 'i3']), np.array(['u1', 'u2', 'u3']), batch_size=8)
  names = [r['name'] for r in spec['requests']]
  assert names == ['known_user', 'new_user', 'unknown_user', 'batch_8', 'unknown_item']
  requests = {r['name']: r for r in spec['requests']}
  assert requests['known_user']['user_id'] == ['u1']  # the most active train user
  assert requests['new_user']['user_id'] == ['u3']
  assert requests['unknown_user']['user_id'] == [sx.UNKNOWN_USER]
  batch = requests['batch_8']
  assert len(batch['user_id']) == len(batch['item_id']) == 8
  assert {'u3', sx.UNKNOWN_USER} <= set(batch['user_id'])
  assert requests['unknown_item']['item_id'] == [sx.UNKNOWN_ITEM]
  feed = sx.probe_spec('feed', np.array(['u1', 'u1', 'u2']), np.array(['i1', 'i2', 'i1']),
                       np.array(['i1', 'i2', 'i3']), np.array(['u1', 'u2', 'u3']))
  assert feed['seen'] == {'u1': ['i1', 'i2'], 'u2': ['i1']}
  assert all('item_id' not in r for r in feed['requests'])
  with pytest.raises(ValueError, match='unknown kind'):
    sx.probe_spec('other', np.array(['u1']), np.array(['i1']), np.array(['i1']), np.array([]))


def _blessing(folder, blessed=None, file_only=False):
  artifact = standard_artifacts.ModelBlessing()
  artifact.uri = str(folder)
  os.makedirs(folder, exist_ok=True)
  if blessed is not None:
    open(os.path.join(folder, 'BLESSED' if blessed else 'NOT_BLESSED'), 'w').close()
    if not file_only:
      artifact.set_int_custom_property('blessed', int(blessed))
  return artifact


def test_upstream_blessings(tmp_path):
  good, bad = _blessing(tmp_path / 'good', True), _blessing(tmp_path / 'bad', False)
  bad.set_string_custom_property('reasons', 'top_100 too low')
  assert sx.is_blessed(good) and not sx.is_blessed(bad)
  assert sx.is_blessed(_blessing(tmp_path / 'file', True, file_only=True))
  assert not sx.is_blessed(_blessing(tmp_path / 'none'))
  assert sx.upstream_reasons({'model_blessing': [good], 'extra_blessing': []}) == []
  (reason,) = sx.upstream_reasons({'model_blessing': [good], 'extra_blessing': [bad]})
  assert 'extra_blessing' in reason and 'top_100 too low' in reason


def test_component_rejects_an_unknown_kind():
  from tfx import types
  channel = lambda t: types.Channel(type=t)
  with pytest.raises(ValueError, match='unknown kind'):
    sc.ServingCheck(model=channel(standard_artifacts.Model),
                    examples=channel(standard_artifacts.Examples), kind='feeds')
  check = sc.ServingCheck(model=channel(standard_artifacts.Model),
                          examples=channel(standard_artifacts.Examples), kind='feed',
                          model_blessing=channel(standard_artifacts.ModelBlessing))
  assert check.outputs['blessing'].type == standard_artifacts.ModelBlessing


# --- The executor on tiny models -------------------------------------------------------------

def _write_split(root, split, rows):
  folder = os.path.join(root, f'Split-{split}')
  os.makedirs(folder)
  options = tf.io.TFRecordOptions(compression_type='GZIP')
  with tf.io.TFRecordWriter(os.path.join(folder, 'data.gz'), options) as writer:
    for row in rows:
      feature = {}
      for key, value in row.items():
        if isinstance(value, str):
          feature[key] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
        else:
          feature[key] = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
      writer.write(tf.train.Example(features=tf.train.Features(feature=feature))
                   .SerializeToString())


@pytest.fixture(scope='module')
def tiny_examples(tmp_path_factory):
  """u1 saw i1 and i2, u2 saw i1 (and i3 in eval); u3 has a users row only; the catalogue
  is i1..i6."""
  root = str(tmp_path_factory.mktemp('examples'))
  train = [('u1', 'i1'), ('u1', 'i2'), ('u2', 'i1')]
  _write_split(root, F.TRAIN, [{F.USER_ID: u, F.ITEM_ID: i, F.RATING: 4.0} for u, i in train])
  _write_split(root, F.EVAL, [{F.USER_ID: 'u2', F.ITEM_ID: 'i3', F.RATING: 5.0}])
  _write_split(root, F.ITEMS, [{F.ITEM_ID: i} for i in sorted(CATALOGUE)])
  _write_split(root, F.USERS, [{F.USER_ID: u} for u in ('u1', 'u2', 'u3')])
  examples = standard_artifacts.Examples()
  examples.uri = root
  examples.split_names = artifact_utils.encode_split_names(list(F.SPLITS))
  return examples


class TinyFeed(tf.Module):
  """Everyone gets the first two of i4, i5, i6 (nobody has them) that the request does not
  leave out; ``fault`` breaks the answer: 'nan' scores, the wrong 'shape' ([batch] instead of
  [batch, 2]), 'seen' items (i1, i2) or request exclusions 'ignored'."""

  def __init__(self, fault=None):
    super().__init__()
    self.fault = fault
    self.scores = tf.Variable([2.0, 1.0, 0.5])

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='user_id')])
  def recommend(self, user_id):
    return self._answer(user_id, tf.fill([tf.shape(user_id)[0], 1], ''))

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='user_id'),
                                tf.TensorSpec([None, None], tf.string, name='exclude_item_ids')])
  def recommend_excluding(self, user_id, exclude_item_ids):
    if self.fault == 'ignored':
      exclude_item_ids = tf.fill([tf.shape(user_id)[0], 1], '')
    return self._answer(user_id, exclude_item_ids)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='user_id'),
                                tf.TensorSpec([None, None], tf.string, name='history_item_ids')])
  def recommend_with_history(self, user_id, history_item_ids):
    if self.fault == 'history ignored':
      history_item_ids = tf.fill([tf.shape(user_id)[0], 1], '')
    return self._answer(user_id, history_item_ids)

  def _answer(self, user_id, exclude_item_ids):
    batch = tf.shape(user_id)[0]
    items = tf.constant(['i4', 'i5', 'i6'])
    if self.fault == 'seen':
      items = tf.constant(['i1', 'i2', 'i6'])
    left_out = tf.reduce_any(tf.equal(items[tf.newaxis, :, tf.newaxis],
                                      exclude_item_ids[:, tf.newaxis, :]), axis=-1)
    key = tf.where(left_out, -np.inf, tf.tile(self.scores[tf.newaxis, :], [batch, 1]))
    scores, columns = tf.math.top_k(key, k=2)
    ids = tf.where(tf.math.is_finite(scores), tf.gather(items, columns), '')
    if self.fault == 'nan':
      scores = scores * tf.constant([np.nan, 1.0])
    if self.fault == 'shape':
      ids, scores = ids[:, 0], scores[:, 0]
    return {'item_ids': ids, 'scores': scores}


def _check(tmp_path, examples, model, kind='feed', **inputs):
  model_artifact = standard_artifacts.Model()
  model_artifact.uri = str(tmp_path / 'model')
  model_artifact.id = 7
  if isinstance(model, tf.Module):
    recommend = model.recommend.get_concrete_function()
    tf.saved_model.save(model, os.path.join(model_artifact.uri, 'Format-Serving'),
                        signatures={'recommend': recommend, 'serving_default': recommend,
                                    'recommend_excluding':
                                        model.recommend_excluding.get_concrete_function(),
                                    'recommend_with_history':
                                        model.recommend_with_history.get_concrete_function()})
  else:
    model_artifact.uri = model
  blessing = standard_artifacts.ModelBlessing()
  blessing.uri = str(tmp_path / 'blessing')
  sx.Executor().Do(dict({'model': [model_artifact], 'examples': [examples]}, **inputs),
                   {'blessing': [blessing]},
                   {'kind': kind, 'batch_size': 256, 'timeout_seconds': 300, 'load_scann': 0})
  with open(os.path.join(blessing.uri, sx.REPORT_FILE)) as f:
    report = json.load(f)
  return blessing, report


def test_a_good_model_is_blessed(tiny_examples, tmp_path):
  upstream = _blessing(tmp_path / 'upstream', True)
  blessing, report = _check(tmp_path, tiny_examples, TinyFeed(), model_blessing=[upstream])
  assert blessing.get_int_custom_property('blessed') == 1, report['reasons']
  assert blessing.get_int_custom_property('current_model_id') == 7
  assert os.path.exists(os.path.join(blessing.uri, 'BLESSED'))
  requests = ('known_user', 'new_user', 'unknown_user', 'batch_256')
  assert [c['name'] for c in report['checks']] == [
      'no_custom_ops', 'loads_in_fresh_process', 'signatures'] + [
          f'{r}:{s}' for r in requests
          for s in ('recommend', 'serving_default', 'recommend_excluding',
                    'recommend_with_history')] + [
              'same_list_width', 'warmup_requests']


@pytest.mark.parametrize('fault, reason', [('nan', 'non-finite scores'),
                                           ('shape', 'shape'),
                                           ('seen', 'items they already have'),
                                           ('ignored', 'returns excluded items'),
                                           ('history ignored', 'returns excluded items')])
def test_a_broken_model_is_not_blessed(tiny_examples, tmp_path, fault, reason):
  blessing, report = _check(tmp_path, tiny_examples, TinyFeed(fault))
  assert blessing.get_int_custom_property('blessed') == 0
  assert os.path.exists(os.path.join(blessing.uri, 'NOT_BLESSED'))
  assert reason in blessing.get_string_custom_property('reasons')
  failed = 'recommend_with_history' if fault == 'history ignored' else 'recommend'
  assert f'known_user:{failed}' in blessing.get_string_custom_property('reasons')


@pytest.mark.parametrize('node,expected', [
    ('RankingServingCheck', {'new_user:rank', 'unknown_user:serving_default', 'new_user:rank_at',
                             'unknown_item:rank', 'batch_256:rank'}),
    ('RetrievalServingCheck', {'known_user:retrieve', 'unknown_user:retrieve',
                               'batch_256:retrieve', 'known_user:embed_users_with_history',
                               'known_user:retrieve_at'}),
])
def test_the_run_models_passed_their_contracts(tiny_run, node, expected):
  """The shared run's trained models, probed by the run's own checks in a fresh process."""
  from tests.helpers import run_artifact
  blessing = run_artifact(tiny_run[0], node, 'blessing', standard_artifacts.ModelBlessing)
  with open(os.path.join(blessing.uri, sx.REPORT_FILE)) as f:
    report = json.load(f)
  assert blessing.get_int_custom_property('blessed') == 1, report['reasons']
  names = {c['name'] for c in report['checks']}
  assert expected <= names, names
  assert all(c['passed'] for c in report['checks'])
