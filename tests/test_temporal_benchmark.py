"""benchmarks.temporal on hand-made data: the split, the breakdown, the tuned baselines, the
targets and the scoring of a retrieval model through its signatures (no pipeline run)."""
import json
import os

import numpy as np
import pandas as pd
import pytest

from benchmarks import baselines, temporal
from core import recent_popularity as rp

DAY = rp.DAY


def _items(n):
  return pd.DataFrame({'item_id': [f'i{k}' for k in range(n)]})


def _frame(rows):
  return pd.DataFrame(rows, columns=['user_id', 'item_id', 'rating', 'timestamp'])


def test_time_split_puts_ties_at_the_cut_into_eval_and_keeps_the_bytes(tmp_path):
  # Ids with leading zeros, a rating written "4.0", an empty field: text must stay text.
  lines = ['user_id,item_id,rating,timestamp,note',
           '007,0042,4.0,100,', '8,9,3,500,x', '007,10,5,300,', '9,0042,1,500,',
           '10,11,2,200,a b', '8,12,4,500,', '11,13,5,400,']
  data = tmp_path / 'data'
  data.mkdir()
  (data / 'interactions.csv').write_text('\n'.join(lines) + '\n')
  (data / 'items.csv').write_text('item_id\n0042\n9\n10\n11\n12\n13\n')
  (data / 'users.csv').write_text('user_id\n007\n8\n9\n10\n11\n')

  cut = temporal.write_time_split(str(data), str(tmp_path / 'split'), eval_share=0.2)

  assert cut == rp.time_cut(np.array([100, 500, 300, 500, 200, 500, 400]), 0.2) == 500
  train = (tmp_path / 'split' / 'train' / 'interactions.csv').read_text().splitlines()
  eval_ = (tmp_path / 'split' / 'eval' / 'interactions.csv').read_text().splitlines()
  # Every row at the cut is eval, though 0.2 of 7 rows is one: ties go with the latest.
  assert eval_ == [lines[0], lines[2], lines[4], lines[6]]
  assert train == [lines[0], lines[1], lines[3], lines[5], lines[7]]
  for side in ('items.csv', 'users.csv'):
    assert (tmp_path / 'split' / side).read_bytes() == (data / side).read_bytes()


def test_breakdown_counts_returning_and_new_users_exactly():
  train = _frame([('a', 'i0', 4, 1), ('a', 'i1', 4, 2), ('b', 'i2', 4, 3)])
  eval_ = _frame([('a', 'i3', 4, 9), ('c', 'i0', 4, 9), ('c', 'i3', 4, 9), ('d', 'i1', 4, 9),
                  ('b', 'i4', 4, 9)])
  ev = temporal.eval_rows(train, eval_, _items(120))
  assert ev.returning.tolist() == [True, False, False, False, True]
  assert temporal.group_sizes(eval_, ev) == {'all': (5, 4), 'returning': (2, 2),
                                             'new': (3, 2)}
  assert [s.tolist() for s in ev.seen] == [[0, 1], [], [], [], [2]]

  ranks = np.array([3, 50, 150, 9, 120])
  assert temporal.breakdown(ranks, ev.returning) == pytest.approx({
      'top_10_unseen all': 2 / 5, 'top_10_unseen returning': 1 / 2,
      'top_10_unseen new': 1 / 3, 'top_100_unseen all': 3 / 5,
      'top_100_unseen returning': 1 / 2, 'top_100_unseen new': 2 / 3})


def _shifting_popularity():
  """Each day's hot items are the 20 ids from the day's number on: popularity drifts steadily,
  so the items of the eval days were hot only lately. 300 items, 6 interactions a day, by 60
  users, and in the eval days also by 30 users who arrive then (u60 on)."""
  rng = np.random.default_rng(0)
  rows = []
  for day in range(200):
    for n in range(6):
      user = f'u{rng.integers(60)}' if day < 160 or n < 3 else f'u{60 + rng.integers(30)}'
      rows.append((user, f'i{day + rng.integers(20)}', 4, day * DAY + n))
  frame = _frame(rows).drop_duplicates(['user_id', 'item_id'])
  timestamps = frame['timestamp'].to_numpy()
  cut = rp.time_cut(timestamps, 0.2)
  return frame[timestamps < cut], frame[timestamps >= cut], _items(300)


