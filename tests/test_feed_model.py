"""FeedModelBuilder: metrics and masking by hand, the composed model on fakes, and Do() on a run.

The fakes are two tiny SavedModels with the retrieval and ranking signatures (retrieval order
a > b > ... > f, predicted rating the other way round, engagement in neither order), so every
feed can be worked out by hand. The run-based tests read what the shared run's
FeedModelBuilder and FeedServingCheck wrote, and load the feed in a fresh process, as TF
Serving would.
"""
import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from tfx.types import standard_artifacts

from models import feed as fx
from core.artifacts import embed
from models import warmup
from tests.helpers import REPO, load_model, run_artifact, run_artifacts

# --- Pure functions --------------------------------------------------------------------------


def test_search_window_caps_margin_and_catalogue():
  assert fx.search_window(100, max_seen=30, num_items=1000) == (100, 30, 130)
  assert fx.search_window(100, max_seen=5000, num_items=10_000, margin_cap=1000) == (
      100, 1000, 1100)
  assert fx.search_window(100, max_seen=30, num_items=50) == (50, 30, 50)
  assert fx.search_window(10, max_seen=0, num_items=50) == (10, 0, 10)


def test_seen_pairs_keys_and_most_items_seen():
  rows, positions = np.array(['u1', 'u2']), np.array(['a', 'b', 'c'])
  keys, max_seen = fx.seen_pairs(np.array(['u1', 'u1', 'u2', 'u1', 'zz', 'u2']),
                                 np.array(['b', 'a', 'c', 'b', 'a', 'not-in-catalogue']),
                                 rows, positions)
  assert keys.tolist() == [0, 1, 5]  # u1: a, b (once); u2: c -> 1 * 3 + 2
  assert max_seen == 2


def test_popular_items_ties_in_catalogue_order_and_padding():
  ids, shares = fx.popular_items(np.array(['c', 'b', 'c', 'x', 'b', 'a']),
                                 np.array(['a', 'b', 'c', 'd']), k=4)
  assert ids.tolist() == ['b', 'c', 'a', 'd']  # b and c twice, b first in the catalogue
  np.testing.assert_allclose(shares, [2 / 6, 2 / 6, 1 / 6, 0.0])


def test_seen_mask_marks_only_the_users_train_items():
  keys = np.append(np.array([0 * 4 + 1, 0 * 4 + 3, 1 * 4 + 0], np.int64), np.iinfo(np.int64).max)
  mask = fx.seen_mask(tf.constant([0, 1, -1], tf.int64),
                      tf.constant([[3, 2, 1, 0], [0, 1, 2, 3], [0, 1, 2, 3]], tf.int64),
                      tf.constant(keys), num_items=4).numpy()
  assert mask.tolist() == [[True, False, True, False],
                           [True, False, False, False],
                           [False, False, False, False]]  # row -1: no train items


def test_first_unseen_keeps_order_and_flags_short_rows():
  positions, valid = fx.first_unseen(
      tf.constant([[7, 8, 9, 10], [7, 8, 9, 10]]),
      tf.constant([[True, False, True, False], [True, True, True, False]]), n=2)
  assert positions.numpy()[0].tolist() == [8, 10]
  assert valid.numpy().tolist() == [[True, True], [True, False]]
  assert positions.numpy()[1, 0] == 10


def test_hit_rate_by_hand():
  feeds = {'u1': ['a', 'b', 'c'], 'u2': ['d']}
  # (u1, a) hit, (u1, z) miss, (u2, d) hit, (u3, a) no feed: miss.
  assert fx.hit_rate(feeds, ['u1', 'u1', 'u2', 'u3'], ['a', 'z', 'd', 'a']) == 0.5
  assert fx.hit_rate(feeds, ['u1'], ['c'], cutoff=2) == 0.0
  assert fx.hit_rate(feeds, [], []) == 0.0


