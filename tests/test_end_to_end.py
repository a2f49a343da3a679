"""One local pipeline run on a MovieLens sample, then the pushed models and metrics.json.

Also a run on synthetic data with other feature columns and numeric-looking ids, which must
go through unchanged. Beam runs in-memory here to keep the suite fast; the multi-processing
mode is covered by the Beam test.
"""
import csv
import json
import os

import numpy as np
import pytest
import tensorflow as tf

import local_runner
from pipeline import audience, recommend, synthetic_data
from tests.conftest import FAST, MOVIELENS, movielens_sample

def _latest(out, kind):
  return tf.saved_model.load(recommend.latest_version(os.path.join(out, 'serving'), kind))


def test_run_succeeds_and_writes_metrics(movielens_run):
  code, out, n = movielens_run
  assert code == 0
  with open(os.path.join(out, 'metrics.json')) as f:
    metrics = json.load(f)
  r, k = metrics['retrieval'], metrics['ranking']
  assert 0 < r['top_10'] <= r['top_50'] <= r['top_100'] <= 1
  assert 0 <= r['top_10_unseen'] and r['top_100_unseen'] >= r['top_10_unseen']
  assert r['blessed'] is True and k['blessed'] is True
  assert 0.5 < k['rmse'] < 1.5
  # About 20% of the sample's interactions are in eval.
  assert 0.1 * n < metrics['eval_interactions'] < 0.3 * n
  assert 0 <= metrics['feed']['hit_rate_at_10'] <= 1 and 0 <= metrics['feed']['ndcg_at_10'] <= 1
  for kind in ('retrieval', 'ranking', 'feed'):
    version = metrics['pushed'][kind]
    assert version and os.path.isdir(os.path.join(out, 'serving', kind, version))


def test_retrieve_signature(movielens_run):
  _, out, _ = movielens_run
  model = _latest(out, 'retrieval')
  # A known user, a user known only from users.csv (cold start), and an unknown id.
  result = model.signatures['retrieve'](user_id=tf.constant(['1', '900', 'nobody']))
  ids, scores = result['item_ids'].numpy(), result['scores'].numpy()
  assert ids.shape == (3, 100) and ids.dtype == object
  assert scores.shape == (3, 100) and scores.dtype == np.float32
  assert np.all(np.isfinite(scores)) and np.all(np.diff(scores, axis=1) <= 1e-6)
  with open(os.path.join(MOVIELENS, 'items.csv')) as f:
    catalogue = {row['item_id'] for row in csv.DictReader(f)}
  assert {i.decode() for i in ids.ravel()} <= catalogue
  assert len(set(ids[0])) == 100  # no duplicates in a list
  assert not np.array_equal(ids[0], ids[1])  # the cold user is served from its features


def test_rank_signature(movielens_run):
  _, out, _ = movielens_run
  model = _latest(out, 'ranking')
  result = model.signatures['rank'](user_id=tf.constant(['1', '1', 'nobody']),
                                    item_id=tf.constant(['1', '2', 'no-such-item']))
  rating = result['rating'].numpy()
  assert rating.shape == (3,) and rating.dtype == np.float32
  assert np.all(np.isfinite(rating)) and np.all((rating > 0) & (rating < 6))


def test_recommend_command_prints_titles(movielens_run, capsys):
  _, out, _ = movielens_run
  assert recommend.main(['--user', '1', '--output-dir', out, '--k', '5']) == 0
  printed = capsys.readouterr().out
  assert 'Top 5 for user 1' in printed
  assert printed.count('\n') == 7 and '(19' in printed  # MovieLens titles end in (year)


def test_recommend_without_models_is_a_clear_error(tmp_path, capsys):
  assert recommend.main(['--user', '1', '--output-dir', str(tmp_path)]) == 2
  assert 'no pushed retrieval model' in capsys.readouterr().err


def test_other_feature_columns_and_numeric_ids_run_unchanged(tmp_path):
  data = tmp_path / 'synthetic'
  synthetic_data.generate(str(data), users=300, items=200, interactions=6000, segments=3,
                          categories=6, seed=1, numeric_ids=True)
  out = tmp_path / 'out'
  code = local_runner.main(['--data-dir', str(data), '--output-dir', str(out)] + FAST)
  assert code == 0
  with open(out / 'metrics.json') as f:
    metrics = json.load(f)
  assert metrics['pushed']['retrieval'] and metrics['pushed']['ranking']
  transform_graph = next((out / 'pipeline' / 'Transform' / 'transform_graph').iterdir())
  import tensorflow_transform as tft
  spec = tft.TFTransformOutput(str(transform_graph)).transformed_feature_spec()
  for feature in ('item__category_xf', 'item__tags_xf', 'item__creator_id_xf',
                  'item__price_xf', 'user__country_xf', 'user__age_xf'):
    assert feature in spec, feature
  assert spec['item__creator_id_xf'].dtype == tf.int64  # *_id columns are categorical


@pytest.mark.parametrize('user', ['', 'x' * 10_000, 'José-ñ-用户-🙂'])
def test_odd_ids_get_an_answer(movielens_run, user):
  _, out, _ = movielens_run
  retrieval, ranking = _latest(out, 'retrieval'), _latest(out, 'ranking')
  found = retrieval.signatures['retrieve'](user_id=tf.constant([user]))
  assert found['item_ids'].shape == (1, 100)
  assert np.all(np.isfinite(found['scores'].numpy()))
  rating = ranking.signatures['rank'](user_id=tf.constant([user]), item_id=tf.constant([user]))
  assert np.isfinite(rating['rating'].numpy()).all()
  audience = retrieval.signatures['audience'](item_id=tf.constant([user]))
  assert np.isfinite(audience['scores'].numpy()).all()