def test_the_recent_list_beats_the_all_time_list_when_popularity_shifts():
  train, eval_, items = _shifting_popularity()
  ev = temporal.eval_rows(train, eval_, items)
  assert ev.returning.any() and not ev.returning.all()
  rows = temporal.popularity_rows(train, ev)
  assert rows['recent']['chosen'] != 'all train'
  for metric in ('top_10_unseen', 'top_100_unseen'):
    for group in temporal.GROUPS:
      key = f'{metric} {group}'
      assert rows['recent'][key] > rows['popular'][key], key


def test_ranks_unseen_is_the_catalogue_rule_with_each_rows_items_removed():
  """The shared-list rank equals core.retrieval_metrics' rank over a full catalogue row with
  the earlier items masked (ties, repeated items and the target among them included), given
  per row or once per user."""
  from core.retrieval_metrics import rank_of_target
  rng = np.random.default_rng(3)
  n_items, n_rows, n_users = 50, 200, 20
  scores = rng.integers(0, 8, n_items).astype(np.float64)  # many ties
  target = rng.integers(0, n_items, n_rows)
  row_user = rng.integers(0, n_users, n_rows)
  seen_user = rng.integers(0, n_users, 300)
  seen_item = rng.integers(0, n_items, 300)  # some pairs repeat
  seen_user[:2], seen_item[:2] = row_user[0], target[0]  # a target among the user's items
  seen = [seen_item[seen_user == u] for u in row_user]
  excluded = np.zeros([n_rows, n_items], bool)
  for r, items in enumerate(seen):
    excluded[r, items[items != target[r]]] = True
  expected = rank_of_target(np.tile(scores, (n_rows, 1)), target, excluded)
  assert (rp.ranks_unseen(scores, target, seen) == expected).all()
  assert (rp.ranks_unseen_of_users(scores, target, row_user, seen_user, seen_item)
          == expected).all()
  assert (rp.ranks_unseen(scores, target, [np.zeros(0, int)] * n_rows)
          == rank_of_target(np.tile(scores, (n_rows, 1)), target)).all()


def _blocks(seed=0):
  """60 users in 4 taste blocks of 10 items over a 40-item catalogue, 10 interactions each."""
  rng = np.random.default_rng(seed)
  item = lambda u: rng.integers(10) + 10 * (u % 4) if rng.random() < 0.6 else rng.integers(40)
  rows = [(f'u{u}', f'i{item(u)}', 4, 1000 * (u % 5) + 100 * t + u)
          for u in range(60) for t in range(10)]
  frame = _frame(rows).drop_duplicates(['user_id', 'item_id']).reset_index(drop=True)
  timestamps = frame['timestamp'].to_numpy()
  cut = rp.time_cut(timestamps, 0.25)
  return frame[timestamps < cut], frame[timestamps >= cut], _items(40)


def test_ease_lambda_is_chosen_on_the_validation_cut_and_never_on_eval():
  train, eval_, items = _blocks()
  lambdas, k = (1.0, 10.0, 100.0), 10
  lam, shares = temporal.choose_ease_lambda(train, items, lambdas, k)

  # The same shares computed independently: EASE fitted on the train rows before the
  # validation cut, scored on the latest 20% of train.
  timestamps = train['timestamp'].to_numpy()
  cut = rp.time_cut(timestamps, 0.2)
  past, validation = train[timestamps < cut], train[timestamps >= cut]
  expected = {x: baselines.ease(past, validation, items, x)['top_10_unseen'] for x in lambdas}
  assert shares == pytest.approx(expected)
  assert lam == max(expected, key=lambda x: (expected[x], x))

  # An eval set made of exactly the pairs another λ ranks in its top 10 and the chosen one
  # does not: chosen on eval, λ would move to that other value.
  other = next(x for x in lambdas if x != lam)
  returning = train['user_id'].unique()
  pairs = _frame([(u, i, 4, 10 ** 6) for u in returning for i in items['item_id']])
  pairs = pairs[~pairs.set_index(['user_id', 'item_id']).index.isin(
      train.set_index(['user_id', 'item_id']).index)]
  ev = temporal.eval_rows(train, pairs, items)
  ranks = {x: temporal.matrix_ranks(
      lambda rows, b=baselines.ease_weights(ev.x, x): ev.x[ev.users[rows]] @ b, ev)
      for x in (lam, other)}
  adversarial = pairs[(ranks[other] < k) & (ranks[lam] >= k)]
  assert len(adversarial) > 10
  on_eval = {x: baselines.ease(train, adversarial, items, x)['top_10_unseen']
             for x in (lam, other)}
  assert on_eval[other] > on_eval[lam]

  chosen = [temporal.ease_row(train, items, temporal.eval_rows(train, e, items), lambdas, k)
            for e in (eval_, adversarial)]
  assert [c['chosen'] for c in chosen] == [f'λ={lam:g}'] * 2
  assert chosen[0]['validation'] == chosen[1]['validation']
  assert chosen[1]['top_10_unseen all'] == pytest.approx(on_eval[lam])