def test_ndcg_by_hand():
  feeds = {'u1': ['x', 'a', 'b'], 'u2': ['c']}
  users, items, gains = ['u1', 'u1', 'u2', 'u2'], ['a', 'b', 'c', 'd'], [5.0, 3.0, 2.0, 4.0]
  # u1: DCG = 5/log2(3) + 3/log2(4); ideal = 5/log2(2) + 3/log2(3).
  u1 = (5 / math.log2(3) + 3 / 2) / (5 + 3 / math.log2(3))
  # u2: DCG = 2/log2(2); ideal = 4 + 2/log2(3).
  u2 = 2 / (4 + 2 / math.log2(3))
  assert fx.ndcg(feeds, users, items, gains) == pytest.approx((u1 + u2) / 2)
  # Cutoff 1: u1's first item is a miss; u2 gets 2 of an ideal 4.
  assert fx.ndcg(feeds, users, items, gains, cutoff=1) == pytest.approx((0 + 2 / 4) / 2)


def test_ndcg_repeats_and_users_without_gain():
  # An item rated twice counts with its highest rating, once; a repeated feed item once.
  assert fx.ndcg({'u': ['a', 'a']}, ['u', 'u'], ['a', 'a'], [2.0, 4.0]) == pytest.approx(1.0)
  # A user whose eval gains are all 0 is left out; a user without a feed counts as 0.
  assert fx.ndcg({'u': ['a']}, ['u', 'v', 'w'], ['a', 'b', 'c'],
                 [3.0, 0.0, 1.0]) == pytest.approx(0.5)


# --- The composed model on two hand-made SavedModels -----------------------------------------

CATALOGUE = np.array(['a', 'b', 'c', 'd', 'e', 'f'])


class FakeRetrieval(tf.Module):
  """Every user gets the query [1, 0]; item i scores 6 - position: a > b > ... > f. A
  history naming a catalogue item adds [0, 10]: then item i scores 6 + 9 x position, f first."""

  def __init__(self):
    super().__init__()
    self.query = tf.Variable([[1.0, 0.0]])
    self.rows = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
        tf.constant(CATALOGUE), tf.range(6, dtype=tf.int64)), default_value=-1)
    self.vectors = tf.Variable([[6.0 - j, float(j)] for j in range(6)] + [[0.0, 0.0]])
    self.audience_only = tf.Variable(tf.zeros([7, 3]))  # used by no signature the feed calls

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='user_id')])
  def embed_users(self, user_id):
    return {'embeddings': tf.tile(self.query, [tf.shape(user_id)[0], 1])}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='user_id'),
                                tf.TensorSpec([None, None], tf.string, name='history_item_ids')])
  def embed_users_with_history(self, user_id, history_item_ids):
    known = tf.reduce_any(self.rows.lookup(history_item_ids) >= 0, axis=1)
    return {'embeddings': self.embed_users(user_id)['embeddings']
            + tf.where(known[:, tf.newaxis], [[0.0, 10.0]], [[0.0, 0.0]])}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='item_id')])
  def embed_items(self, item_id):
    row = self.rows.lookup(item_id)
    return {'embeddings': tf.gather(self.vectors, tf.where(row < 0, tf.constant(6, tf.int64), row))}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='item_id')])
  def audience(self, item_id):
    return {'scores': tf.gather(self.audience_only, tf.zeros_like(item_id, tf.int32))}


ENGAGEMENT_LOGITS = {'a': 2, 'b': 0, 'c': 4, 'd': 1, 'e': 3, 'f': 5}


class FakeRanking(tf.Module):
  """Predicted rating (a=1 ... f=6, + 0.5) and engagement logit (ENGAGEMENT_LOGITS) read from
  a vocabulary file (an asset); ``outputs`` picks what ``rank`` returns."""

  def __init__(self, vocab_path, outputs=('rating', 'engagement', 'engagement_logit')):
    super().__init__()
    table = lambda column: tf.lookup.StaticHashTable(
        tf.lookup.TextFileInitializer(vocab_path, tf.string, 0, tf.int64, column,
                                      delimiter='\t'), default_value=0)
    self.table, self.logits = table(1), table(2)
    self.bias = tf.Variable(0.5)
    self.outputs = outputs

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='user_id'),
                                tf.TensorSpec([None], tf.string, name='item_id')])
  def rank(self, user_id, item_id):
    logit = tf.cast(self.logits.lookup(item_id), tf.float32)
    out = {'rating': tf.cast(self.table.lookup(item_id), tf.float32) + self.bias,
           'engagement': tf.sigmoid(logit), 'engagement_logit': logit}
    return {k: out[k] for k in self.outputs}


