"""The fast tier's shared run (tiny_run: a MovieLens sample, one epoch): metrics.json, the
pushed models' signatures and the command-line tools on them. The sweeps, which train again,
are in the full tier. Runs on other data (synthetic columns, implicit feedback, spans) have
their own modules.
"""
import csv
import json
import os
import time

import numpy as np
import pytest
import tensorflow as tf

import local_runner
from pipeline import audience, recommend
from tests.helpers import MOVIELENS, load_model, run_artifact

def _latest(out, kind):
  return load_model(recommend.latest_version(os.path.join(out, 'serving'), kind))


def _time_split(data):
  """(cut, eval rows) of the ingestion's default split of the sample, recomputed: every
  interaction at or after the first timestamp of the latest 20% is eval."""
  with open(os.path.join(data, 'interactions.csv')) as f:
    times = np.array([int(r['timestamp']) for r in csv.DictReader(f)])
  ordered = np.sort(times)
  cut = int(ordered[int(len(times) * 0.8)])
  return cut, int(np.sum(times >= cut))


def test_run_succeeds_and_writes_metrics(tiny_run):
  out, data, n = tiny_run
  with open(os.path.join(out, 'metrics.json')) as f:
    metrics = json.load(f)
  assert metrics['status'] == 'succeeded'
  r, k = metrics['retrieval'], metrics['ranking']
  assert 0 <= r['top_10'] <= r['top_50'] <= r['top_100'] <= 1
  assert 0 <= r['top_10_unseen'] <= r['top_100_unseen'] <= 1
  assert r['top_100_unseen'] >= r['top_100']  # removing seen items can only help
  assert r['blessed'] is True and k['blessed'] is True  # the gates are opened in this run
  assert np.isfinite(k['rmse']) and k['rmse'] > 0
  cut, eval_rows = _time_split(data)
  assert metrics['eval_interactions'] == eval_rows and 0 < eval_rows < n
  assert metrics['split'] == {'split': 'time', 'eval_percent': 20, 'eval_from': cut,
                              'eval_from_utc': time.strftime('%Y-%m-%d %H:%M:%S',
                                                             time.gmtime(cut))}
  assert r['eval_interactions_returning'] + r['eval_interactions_new'] == eval_rows
  from pipeline import pipeline as P
  from tfx.types import standard_artifacts
  run = run_artifact(out, P.RETRIEVAL_TRAINER, 'model_run', standard_artifacts.ModelRun)
  with open(os.path.join(run.uri, 'recency.json')) as f:
    served = json.load(f)
  assert served['recency_weight'] == 0.2 and served['window_days'] in (3, 7, 14, 30, 60, 90,
                                                                       180, None)
  recent = r['recent_popularity']
  assert 0 <= recent['top_100_unseen'] <= 1 and recent['window_days'] in (3, 7, 14, 30, 60, 90,
                                                                           180, None)
  assert 0 <= metrics['feed']['hit_rate_at_10'] <= 1 and 0 <= metrics['feed']['ndcg_at_10'] <= 1
  for kind in ('retrieval', 'ranking', 'feed'):
    version = metrics['pushed'][kind]
    assert version and os.path.isfile(os.path.join(out, 'serving', kind, version,
                                                   'saved_model.pb'))


def _vocabulary(model_dir, name):
  with open(os.path.join(model_dir, 'assets', name)) as f:
    return {line.rstrip('\n') for line in f}


