"""UserSegmenter and pipeline.audience: pure functions on hand-made arrays, then one pipeline
run on synthetic data with planted segments, where the segments and audiences the model
finds must match the planted ones (the acceptance criteria of objective segmentation).
"""
import csv
import json
import os
import time

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from components.segmentation import executor as X
from pipeline import features as F

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
  assert X._blessed([], '/m/1')[0]
  assert X._blessed([blessing(1)], '/m/1')[0]
  assert not X._blessed([blessing(0)], '/m/1')[0]
  assert not X._blessed([blessing(1, '/m/2')], '/m/1')[0]


def test_component_declares_its_artifacts():
  from tfx import types
  from tfx.types import standard_artifacts
  from components.segmentation.component import UserSegmenter, UserSegments
  segmenter = UserSegmenter(examples=types.Channel(type=standard_artifacts.Examples),
                            model=types.Channel(type=standard_artifacts.Model))
  assert segmenter.outputs['segments'].type is UserSegments
  assert UserSegments.TYPE_NAME == 'woonkly.UserSegments'
  assert segmenter.exec_properties['num_segments'] == 0


# --- one pipeline run on planted segments -------------------------------------------------

# The retrieval model separates the planted segments with its default hyper-parameters;
# only the Beam mode and the ranking epochs are cut to keep the run short.
PLANTED_FLAGS = ['--beam-mode', 'in_memory', '--ranking-epochs', '2', '--retrieval-epochs', '10']


@pytest.fixture(scope='module')
def planted_run(tmp_path_factory):
  import local_runner
  from pipeline import synthetic_data
  data = tmp_path_factory.mktemp('planted')
  synthetic_data.generate(str(data), users=600, items=300, interactions=15000, segments=4,
                          categories=8, seed=3)
  out = tmp_path_factory.mktemp('planted_out')
  started = time.time()
  code = local_runner.main(['--data-dir', str(data), '--output-dir', str(out)] + PLANTED_FLAGS)
  assert code == 0
  print(f'planted pipeline run: {time.time() - started:.0f} s')
  with open(data / 'truth.json') as f:
    truth = json.load(f)
  return str(data), str(out), truth


def _custom(artifact, name):
  value = artifact.custom_properties.get(name)
  return getattr(value, value.WhichOneof('value')) if value is not None else None


def _run_artifacts(out):
  """The ExampleGen output, retrieval model and its blessing of the run, as tfx Artifacts."""
  from tfx.types import standard_artifacts
  from pipeline import pipeline as P
  from pipeline.run_summary import OutputPaths, read_run
  nodes = read_run(OutputPaths(out).metadata_path)
  found = lambda node, key: nodes[node]['outputs'][key][0]
  examples = standard_artifacts.Examples()
  examples.uri = found(P.EXAMPLE_GEN, 'examples').uri
  examples.split_names = found(P.EXAMPLE_GEN, 'examples').properties['split_names'].string_value
  model = standard_artifacts.Model()
  model.uri = found(P.RETRIEVAL_TRAINER, 'model').uri
  recorded = found(P.RETRIEVAL_EVALUATOR, 'blessing')
  blessing = standard_artifacts.ModelBlessing()
  blessing.uri = recorded.uri
  blessing.set_int_custom_property('blessed', _custom(recorded, 'blessed'))
  blessing.set_string_custom_property('current_model', _custom(recorded, 'current_model'))
  return examples, model, blessing