def _save_fakes(folder, outputs=('rating', 'engagement', 'engagement_logit'), history=True):
  os.makedirs(folder)
  vocab = os.path.join(folder, 'ratings.tsv')
  with open(vocab, 'w') as f:
    f.write(''.join(f'{item}\t{j + 1}\t{ENGAGEMENT_LOGITS[item]}\n'
                    for j, item in enumerate(CATALOGUE)))
  retrieval, ranking = FakeRetrieval(), FakeRanking(vocab, outputs)
  tf.saved_model.save(retrieval, os.path.join(folder, 'retrieval'), signatures={
      'embed_users': retrieval.embed_users.get_concrete_function(),
      'embed_items': retrieval.embed_items.get_concrete_function(),
      'audience': retrieval.audience.get_concrete_function(),
      **({'embed_users_with_history': retrieval.embed_users_with_history.get_concrete_function()}
         if history else {})})
  tf.saved_model.save(ranking, os.path.join(folder, 'ranking'),
                      signatures={'rank': ranking.rank.get_concrete_function()})
  os.remove(vocab)  # the ranking SavedModel holds its own copy
  return os.path.join(folder, 'retrieval'), os.path.join(folder, 'ranking')


FAKE_DATA = fx.FeedData(
    catalogue=CATALOGUE,
    users=np.array(['u1', 'u2', 'u3', 'u4']),  # u3: users split only
    train_users=np.array(['u1', 'u1', 'u2', 'u4', 'u4', 'u4', 'u4', 'u4']),
    train_items=np.array(['a', 'b', 'f', 'a', 'b', 'c', 'd', 'e']),
    eval_users=np.array(['u1', 'u2', 'zz']), eval_items=np.array(['e', 'a', 'a']),
    eval_gains=np.array([4.0, 5.0, 3.0]))


def test_fake_feed_removes_seen_ranks_and_falls_back(tmp_path):
  retrieval_dir, ranking_dir = _save_fakes(str(tmp_path / 'fakes'))
  export = str(tmp_path / 'feed')
  info = fx.export_feed_model(retrieval_dir, ranking_dir, export, FAKE_DATA, k=2, candidates=3,
                              order_by='rating')
  # u4 has seen 5 items: the whole catalogue is searched.
  assert (info['candidates'], info['margin'], info['search_k']) == (3, 5, 6)
  shutil.rmtree(tmp_path / 'fakes')  # the feed model must not need its sources
  moved = str(tmp_path / 'moved')
  shutil.copytree(export, moved)
  model = tf.saved_model.load(moved)
  out = model.signatures['recommend'](user_id=tf.constant(['u1', 'u2', 'u3', 'zz', 'u4']))
  ids = [[i.decode() for i in row] for row in out['item_ids'].numpy()]
  scores = out['scores'].numpy()
  assert out['scores'].dtype == tf.float32 and scores.shape == (5, 2)
  # u1 saw a, b: unseen window c, d, e re-ordered by rating (c=3.5, d=4.5, e=5.5).
  assert ids[0] == ['e', 'd'] and scores[0].tolist() == [5.5, 4.5]
  assert ids[1] == ['c', 'b']  # u2 saw f only: a, b, c
  assert ids[2] == ['c', 'b']  # u3 has no train items but a users row: the normal path
  # zz is unknown everywhere: the most popular train items (a and b, 2 of 8 each).
  assert ids[3] == ['a', 'b'] and scores[3] == pytest.approx([0.25, 0.25])
  # u4 saw all but f: f, then padding.
  assert ids[4] == ['f', ''] and scores[4][0] == 6.5 and scores[4][1] == -np.inf
  # Only what the signatures use came along: the audience-only variable did not.
  shapes = [shape for _, shape in tf.train.list_variables(os.path.join(moved, 'variables',
                                                                       'variables'))]
  assert [7, 3] not in shapes
  assert any(name.startswith('ratings.tsv') for name in os.listdir(os.path.join(moved, 'assets')))
  # Where each list comes from: u1 from its interactions, u3 from its features, zz unknown.
  assert [v.decode() for v in out['source'].numpy()] == [
      'model', 'model', 'features', 'popularity', 'model']
  # Warm-up requests for TF Serving, one for every signature a client may call: a few train
  # users, a new and an unknown one.
  requests = warmup.read_warmup_requests(moved)
  assert sorted(r.model_spec.signature_name for r in requests) == sorted(model.signatures)
  assert sorted(model.signatures) == ['recommend', 'recommend_excluding',
                                      'recommend_with_history', 'serving_default']
  for request in requests:
    users = [u.decode() for u in tf.make_ndarray(request.inputs['user_id'])]
    assert users == ['u1', 'u2', 'u4', 'u3', '__warmup_unknown_user__']
  out = model.signatures['serving_default'](user_id=tf.constant(['u1']))
  assert [i.decode() for i in out['item_ids'].numpy()[0]] == ['e', 'd']
  metrics = fx.evaluate_feed(moved, FAKE_DATA)
  assert metrics['hit_rate_at_10'] == pytest.approx(2 / 3)  # u1: e; zz: a; u2: a is not in
  assert metrics['eval_users'] == 3 and metrics['unknown_eval_users'] == 1