def test_the_pushed_models_are_the_refit_on_train_and_eval(tiny_run):
  """With the refit (the default) the models pushed learnt the eval window too: trained from
  the judged candidates on train + eval, with item rows for what only the eval window had,
  each carrying its candidate for the next run's gates."""
  out, data, _ = tiny_run
  from pipeline import pipeline as P
  from tfx.types import standard_artifacts
  with open(os.path.join(out, 'metrics.json')) as f:
    metrics = json.load(f)
  refit = metrics['refit']
  assert refit['seconds'] > 0
  cut, _ = _time_split(data)
  with open(os.path.join(data, 'interactions.csv')) as f:
    rows = list(csv.DictReader(f))
  train_items = {r['item_id'] for r in rows if int(r['timestamp']) < cut}
  eval_only = {r['item_id'] for r in rows if int(r['timestamp']) >= cut} - train_items
  assert eval_only  # the sample has items first seen in its eval window
  for kind, trainer, refit_node in (('retrieval', P.RETRIEVAL_TRAINER, P.RETRIEVAL_REFIT),
                                    ('ranking', P.RANKING_TRAINER, P.RANKING_REFIT)):
    candidate = run_artifact(out, trainer, 'model', standard_artifacts.Model)
    fitted = run_artifact(out, refit_node, 'model', standard_artifacts.Model)
    assert refit['models'][kind] == fitted.uri
    pushed = os.path.join(out, 'serving', kind, metrics['pushed'][kind])
    # What was pushed is the refit's export, byte for byte.
    with open(os.path.join(pushed, 'saved_model.pb'), 'rb') as f:
      with open(os.path.join(fitted.uri, 'Format-Serving', 'saved_model.pb'), 'rb') as g:
        assert f.read() == g.read()
    # The candidate travels inside the pushed refit, where the next run's gates find it.
    from core import served
    with open(os.path.join(pushed, served.CANDIDATE_DIR, 'saved_model.pb'), 'rb') as f:
      with open(os.path.join(candidate.uri, 'Format-Serving', 'saved_model.pb'), 'rb') as g:
        assert f.read() == g.read()
    before = _vocabulary(os.path.join(candidate.uri, 'Format-Serving'), 'item_id_vocab')
    after = _vocabulary(pushed, 'item_id_vocab')
    assert before == train_items and after == train_items | eval_only
    run = run_artifact(out, refit_node, 'model_run', standard_artifacts.ModelRun)
    with open(os.path.join(run.uri, 'warm_start.json')) as f:
      report = json.load(f)
    assert report['base_model'].startswith(candidate.uri) and report['copied'] > 0
  feed = run_artifact(out, P.FEED_BUILDER, 'model', standard_artifacts.Model)
  assert feed.get_string_custom_property('retrieval_model') == refit['models']['retrieval']


def test_retrieve_signature(tiny_run):
  out, _, _ = tiny_run
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


def test_rank_signature(tiny_run):
  out, _, _ = tiny_run
  model = _latest(out, 'ranking')
  result = model.signatures['rank'](user_id=tf.constant(['1', '1', 'nobody']),
                                    item_id=tf.constant(['1', '2', 'no-such-item']))
  rating = result['rating'].numpy()
  assert rating.shape == (3,) and rating.dtype == np.float32
  assert np.all(np.isfinite(rating)) and np.all((rating > 0) & (rating < 6))


def test_recommend_command_prints_titles(tiny_run, capsys):
  out, _, _ = tiny_run
  assert recommend.main(['--user', '1', '--output-dir', out, '--k', '5']) == 0
  printed = capsys.readouterr().out
  assert printed.startswith('Top 5 for user 1: from the model, over the user\'s own '
                            'interactions')
  assert printed.count('\n') == 7 and '(19' in printed  # MovieLens titles end in (year)
  # A request-time exclusion: the first item is left out, the others move up.
  first = printed.splitlines()[2].split()[1]
  assert recommend.main(['--user', '1', '--output-dir', out, '--k', '5',
                         '--exclude', first]) == 0
  after = capsys.readouterr().out.splitlines()[2:]
  assert [line.split()[1] for line in after][:4] == \
      [line.split()[1] for line in printed.splitlines()[3:]]


def test_recommend_without_models_is_a_clear_error(tmp_path, capsys):
  assert recommend.main(['--user', '1', '--output-dir', str(tmp_path)]) == 2
  assert 'no pushed retrieval model' in capsys.readouterr().err


