"""One pipeline run on synthetic data, standing for a social network's own tables: planted
user segments, numeric-looking ids, other feature columns, and implicit feedback (no rating
column: views and likes). The segments and audiences the model finds must match the planted
ones (the acceptance criteria of objective segmentation); the other columns and ids must go
through unchanged; the ranking stage learns and is gated on engagement alone.
"""
import csv
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from sklearn.metrics import adjusted_rand_score
from tfx.types import standard_artifacts as sa

from components.segmentation import executor
from core import features as F
from models import segments as X
from pipeline import pipeline as P
from tests.helpers import drop_column, run_artifact, tail

pytestmark = pytest.mark.slow

# The retrieval model separates the planted segments with its default hyper-parameters;
# only the Beam mode and the ranking epochs are cut to keep the run short.
FLAGS = ['--beam-mode', 'in_memory', '--ranking-epochs', '2', '--retrieval-epochs', '10']


@pytest.fixture(scope='module')
def synthetic_run(tmp_path_factory):
  import local_runner
  from pipeline import synthetic_data
  data = tmp_path_factory.mktemp('synthetic')
  synthetic_data.generate(str(data), users=600, items=300, interactions=15000, segments=4,
                          categories=8, seed=3, numeric_ids=True)
  drop_column(str(data / 'interactions.csv'), 'rating')
  out = tmp_path_factory.mktemp('synthetic_out')
  code = local_runner.main(['--data-dir', str(data), '--output-dir', str(out)] + FLAGS)
  if code != 0:
    pytest.fail(f'the synthetic run failed (exit code {code}):\n'
                + tail(os.path.join(str(out), 'run.log')), pytrace=False)
  with open(data / 'truth.json') as f:
    truth = json.load(f)
  return str(data), str(out), truth


def _metrics(out):
  with open(os.path.join(out, 'metrics.json')) as f:
    return json.load(f)


def test_other_feature_columns_and_numeric_ids_run_unchanged(synthetic_run):
  import tensorflow_transform as tft
  _, out, truth = synthetic_run
  assert all(u.isdigit() for u in truth['user_segment'])  # ids that look like numbers
  assert all(_metrics(out)['pushed'][k] for k in ('retrieval', 'ranking', 'feed'))
  graph = run_artifact(out, 'Transform', 'transform_graph', sa.TransformGraph).uri
  spec = tft.TFTransformOutput(graph).transformed_feature_spec()
  for feature in ('item__category_xf', 'item__tags_xf', 'item__creator_id_xf',
                  'item__price_xf', 'user__country_xf', 'user__age_xf'):
    assert feature in spec, feature
  assert spec['item__creator_id_xf'].dtype == tf.int64  # *_id columns are categorical


def test_implicit_feedback_is_learned_and_gated_on_engagement(synthetic_run):
  """No rating column: the ranking stage learns engagement from sampled negatives, TFMA gates
  it on AUC against sampled non-interactions, and the feed is pushed."""
  _, out, _ = synthetic_run
  metrics = _metrics(out)
  ranking = metrics['ranking']
  assert 'rmse' not in ranking and ranking['auc'] > 0.6 and ranking['blessed'], ranking
  assert ranking['eval_examples'] == 5 * metrics['eval_interactions']  # 4 negatives each
  assert metrics['feed']['hit_rate_at_10'] > 0
  model = tf.saved_model.load(metrics['pushed_paths']['ranking'])
  user, item = next(iter(_first_interaction(out)))
  out_rank = model.signatures['rank'](user_id=tf.constant([user]), item_id=tf.constant([item]))
  assert 'rating' not in out_rank and 0 <= float(out_rank['engagement'][0]) <= 1


def _first_interaction(out):
  from models import feed as fx
  examples = run_artifact(out, P.EXAMPLE_GEN, 'examples', sa.Examples)
  data = fx.read_feed_data([examples])
  return [(data.train_users[0], data.train_items[0])]


def test_segments_recover_the_planted_ones(synthetic_run, tmp_path):
  from components.segmentation.component import UserSegments
  data, out, truth = synthetic_run
  examples = run_artifact(out, P.EXAMPLE_GEN, 'examples', sa.Examples)
  model = run_artifact(out, P.RETRIEVAL_TRAINER, 'model', sa.Model)
  blessing = run_artifact(out, P.RETRIEVAL_EVALUATOR, 'blessing', sa.ModelBlessing)
  segments = UserSegments()
  segments.uri = str(tmp_path / 'segments')
  push = tmp_path / 'published'
  executor.Executor().Do({'examples': [examples], 'model': [model], 'blessing': [blessing]},
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


def test_audiences_belong_to_the_segments_that_prefer_the_item(synthetic_run):
  import tensorflow as tf
  from pipeline import recommend
  data, out, truth = synthetic_run
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


def test_audience_command(synthetic_run, tmp_path, capsys):
  from pipeline import audience
  data, out, truth = synthetic_run
  item = truth['cold_items'][0]  # a new item still gets an audience
  assert audience.main(['--item', item, '--n', '5', '--output-dir', out]) == 0
  printed = capsys.readouterr().out.splitlines()
  assert printed[0].startswith(f'Top 5 users for item {item}: the retrieval model\'s '
                               'audience, 0 users who already interacted with it left out')
  assert len(printed) == 7
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