def _feed(tmp_path, **options):
  retrieval_dir, ranking_dir = _save_fakes(str(tmp_path / 'fakes'))
  retrieval, ranking = tf.saved_model.load(retrieval_dir), tf.saved_model.load(ranking_dir)
  module, info = fx.build_feed(retrieval, ranking, FAKE_DATA, k=2, candidates=3, **options)
  out = module.recommend(tf.constant(['u1', 'u2', 'zz', 'u4']))
  ids = [[i.decode() for i in row] for row in out['item_ids'].numpy()]
  return ids, out['scores'].numpy(), info


def test_fake_feed_orders_by_engagement_by_default(tmp_path):
  ids, scores, info = _feed(tmp_path, retrieval_weight=0.0)
  assert info['order_by'] == 'engagement' == fx.FEED_DEFAULTS.order_by
  # u1 saw a, b: window c, d, e; engagement logits c=4, d=1, e=3 (rating order: e, d).
  assert ids[0] == ['c', 'e'] and scores[0].tolist() == [4.0, 3.0]
  assert ids[1][0] == 'c' and ids[2] == ['a', 'b']  # u2: a, b, c; zz: popularity
  assert ids[3] == ['f', ''] and scores[3][1] == -np.inf


def test_fake_feed_blends_the_retrieval_score(tmp_path):
  # Retrieval scores c=4, d=3, e=2: 3 x retrieval + engagement gives c=16, d=10, e=9.
  ids, scores, info = _feed(tmp_path, retrieval_weight=3.0)
  assert info['retrieval_weight'] == 3.0
  assert ids[0] == ['c', 'd'] and scores[0].tolist() == [16.0, 10.0]
  # The retrieval weight is an engagement-order setting; ratings are not mixed with it.
  ids, scores, info = _feed(tmp_path / 'rating', order_by='rating', retrieval_weight=3.0)
  assert ids[0] == ['e', 'd'] and scores[0].tolist() == [5.5, 4.5]
  assert info['retrieval_weight'] == 0.0


def test_request_exclusions_leave_out_exactly_the_items_named(tmp_path):
  retrieval_dir, ranking_dir = _save_fakes(str(tmp_path / 'fakes'))
  retrieval, ranking = tf.saved_model.load(retrieval_dir), tf.saved_model.load(ranking_dir)
  data = fx.FeedData(catalogue=CATALOGUE, users=np.array(['u1', 'u2', 'u3']),
                     train_users=np.array(['u1', 'u1', 'u2']),
                     train_items=np.array(['a', 'b', 'f']))
  module, info = fx.build_feed(retrieval, ranking, data, k=2, candidates=3,
                               retrieval_weight=0.0)
  assert info['search_k'] == 5  # 3 candidates + u1's 2 items: f is outside the window
  ids = lambda out: [[i.decode() for i in row] for row in out['item_ids'].numpy()]
  plain = module.recommend(tf.constant(['u1', 'u2', 'zz']))
  # u1: window c, d, e by engagement (c=4, e=3); u2: a, b, c; zz: popular a, b (then f).
  assert ids(plain) == [['c', 'e'], ['c', 'a'], ['a', 'b']]
  # Rows of different lengths padded with '', a repeat, an id outside the catalogue.
  out = module.recommend_excluding(
      tf.constant(['u1', 'u2', 'zz']),
      tf.constant([['c', '', 'c', 'nope'], ['', '', '', ''], ['a', '', '', '']]))
  # u1 without c: the search reaches past its window to f (d=1, e=3, f=5): f, e.
  assert ids(out) == [['f', 'e'], ['c', 'a'], ['b', 'f']]
  assert np.all(np.isfinite(out['scores'].numpy()))
  # Thousands of ids, nearly the whole catalogue among them: k stays k while items remain.
  many = ['x%d' % n for n in range(3000)] + ['a', 'b', 'c', 'd']
  out = module.recommend_excluding(tf.constant(['u2', 'zz']), tf.constant([many, many]))
  assert ids(out) == [['e', ''], ['f', 'e']]
  assert out['scores'].numpy()[0][1] == -np.inf