@pytest.mark.parametrize('user', ['', 'x' * 10_000, 'José-ñ-用户-🙂'])
def test_odd_ids_get_an_answer(tiny_run, user):
  out, _, _ = tiny_run
  retrieval, ranking = _latest(out, 'retrieval'), _latest(out, 'ranking')
  found = retrieval.signatures['retrieve'](user_id=tf.constant([user]))
  assert found['item_ids'].shape == (1, 100)
  assert np.all(np.isfinite(found['scores'].numpy()))
  rating = ranking.signatures['rank'](user_id=tf.constant([user]), item_id=tf.constant([user]))
  assert np.isfinite(rating['rating'].numpy()).all()
  audience = retrieval.signatures['audience'](item_id=tf.constant([user]))
  assert np.isfinite(audience['scores'].numpy()).all()


def test_a_batch_of_ten_thousand_users(tiny_run):
  out, _, _ = tiny_run
  retrieval = _latest(out, 'retrieval')
  users = tf.constant([str(u % 1200) for u in range(10_000)])
  found = retrieval.signatures['retrieve'](user_id=users)
  assert found['item_ids'].shape == (10_000, 100)


def test_recommend_for_an_unknown_user_says_so(tiny_run, capsys):
  out, _, _ = tiny_run
  assert recommend.main(['--user', 'nobody-at-all', '--output-dir', out, '--k', '3']) == 0
  first = capsys.readouterr().out.splitlines()[0]
  assert first == ('Top 3 for user nobody-at-all: the most popular items: the user is unknown '
                   '(score: share of the training interactions)')
  assert recommend.main(['--user', '900', '--output-dir', out, '--k', '3']) == 0
  assert 'over the user\'s features only' in capsys.readouterr().out.splitlines()[0]
  # The same unknown user with two clicks given at request time: served by the model from
  # them, and neither clicked item comes back.
  assert recommend.main(['--user', 'nobody-at-all', '--output-dir', out, '--k', '5',
                         '--history', '50,181']) == 0
  printed = capsys.readouterr().out.splitlines()
  assert 'over the items given with --history' in printed[0]
  assert {line.split()[1] for line in printed[2:]}.isdisjoint({'50', '181'})


def test_a_users_latest_items_steer_the_pushed_feed(tiny_run):
  out, _, _ = tiny_run
  feed, retrieval = _latest(out, 'feed'), _latest(out, 'retrieval')
  users = tf.constant(['1', '1', 'nobody-at-all'])
  history = tf.constant([['', ''], ['50', '181'], ['50', '181']])
  plain = retrieval.signatures['embed_users'](user_id=users)['embeddings'].numpy()
  moved = retrieval.signatures['embed_users_with_history'](
      user_id=users, history_item_ids=history)['embeddings'].numpy()
  np.testing.assert_allclose(moved[0], plain[0], rtol=1e-6)
  assert not np.allclose(moved[1], plain[1])
  found = feed.signatures['recommend_with_history'](user_id=users, history_item_ids=history)
  lists = [[i.decode() for i in row] for row in found['item_ids'].numpy()]
  assert lists[0] == [i.decode() for i in feed.signatures['recommend'](
      user_id=users[:1])['item_ids'].numpy()[0]]
  assert lists[1] != lists[0] and not {'50', '181'} & set(lists[1] + lists[2])
  assert [s.decode() for s in found['source'].numpy()] == ['model', 'model', 'history']


def test_every_pushed_model_answers_a_client_that_names_no_signature(tiny_run):
  from models.warmup import read_warmup_requests
  out, _, _ = tiny_run
  for kind, inputs, output in (
      ('retrieval', {'user_id': tf.constant(['1'])}, 'item_ids'),
      ('feed', {'user_id': tf.constant(['1'])}, 'item_ids'),
      ('ranking', {'examples': tf.constant([b''])}, 'rating')):
    path = recommend.latest_version(os.path.join(out, 'serving'), kind)
    model = load_model(path)
    assert output in model.signatures['serving_default'](**inputs), kind
    # TF Serving warms every signature a client may call before the version takes traffic.
    warmed = {r.model_spec.signature_name for r in read_warmup_requests(path)}
    assert warmed == set(model.signatures), (kind, warmed)