def _rows(returning, new, overall, rmse, feed=(0.07, 0.06)):
  return {'recent': {'top_100_unseen returning': 0.30, 'top_100_unseen new': 0.30,
                     'top_10_unseen returning': 0.06, 'top_10_unseen new': 0.05},
          'svdpp': {'rmse': 1.02},
          'retrieval': {'top_100_unseen returning': returning, 'top_100_unseen new': new,
                        'top_100_unseen all': overall},
          'ranking': {'rmse': rmse},
          'feed': {'top_10_unseen returning': feed[0], 'top_10_unseen new': feed[1]}}


def test_targets_report_a_miss_when_the_pipeline_row_is_below():
  met = [m for _, m in temporal.check_targets(_rows(0.34, 0.31, 0.32, 1.01))]
  assert met == [True] * 6
  # 0.32 < 1.10 x 0.30; 0.29 < 0.30; 0.305 < 0.31; 1.03 > 1.02; 0.065 < 1.10 x 0.06;
  # 0.049 < 0.05.
  met = [m for _, m in temporal.check_targets(_rows(0.32, 0.29, 0.305, 1.03, (0.065, 0.049)))]
  assert met == [False] * 6
  rows = _rows(0.34, 0.31, 0.32, 1.01)
  del rows['retrieval'], rows['ranking'], rows['feed']
  assert [m for _, m in temporal.check_targets(rows)] == [None] * 6
  text = temporal.report(dict(_rows(0.32, 0.31, 0.32, 1.01), popular={}),
                         {'all': (3, 2), 'returning': (1, 1), 'new': (2, 1)}, 0, 'abc')
  assert temporal.TARGETS in text
  assert '- returning users top_100_unseen vs 1.10 × the recent list: 0.3200 ≥ 0.3300: MISSED' \
      in text


def test_the_retrieval_model_is_scored_through_its_signatures(tmp_path):
  import tensorflow as tf
  # A retrieval export in miniature: users and items looked up in fixed embedding tables.
  users, items = ['a', 'b'], [f'i{k}' for k in range(4)]
  user_emb = np.array([[1., 0.], [0., 1.], [0.5, 0.5]], np.float32)  # last row: unknown users
  item_emb = np.array([[4., 0.], [3., 1.], [0., 2.], [1., 3.]], np.float32)

  class Model(tf.Module):

    def __init__(self):
      super().__init__()
      self.users = tf.lookup.StaticHashTable(
          tf.lookup.KeyValueTensorInitializer(users, [0, 1], value_dtype=tf.int64), 2)
      self.items = tf.lookup.StaticHashTable(
          tf.lookup.KeyValueTensorInitializer(items, list(range(4)), value_dtype=tf.int64), 0)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def embed_users(self, user_id):
      return {'embeddings': tf.gather(user_emb, self.users.lookup(user_id))}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def embed_items(self, item_id):
      return {'embeddings': tf.gather(item_emb, self.items.lookup(item_id))}

  model = Model()
  out = tmp_path / 'out'
  tf.saved_model.save(model, str(out / 'serving' / 'retrieval' / '5'), signatures={
      'embed_users': model.embed_users, 'embed_items': model.embed_items})
  (out / 'metrics.json').write_text(json.dumps({
      'ranking': {'rmse': 0.97}, 'feed': {'hit_rate_at_10': 0.2},
      'components': {'RetrievalTrainer': {'seconds': 10.0}, 'RankingTrainer': {'seconds': 7}}}))

  train = _frame([('a', 'i0', 4, 1), ('b', 'i3', 4, 2)])
  # a: scores 4, 3, 0, 1; i0 seen -> i1 is first. b: 0, 1, 2, 3; i3 seen -> i2 first, i1 third.
  # c (unknown): 2, 2, 1, 2 -> i3 ties i1 (ties against): rank 2.
  eval_ = _frame([('a', 'i1', 4, 9), ('b', 'i2', 4, 9), ('b', 'i1', 4, 9), ('c', 'i3', 4, 9)])
  ev = temporal.eval_rows(train, eval_, _items(4))
  assert temporal.retrieval_ranks(str(out / 'serving' / 'retrieval' / '5'), eval_,
                                  ev).tolist() == [0, 0, 1, 2]
  rows, metrics = temporal.pipeline_rows(str(out), eval_, ev)
  assert metrics['feed']['hit_rate_at_10'] == 0.2
  assert rows['ranking'] == {'rmse': 0.97, 'seconds': 7}
  assert rows['retrieval']['chosen'] == os.path.join('serving', 'retrieval', '5')
  assert rows['retrieval']['seconds'] >= 10.0
  assert rows['retrieval']['top_10_unseen returning'] == 1.0