def test_a_batch_of_ten_thousand_users(movielens_run):
  _, out, _ = movielens_run
  retrieval = _latest(out, 'retrieval')
  users = tf.constant([str(u % 1200) for u in range(10_000)])
  found = retrieval.signatures['retrieve'](user_id=users)
  assert found['item_ids'].shape == (10_000, 100)


def test_recommend_for_an_unknown_user_says_so(movielens_run, capsys):
  _, out, _ = movielens_run
  assert recommend.main(['--user', 'nobody-at-all', '--output-dir', out, '--k', '3']) == 0
  captured = capsys.readouterr()
  assert "user 'nobody-at-all' is unknown" in captured.err and 'most popular' in captured.err
  assert 'Top 3 for user nobody-at-all' in captured.out


def test_audience_for_an_unknown_item_is_a_clear_error(movielens_run, capsys):
  _, out, _ = movielens_run
  assert audience.main(['--item', 'no-such-item', '--output-dir', out]) == 2
  assert "item 'no-such-item' is not in the catalogue" in capsys.readouterr().err


@pytest.mark.parametrize('tool,required', [(recommend, '--user'), (audience, '--item')])
def test_command_line_tools_reject_a_wrong_flag(tool, required, capsys):
  with pytest.raises(SystemExit) as exit_info:
    tool.main([required, '1', '--no-such-flag'])
  assert exit_info.value.code == 2
  assert 'unrecognized arguments: --no-such-flag' in capsys.readouterr().err


def test_local_runner_rejects_a_wrong_flag_and_a_bad_value(capsys):
  with pytest.raises(SystemExit) as exit_info:
    local_runner.parse_args(['--epochs', 'many'])
  assert exit_info.value.code == 2
  assert "argument --epochs: invalid int value: 'many'" in capsys.readouterr().err


def test_implicit_feedback_runs_end_to_end(tmp_path):
  """No rating column (views, likes): the ranking stage learns engagement from sampled
  negatives, TFMA gates it on AUC against sampled non-interactions, and the feed is pushed."""
  data = tmp_path / 'implicit'
  movielens_sample(str(data), users=100)
  with open(data / 'interactions.csv') as f:
    rows = list(csv.reader(f))
  keep = [i for i, c in enumerate(rows[0]) if c != 'rating']
  with open(data / 'interactions.csv', 'w', newline='') as f:
    csv.writer(f).writerows([[r[i] for i in keep] for r in rows])
  out = tmp_path / 'out'
  assert local_runner.main(['--data-dir', str(data), '--output-dir', str(out)] + FAST) == 0
  with open(out / 'metrics.json') as f:
    metrics = json.load(f)
  ranking = metrics['ranking']
  assert 'rmse' not in ranking and ranking['auc'] > 0.6 and ranking['blessed'], ranking
  assert ranking['eval_examples'] == 5 * metrics['eval_interactions']  # 4 negatives each
  assert all(metrics['pushed'][k] for k in ('retrieval', 'ranking', 'feed'))
  assert metrics['feed']['hit_rate_at_10'] > 0
  model = tf.saved_model.load(metrics['pushed_paths']['ranking'])
  out_rank = model.signatures['rank'](user_id=tf.constant(['1']), item_id=tf.constant(['50']))
  assert 'rating' not in out_rank and 0 <= float(out_rank['engagement'][0]) <= 1


def test_sweep_reproduces_the_pipelines_retrieval_figures(movielens_run, capsys):
  """benchmarks/sweep.py trains as the Trainer does: same config, same data, same figures."""
  from benchmarks import sweep
  code, out, _ = movielens_run
  with open(os.path.join(out, 'metrics.json')) as f:
    pipeline = json.load(f)['retrieval']
  args = ['--pipeline-root', os.path.join(out, 'pipeline'), '--stage', 'retrieval',
          '--no-default', '--variant', json.dumps({'epochs': 3, 'batch_size': 512})]
  assert sweep.main(args) == 0
  row = capsys.readouterr().out.strip().splitlines()[-1].split('|')
  top_10, top_100, top_10_unseen, top_100_unseen = (float(v) for v in row[2:6])
  assert abs(top_100 - pipeline['top_100']) < 0.05
  assert abs(top_100_unseen - pipeline['top_100_unseen']) < 0.05
  assert 0 < top_10 <= top_100 and top_10_unseen <= top_100_unseen


def test_sweep_feed_column_reproduces_the_pipelines_feed(movielens_run, capsys):
  """--feed builds the feed from the variant and the run's other model as FeedModelBuilder
  does, so the ranking sweep at the run's settings lands near the run's feed figures."""
  from benchmarks import sweep
  code, out, _ = movielens_run
  with open(os.path.join(out, 'metrics.json')) as f:
    pipeline = json.load(f)
  args = ['--pipeline-root', os.path.join(out, 'pipeline'), '--stage', 'ranking',
          '--no-default', '--feed', '--variant', json.dumps({'epochs': 3})]
  assert sweep.main(args) == 0
  lines = capsys.readouterr().out.strip().splitlines()
  header = [c.strip() for c in lines[-3].split('|')]
  row = dict(zip(header, (c.strip() for c in lines[-1].split('|'))))
  assert abs(float(row['rmse']) - pipeline['ranking']['rmse']) < 0.05
  assert abs(float(row['hit_rate_at_10']) - pipeline['feed']['hit_rate_at_10']) < 0.05
  assert 0 < float(row['ndcg_at_10']) <= 1