@pytest.mark.parametrize('history', [True, False])
def test_a_requests_history_moves_the_query_and_is_left_out(tmp_path, history):
  retrieval_dir, ranking_dir = _save_fakes(str(tmp_path / 'fakes'), history=history)
  retrieval, ranking = tf.saved_model.load(retrieval_dir), tf.saved_model.load(ranking_dir)
  module, _ = fx.build_feed(retrieval, ranking, FAKE_DATA, k=2, candidates=2,
                            retrieval_weight=0.0)
  ids = lambda out: [[i.decode() for i in row] for row in out['item_ids'].numpy()]
  users = tf.constant(['u1', 'u1', 'zz', 'zz'])
  out = module.recommend_with_history(
      users, tf.constant([['d', ''], ['', ''], ['a', 'nope'], ['nope', '']]))
  sources = [v.decode() for v in out['source'].numpy()]
  # With no known item in the history, the feed is recommend's: u1 (saw a, b) gets the
  # window c, d by engagement (c=4, d=1); zz, unknown everywhere, the most popular a, b.
  assert ids(out)[1] == ['c', 'd'] and ids(out)[3] == ['a', 'b']
  if history:
    # u1 clicked d since the push: the query turns to f > e > d; window f, e (f=5, e=3).
    # zz clicked a: served by the model from that click (window f, e), a left out.
    assert ids(out)[0] == ['f', 'e'] and ids(out)[2] == ['f', 'e']
    assert sources == ['model', 'model', 'history', 'popularity']
  else:
    # An export without the history signature: the history is only left out.
    assert ids(out)[0] == ['c', 'e'] and ids(out)[2] == ['b', 'c']
    assert sources == ['model', 'model', 'popularity', 'popularity']


def test_feed_needs_the_output_it_orders_by(tmp_path):
  retrieval_dir, ranking_dir = _save_fakes(str(tmp_path / 'implicit'),
                                           outputs=('engagement', 'engagement_logit'))
  retrieval, ranking = tf.saved_model.load(retrieval_dir), tf.saved_model.load(ranking_dir)
  with pytest.raises(ValueError, match="needs the ranking model's rank signature"):
    fx.build_feed(retrieval, ranking, FAKE_DATA, k=2, candidates=3, order_by='rating')
  module, _ = fx.build_feed(retrieval, ranking, FAKE_DATA, k=2, candidates=3,
                            retrieval_weight=0.0)  # implicit: the engagement order works
  assert module.recommend(tf.constant(['u1']))['item_ids'].numpy()[0].tolist() == [b'c', b'e']
  with pytest.raises(ValueError, match='unknown order_by'):
    fx.build_feed(retrieval, ranking, FAKE_DATA, k=2, candidates=3, order_by='clicks')