def test_the_feed_is_scored_per_group_by_its_own_lists(tmp_path):
  import tensorflow as tf

  class Feed(tf.Module):  # a feed in miniature: a fixed list per user, 'i9' for the unknown

    def __init__(self):
      super().__init__()
      self.lists = tf.lookup.StaticHashTable(
          tf.lookup.KeyValueTensorInitializer(['a', 'b'], ['i1|i2', 'i0|i3']), 'i9|i8')

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def recommend(self, user_id):
      return {'item_ids': tf.strings.split(self.lists.lookup(user_id), '|').to_tensor()}

  feed = Feed()
  candidate = tmp_path / 'pipeline' / 'FeedModelBuilder' / 'candidate'
  for run in ('3', '12'):  # the newest run's candidate is the one scored
    tf.saved_model.save(feed, str(candidate / run / 'Format-Serving'),
                        signatures={'recommend': feed.recommend})
  assert temporal.feed_model_dir(str(tmp_path)).endswith(os.path.join('12', 'Format-Serving'))
  eval_ = _frame([('a', 'i2', 4, 9), ('a', 'i3', 4, 9), ('b', 'i3', 4, 9), ('c', 'i9', 4, 9)])
  hits = temporal.feed_hits(temporal.feed_model_dir(str(tmp_path)), eval_, batch=2)
  assert hits.tolist() == [True, False, True, True]
  found = temporal.feed_breakdown(hits, np.array([True, True, True, False]), 10)
  assert found == {'top_10_unseen all': 0.75, 'top_10_unseen returning': pytest.approx(2 / 3),
                   'top_10_unseen new': 1.0}


def test_the_live_reading_gives_each_row_what_its_user_did_before_it():
  from benchmarks import live
  train = _frame([('a', 'i0', 5, 10), ('a', 'i1', 4, 20)])
  # a returns (i2 at 30, then i3 at 40); n is new: i1 and i2 in the same second, then i0.
  eval_ = _frame([('n', 'i1', 3, 50), ('a', 'i3', 5, 40), ('n', 'i0', 1, 60),
                  ('a', 'i2', 2, 30), ('n', 'i2', 4, 50)])
  lr = live.live_rows(train, eval_, {f'i{k}': k for k in range(5)})
  assert lr.users.tolist() == ['n', 'a', 'n', 'a', 'n']  # eval's file order
  assert lr.target.tolist() == [1, 3, 0, 2, 2]
  # Strictly earlier timestamps only: n's two clicks at 50 know nothing of each other.
  assert [h.tolist() for h in lr.history] == [[], [0, 1, 2], [1, 2], [0, 1], []]
  assert lr.group.tolist() == [2, 0, 1, 0, 2]
  assert live.sizes(lr) == {'returning': 2, 'new, earlier click': 1, 'new, first click': 2}
  # Requests send the latest items first; the ranking drops the history's items.
  catalogue = np.array([f'i{k}' for k in range(5)], dtype=object)
  assert live.requests(lr, slice(1, 3), catalogue, sent=2).tolist() == [['i2', 'i1'],
                                                                         ['i2', 'i1']]
  scores = np.array([5.0, 4.0, 3.0, 2.0, 1.0])  # i0 best
  rank = live.ranks(live.list_scores(scores), lr)
  # Ranks from 0. n's third click (i0, after i1, i2): i0 is the best item left; a's i3,
  # after i0, i1, i2: the best left; n's first clicks rank i1 behind i0, i2 behind i0, i1.
  assert rank.tolist() == [1, 0, 0, 0, 2]
  got = live.breakdown(rank, lr)
  assert got['top_10 new, earlier click'] == 1.0 and got['top_100 returning'] == 1.0
  # EASE over the history: row i of the history matrix times B.
  b = np.eye(5)[::-1]  # item k points at item 4 - k
  np.testing.assert_allclose(live.ease_scores(b, lr)(slice(2, 3)), [[0, 0, 1, 1, 0]])
  found = {'model': {'top_100 new, earlier click': 0.61, 'top_100 returning': 0.4},
           'list': {'top_100 new, earlier click': 0.4, 'top_100 returning': 0.4}}
  assert [met for _, met in live.ratio_targets(found, temporal.LIVE_BARS)] == [True, False]