def test_audience_leaves_out_users_who_have_the_item(tiny_run, capsys):
  out, data, _ = tiny_run
  with open(os.path.join(data, 'interactions.csv')) as f:
    raters = {r['user_id'] for r in csv.DictReader(f) if r['item_id'] == '50'}
  assert raters
  assert audience.main(['--item', '50', '--n', '5', '--output-dir', out]) == 0
  printed = capsys.readouterr().out.splitlines()
  assert printed[0].startswith(f'Top 5 users for item 50: the retrieval model\'s audience, '
                               f'{len(raters)} users who already interacted with it left out')
  assert not {line.split()[1] for line in printed[2:]} & raters
  assert audience.main(['--item', '50', '--n', '943', '--output-dir', out,
                        '--include-seen']) == 0
  listed = {line.split()[1] for line in capsys.readouterr().out.splitlines()[2:]}
  assert raters <= listed


def test_segments_name_the_retrieval_version_they_came_from(tiny_run):
  out, _, _ = tiny_run
  with open(os.path.join(out, 'metrics.json')) as f:
    metrics = json.load(f)
  (version,) = os.listdir(os.path.join(out, 'serving', 'segments'))
  with open(os.path.join(out, 'serving', 'segments', version, 'segments.json')) as f:
    segments = json.load(f)
  assert segments['retrieval_version'] == metrics['pushed']['retrieval']
  assert segments['num_segments'] == 2  # the run's --segments 2


def test_audience_for_an_unknown_item_is_a_clear_error(tiny_run, capsys):
  out, _, _ = tiny_run
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


@pytest.mark.slow
def test_sweep_reproduces_the_pipelines_retrieval_figures(tiny_run, capsys):
  """benchmarks/sweep.py trains and exports as the Trainer does: same config, same data, same
  figures, within what separates two one-epoch models of the same seed on 60 users (the
  order in which tf.data delivers the batches is not fixed)."""
  from benchmarks import sweep
  out, _, _ = tiny_run
  with open(os.path.join(out, 'metrics.json')) as f:
    pipeline = json.load(f)['retrieval']
  args = ['--pipeline-root', os.path.join(out, 'pipeline'), '--stage', 'retrieval',
          '--no-default', '--variant', json.dumps({'epochs': 1, 'batch_size': 512})]
  assert sweep.main(args) == 0
  row = capsys.readouterr().out.strip().splitlines()[-1].split('|')
  top_10, top_100, top_10_unseen, top_100_unseen = (float(v) for v in row[2:6])
  assert abs(top_100 - pipeline['top_100']) < 0.1
  assert abs(top_100_unseen - pipeline['top_100_unseen']) < 0.1
  assert 0 < top_10 <= top_100 and top_10_unseen <= top_100_unseen


@pytest.mark.slow
def test_sweep_feed_column_reproduces_the_pipelines_feed(tiny_run, capsys):
  """--feed builds the feed from the variant and the run's other model as FeedModelBuilder
  does, so the ranking sweep at the run's settings lands near the run's feed figures."""
  from benchmarks import sweep
  out, _, _ = tiny_run
  with open(os.path.join(out, 'metrics.json')) as f:
    pipeline = json.load(f)
  args = ['--pipeline-root', os.path.join(out, 'pipeline'), '--stage', 'ranking',
          '--no-default', '--feed', '--variant', json.dumps({'epochs': 1})]
  assert sweep.main(args) == 0
  lines = capsys.readouterr().out.strip().splitlines()
  header = [c.strip() for c in lines[-3].split('|')]
  row = dict(zip(header, (c.strip() for c in lines[-1].split('|'))))
  assert abs(float(row['rmse']) - pipeline['ranking']['rmse']) < 0.05
  assert abs(float(row['hit_rate_at_10']) - pipeline['feed']['hit_rate_at_10']) < 0.05
  assert 0 < float(row['ndcg_at_10']) <= 1