def test_warmup_writer_validates(tmp_path):
  with pytest.raises(ValueError, match='saved_model.pb'):
    warmup.write_warmup_requests(str(tmp_path), 'recommend', {'user_id': np.array(['1'])})
  (tmp_path / 'saved_model.pb').write_bytes(b'')
  with pytest.raises(ValueError, match='batch sizes'):
    warmup.write_warmup_requests(str(tmp_path), 'rank', {'user_id': np.array(['1']),
                                                         'item_id': np.array(['1', '2'])})
  path = warmup.write_warmup_requests(str(tmp_path), 'rank', {
      'user_id': np.array(['1', '2']), 'item_id': np.array(['3', '4'])}, num=3)
  assert path.endswith(os.path.join('assets.extra', 'tf_serving_warmup_requests'))
  requests = warmup.read_warmup_requests(str(tmp_path))
  assert len(requests) == 3 and sorted(requests[0].inputs) == ['item_id', 'user_id']


# --- The feed model of a pipeline run --------------------------------------------------------


@pytest.fixture(scope='module')
def built_feed(tiny_run):
  """The shared run's FeedModelBuilder inputs and outputs, as tfx Artifacts."""
  found = run_artifacts(tiny_run[0])
  inputs = {k: [found[k]] for k in ('examples', 'retrieval_model', 'ranking_model',
                                     'retrieval_blessing', 'ranking_blessing')}
  from pipeline import pipeline as P
  outputs = {'model': [found['feed_model']], 'evaluation': [found['feed_evaluation']],
             'blessing': [found['feed_blessing']],
             'candidate': [run_artifact(tiny_run[0], P.FEED_BUILDER, 'candidate',
                                        standard_artifacts.Model)]}
  return inputs, outputs


def _export(outputs, key):
  return os.path.join(outputs[key][0].uri, 'Format-Serving')


def test_do_writes_model_metrics_and_blessing(built_feed, tiny_run):
  inputs, outputs = built_feed
  for key in ('model', 'candidate'):
    assert os.path.exists(os.path.join(_export(outputs, key), 'saved_model.pb'))
    assert os.path.exists(warmup.warmup_path(_export(outputs, key)))
  with open(os.path.join(outputs['evaluation'][0].uri, fx.METRICS_FILE)) as f:
    metrics = json.load(f)
  data = fx.read_feed_data(inputs['examples'])
  # The candidate (scored) leaves out the train split; the feed to push, every split.
  pairs = lambda users, items: len(set(zip(users.tolist(), items.tolist())))
  assert metrics['excluded_pairs'] == pairs(data.train_users, data.train_items)
  assert metrics['served']['excluded_pairs'] == pairs(
      np.concatenate([data.train_users, data.eval_users]),
      np.concatenate([data.train_items, data.eval_items]))
  assert metrics['served']['carried_from'] is None  # the first push of this output folder
  assert 0 <= metrics['hit_rate_at_10'] <= 1 and 0 <= metrics['ndcg_at_10'] <= 1
  assert metrics['eval_users'] == len(set(data.eval_users.tolist()))
  assert metrics['eval_interactions'] == len(data.eval_users)
  assert metrics['search_k'] == metrics['candidates'] + metrics['margin']
  blessing = outputs['blessing'][0]
  assert blessing.get_int_custom_property('blessed') == 1
  assert os.path.exists(os.path.join(blessing.uri, 'BLESSED'))
  # The candidate is built from the judged models, the feed to push from their refit.
  assert outputs['candidate'][0].get_int_custom_property('retrieval_model_id') == \
      inputs['retrieval_model'][0].id
  from pipeline import pipeline as P
  for kind, node in (('retrieval', P.RETRIEVAL_REFIT), ('ranking', P.RANKING_REFIT)):
    refit = run_artifact(tiny_run[0], node, 'model', standard_artifacts.Model)
    assert outputs['model'][0].get_int_custom_property(f'{kind}_model_id') == refit.id


def test_feed_metrics_are_those_of_the_exported_model(built_feed):
  """feed_metrics.json is what evaluate_feed computes on the exported model, by hand."""
  inputs, outputs = built_feed
  with open(os.path.join(outputs['evaluation'][0].uri, fx.METRICS_FILE)) as f:
    metrics = json.load(f)
  data = fx.read_feed_data(inputs['examples'])
  model = load_model(_export(outputs, 'candidate'))
  feeds = fx.recommend_all(model, np.unique(data.eval_users))
  hits = sum(i in feeds[u][:10] for u, i in zip(data.eval_users, data.eval_items))
  assert metrics['hit_rate_at_10'] == pytest.approx(hits / len(data.eval_users))