def test_segments_recover_the_planted_ones(planted_run, tmp_path):
  from components.segmentation.component import UserSegments
  data, out, truth = planted_run
  examples, model, blessing = _run_artifacts(out)
  segments = UserSegments()
  segments.uri = str(tmp_path / 'segments')
  push = tmp_path / 'published'
  X.Executor().Do({'examples': [examples], 'model': [model], 'blessing': [blessing]},
                  {'segments': [segments]},
                  {'num_segments': 4, 'push_dir': str(push), 'seed': 0})
  with open(os.path.join(segments.uri, X.SEGMENTS_CSV)) as f:
    rows = list(csv.DictReader(f))
  assert list(rows[0]) == [F.USER_ID, 'segment'] and len(rows) == 600
  found = {r[F.USER_ID]: int(r['segment']) for r in rows}
  users = sorted(found)
  ari = adjusted_rand_score([truth['user_segment'][u] for u in users],
                            [found[u] for u in users])
  print(f'ARI planted vs found: {ari:.3f}')
  assert ari >= 0.5
  with open(os.path.join(segments.uri, X.SEGMENTS_JSON)) as f:
    summary = json.load(f)
  assert summary['num_segments'] == 4 and len(summary['segments']) == 4
  # The categories a segment over-represents most are one planted segment's preferences.
  planted = [set(s['preferred_categories']) for s in truth['segments']]
  for s in summary['segments']:
    top = {r['value'] for r in s['item_features'][F.item_feature('category')][:2]}
    assert top in planted, (s['segment'], top)
  # Blessed by the run's RetrievalEvaluator, so published, whole.
  (version,) = os.listdir(push)
  assert sorted(os.listdir(push / version)) == [X.SEGMENTS_CSV, X.SEGMENTS_JSON]
  assert segments.get_int_custom_property('pushed') == 1


def test_audiences_belong_to_the_segments_that_prefer_the_item(planted_run):
  import tensorflow as tf
  from pipeline import recommend
  data, out, truth = planted_run
  model = tf.saved_model.load(recommend.latest_version(os.path.join(out, 'serving'),
                                                       'retrieval'))
  prefers = {s['segment']: set(s['preferred_categories']) for s in truth['segments']}
  with open(os.path.join(data, 'items.csv')) as f:
    items = list(csv.DictReader(f))
  with open(os.path.join(data, 'interactions.csv')) as f:
    popularity = {}
    for r in csv.DictReader(f):
      popularity[r[F.ITEM_ID]] = popularity.get(r[F.ITEM_ID], 0) + 1
  cold = set(truth['cold_items'])

  def precision(item_ids, category):
    users = model.signatures['audience'](item_id=tf.constant(item_ids))['user_ids'][:, :50]
    return float(np.mean([[category in prefers[truth['user_segment'][u.decode()]]
                           for u in row] for row in users.numpy()]))

  warm, new = {}, []
  for c in truth['categories']:
    in_c = [i[F.ITEM_ID] for i in items if i['category'] == c]
    top = sorted((i for i in in_c if i not in cold), key=lambda i: -popularity.get(i, 0))[:5]
    warm[c] = precision(top, c)
    new += [precision([i], c) for i in in_c if i in cold]
  print('audience precision (top 50) per category:', {c: round(p, 3) for c, p in warm.items()},
        f'new items: {np.mean(new):.3f}')
  assert all(p >= 0.7 for p in warm.values()), warm
  # Items nobody interacted with reach the right users through their features.
  assert np.mean(new) >= 0.7


def test_audience_command(planted_run, tmp_path, capsys):
  from pipeline import audience
  data, out, truth = planted_run
  item = truth['cold_items'][0]  # a new item still gets an audience
  assert audience.main(['--item', item, '--n', '5', '--output-dir', out]) == 0
  printed = capsys.readouterr().out.splitlines()
  assert printed[0] == f'Top 5 users for item {item}:' and len(printed) == 7
  assert all(line.split()[1] in truth['user_segment'] for line in printed[2:])

  target = tmp_path / 'users.csv'
  assert audience.main(['--item', item, '--output-dir', out, '--out', str(target)]) == 0
  assert 'Wrote 600 users' in capsys.readouterr().out  # default: everyone the model exports
  with open(target) as f:
    rows = list(csv.reader(f))
  assert rows[0] == ['user_id', 'score'] and len(rows) == 601
  scores = [float(r[1]) for r in rows[1:]]
  assert scores == sorted(scores, reverse=True)

  assert audience.main(['--item', item, '--n', '601', '--output-dir', out]) == 2
  assert 'at most 600' in capsys.readouterr().err
  assert audience.main(['--item', item, '--n', '0', '--output-dir', out]) == 2
  assert '--n must be at least 1' in capsys.readouterr().err
  assert audience.main(['--item', item, '--output-dir', str(tmp_path / 'empty')]) == 2
  assert 'no pushed retrieval model' in capsys.readouterr().err