def test_feed_matches_a_reference_built_from_the_two_models(built_feed):
  """Retrieve over the catalogue, drop train items, score the best 100 by engagement (and
  retrieval score), keep 10: by hand."""
  inputs, outputs = built_feed
  load = lambda artifact: load_model(os.path.join(artifact.uri, 'Format-Serving'))
  feed, retrieval, ranking = (load(outputs['candidate'][0]),
                              load(inputs['retrieval_model'][0]),
                              load(inputs['ranking_model'][0]))
  data = fx.read_feed_data([inputs['examples'][0]])
  items = embed(retrieval.signatures['embed_items'], data.catalogue)
  users = ['1', '900']  # a train user; a user with a users.csv row and no train interaction
  queries = retrieval.signatures['embed_users'](user_id=tf.constant(users))['embeddings'].numpy()
  out = feed.signatures['recommend'](user_id=tf.constant(users))
  for row, user in enumerate(users):
    scores = items @ queries[row]
    seen = np.isin(data.catalogue, data.train_items[data.train_users == user])
    scores[seen] = -np.inf
    order = np.argsort(-scores, kind='stable')[:100]
    candidates = data.catalogue[order]
    logit = ranking.signatures['rank'](user_id=tf.constant([user] * 100),
                                       item_id=tf.constant(candidates))['engagement_logit']
    expected = logit.numpy() + fx.FEED_DEFAULTS.retrieval_weight * scores[order]
    best = np.argsort(-expected, kind='stable')[:10]
    got = [i.decode() for i in out['item_ids'][row].numpy()]
    assert got == candidates[best].tolist()
    np.testing.assert_allclose(out['scores'][row].numpy(), expected[best], rtol=1e-4, atol=1e-4)


def test_the_feed_to_push_never_returns_what_a_user_has(built_feed):
  """Over every user of the run's data: no item of the user's train or eval interactions,
  no repeats, k items; the candidate differs only in leaving eval items in."""
  inputs, outputs = built_feed
  data = fx.read_feed_data(inputs['examples'])
  users = np.unique(np.concatenate([data.train_users, data.eval_users]))
  has = {}
  for u, i in zip(np.concatenate([data.train_users, data.eval_users]),
                  np.concatenate([data.train_items, data.eval_items])):
    has.setdefault(u, set()).add(i)
  served = fx.recommend_all(load_model(_export(outputs, 'model')), users)
  assert all(len(served[u]) == 10 == len(set(served[u])) for u in users)
  assert sum(len(set(served[u]) & has[u]) for u in users) == 0
  candidate = fx.recommend_all(load_model(_export(outputs, 'candidate')), users)
  eval_has = {u: set(data.eval_items[data.eval_users == u].tolist()) for u in users}
  # The candidate does return eval items (that is what its hit rate counts).
  assert sum(len(set(candidate[u]) & eval_has[u]) for u in users) > 0


FRESH_CHECK = r'''
import json, os, sys
os.environ['TF_USE_LEGACY_KERAS'] = '1'
import tensorflow as tf
from components.serving_check.probe import unregistered_ops
export = sys.argv[1]
model = tf.saved_model.load(export)
fn = model.signatures['recommend']
_, inputs = fn.structured_input_signature
out = fn(user_id=tf.constant(['1', '900', 'nobody-at-all']))
print(json.dumps({
    'modules': sorted(m for m in sys.modules if m.split('.')[0] in
                      ('tensorflow_recommenders', 'scann', 'tensorflow_transform')),
    'inputs': {k: [v.dtype.name, v.shape.as_list()] for k, v in inputs.items()},
    'outputs': {k: [v.dtype.name, v.shape.as_list()] for k, v in fn.structured_outputs.items()},
    'unregistered_ops': unregistered_ops(export),
    'item_ids': [[i.decode() for i in row] for row in out['item_ids'].numpy()],
    'scores': out['scores'].numpy().tolist()}))
'''


def test_feed_model_serves_from_a_fresh_process(built_feed, tmp_path):
  inputs, outputs = built_feed
  export = os.path.join(outputs['model'][0].uri, 'Format-Serving')
  moved = str(tmp_path / 'feed')
  shutil.copytree(export, moved)  # nothing may point back at the trainers' folders
  assets = os.listdir(os.path.join(moved, 'assets'))
  assert 'item_id_vocab' in assets and 'user_id_vocab' in assets  # Transform's vocabularies
  env = dict(os.environ, TF_USE_LEGACY_KERAS='1', TF_CPP_MIN_LOG_LEVEL='3',
             PYTHONPATH=REPO)
  proc = subprocess.run([sys.executable, '-c', FRESH_CHECK, moved], capture_output=True,
                        text=True, env=env, timeout=300, cwd=REPO)
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads(proc.stdout.strip().splitlines()[-1])
  assert result['modules'] == []  # plain TensorFlow loads it
  assert result['unregistered_ops'] == []
  assert result['inputs'] == {'user_id': ['string', [None]]}
  assert result['outputs'] == {'item_ids': ['string', [None, 10]],
                               'scores': ['float32', [None, 10]], 'source': ['string', [None]]}
  ids, scores = result['item_ids'], np.array(result['scores'])
  assert np.all(np.isfinite(scores)) and np.all(np.diff(scores, axis=1) <= 1e-6)
  assert all(len(set(row)) == 10 and '' not in row for row in ids)
  data = fx.read_feed_data([inputs['examples'][0]])
  catalogue = set(data.catalogue.tolist())
  assert all(set(row) <= catalogue for row in ids)
  seen = set(data.train_items[data.train_users == '1'].tolist())
  seen |= set(data.eval_items[data.eval_users == '1'].tolist())
  assert len(seen) > 10 and not seen & set(ids[0])  # the known user gets nothing they have
  assert '900' not in set(data.train_users.tolist()) and '900' in set(data.users.tolist())
  assert ids[1] != ids[2]  # the cold user is served from its features, not by popularity
  popular, shares = fx.popular_items(data.train_items, data.catalogue, 10)
  assert ids[2] == popular.tolist() and scores[2] == pytest.approx(shares)  # unknown user


def test_serving_check_blessed_the_feed_model(tiny_run):
  """The run's FeedServingCheck probed the feed in a fresh process and blessed it."""
  from components.serving_check import executor as sx
  from pipeline import pipeline as P
  blessing = run_artifact(tiny_run[0], P.FEED_CHECK, 'blessing',
                          standard_artifacts.ModelBlessing)
  with open(os.path.join(blessing.uri, sx.REPORT_FILE)) as f:
    report = json.load(f)
  assert blessing.get_int_custom_property('blessed') == 1, report
  names = {c['name'] for c in report['checks']}
  assert {'known_user:recommend', 'new_user:recommend', 'unknown_user:recommend',
          'batch_256:recommend', 'no_custom_ops', 'warmup_requests',
          'known_user:serving_default', 'known_user:recommend_excluding',
          'batch_256:recommend_excluding'} <= names
  # It checked the model that was pushed, not the candidate.
  assert report['model_dir'].startswith(run_artifact(
      tiny_run[0], P.FEED_BUILDER, 'model', standard_artifacts.Model).uri)


def test_component_interface():
  from tfx import types
  from components.feed_model.component import FeedModelBuilder
  channel = lambda t: types.Channel(type=t)
  common = dict(retrieval_model=channel(standard_artifacts.Model),
                ranking_model=channel(standard_artifacts.Model),
                examples=channel(standard_artifacts.Examples))
  builder = FeedModelBuilder(**common, ranking_blessing=channel(standard_artifacts.ModelBlessing))
  assert {k: c.type for k, c in builder.outputs.items()} == {
      'model': standard_artifacts.Model, 'candidate': standard_artifacts.Model,
      'evaluation': standard_artifacts.ModelEvaluation,
      'blessing': standard_artifacts.ModelBlessing}
  assert builder.exec_properties['k'] == 10 and builder.exec_properties['candidates'] == 100
  assert builder.exec_properties['order_by'] == 'engagement'
  with pytest.raises(ValueError, match='unknown order_by'):
    FeedModelBuilder(**common, order_by='clicks')
  with pytest.raises(ValueError, match='unknown index'):
    FeedModelBuilder(**common, index='faiss')
  with pytest.raises(ValueError, match='k'):
    FeedModelBuilder(**common, k=20, candidates=10)
