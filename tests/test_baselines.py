"""Unit tests for benchmarks.split and benchmarks.baselines on hand-computable data (no TFX)."""
import os

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')

import numpy as np
import pandas as pd
import pytest

from benchmarks import baselines
from benchmarks.split import load_split, write_seed_split
from core.retrieval_metrics import rank_of_target


def _frame(pairs):
  return pd.DataFrame({'user_id': [u for u, _ in pairs], 'item_id': [i for _, i in pairs],
                       'rating': 4.0, 'timestamp': 0})


def _items(n):
  return pd.DataFrame({'item_id': [f'i{k}' for k in range(n)], 'title': 't', 'year': 1995,
                       'genres': 'Drama'})


def _staircase():
  """User u{j} (j = 0..14) rated i0..i{14-j}, so item i{k} has 15 - k train ratings.

  110-item catalogue: i0..i14 score 15..1 and the 95 items i15..i109 score 0.
  """
  train = _frame([(f'u{j}', f'i{k}') for j in range(15) for k in range(15 - j)])
  eval_ = _frame([('u14', 'i5'),    # rank 5; u14 saw only i0 -> 4
                  ('u10', 'i12'),   # rank 12; u10 saw i0..i4 -> 7
                  ('u0', 'i50')])   # ties 94 zeros + 15 above -> 109; u0 saw i0..i14 -> 94
  return train, eval_, _items(110)


def test_most_popular_hand_computed():
  metrics = baselines.most_popular(*_staircase())
  assert metrics == pytest.approx({
      'top_10': 1 / 3, 'top_50': 2 / 3, 'top_100': 2 / 3,
      'top_10_unseen': 2 / 3, 'top_100_unseen': 1.0})


def test_seen_removal_changes_rank():
  scores = np.array([[3., 2., 2., 1., 0.]])
  excluded = np.array([[True, True, False, False, False]])
  assert rank_of_target(scores, np.array([3])) == 3
  assert rank_of_target(scores, np.array([3]), excluded) == 1
  metrics = baselines.most_popular(*_staircase())
  assert metrics['top_10_unseen'] > metrics['top_10']
  assert metrics['top_100_unseen'] > metrics['top_100']


def _blocks():
  """Two co-occurrence blocks, {i0, i1} and {i2, i3}, plus 10 items nobody rated."""
  train = _frame([('a', 'i0'), ('a', 'i1'), ('b', 'i0'), ('b', 'i1'),
                  ('c', 'i2'), ('c', 'i3'), ('d', 'i2'), ('d', 'i3'),
                  ('e', 'i0'), ('f', 'i2')])
  return train, _items(14)


def test_ease_ranks_co_occurring_item_first():
  train, items = _blocks()
  x = np.zeros((6, 14))
  for u, i in zip(train['user_id'], train['item_id']):
    x['abcdef'.index(u), int(i[1:])] = 1.0
  scores = x[4] @ baselines.ease_weights(x, lam=1.0)   # user e, history {i0}
  assert np.argmax(scores) == 1
  assert scores[1] > 0 and np.all(np.delete(scores, [0, 1]) <= 0)
  # End to end: e's held-out i1 is the top unseen item; f's held-out i3 as well.
  eval_ = _frame([('e', 'i1'), ('f', 'i3')])
  ranks = rank_of_target(x[[4, 5]] @ baselines.ease_weights(x, 1.0), np.array([1, 3]),
                         x[[4, 5]] > 0)
  assert list(ranks) == [0, 0]
  metrics = baselines.ease(train, eval_, items, lam=1.0)
  assert metrics['top_10_unseen'] == 1.0


def test_ease_unknown_eval_user_gets_zero_row():
  """No history -> all scores 0 -> pessimistic rank n_items - 1: a miss at every k < 14."""
  train, items = _blocks()
  metrics = baselines.ease(train, _frame([('new', 'i1')]), items, lam=1.0)
  assert metrics['top_10'] == 0.0 and metrics['top_10_unseen'] == 0.0


def test_split_uses_exact_permutation(tmp_path):
  n = 37
  rows = pd.DataFrame({'user_id': [f'{k % 5:03d}' for k in range(n)],
                       'item_id': [f'0{k}' for k in range(n)],
                       'rating': [k % 5 + 1 for k in range(n)],
                       'timestamp': range(1000, 1000 + n)})
  data = tmp_path / 'data'
  data.mkdir()
  rows.to_csv(data / 'interactions.csv', index=False)
  _items(3).to_csv(data / 'items.csv', index=False)

  out = write_seed_split(str(data), str(tmp_path / 'out'), seed=42)
  train, eval_, items, users = load_split(out)
  perm = np.random.default_rng(42).permutation(n)
  expected = rows.astype(str)
  assert len(train) == int(n * 0.8) and len(eval_) == n - int(n * 0.8)
  assert train['item_id'].tolist() == expected['item_id'].iloc[perm[:29]].tolist()
  assert eval_['item_id'].tolist() == expected['item_id'].iloc[perm[29:]].tolist()
  assert train['user_id'].tolist() == expected['user_id'].iloc[perm[:29]].tolist()  # '003' kept
  assert list(train.columns) == list(rows.columns)
  assert users is None and not os.path.exists(os.path.join(out, 'users.csv'))
  assert len(items) == 3


def test_tf_baselines_smoke():
  rng = np.random.default_rng(0)
  frame = pd.DataFrame({'user_id': rng.integers(0, 20, 200).astype(str),
                        'item_id': rng.integers(0, 30, 200).astype(str),
                        'rating': rng.integers(1, 6, 200).astype(float), 'timestamp': 0})
  items = pd.DataFrame({'item_id': [str(k) for k in range(30)]})
  train, eval_ = frame.iloc[:160], frame.iloc[160:]
  retrieval = baselines.tutorial_two_tower(train, eval_, items, epochs=1)
  assert set(retrieval) == {'top_10', 'top_50', 'top_100'}
  assert all(0.0 <= v <= 1.0 for v in retrieval.values())
  assert retrieval['top_50'] == 1.0   # 30-item catalogue: everything is inside the top 50
  rmse = baselines.seed_ranking_model(train, eval_, items, epochs=1)['rmse']
  assert np.isfinite(rmse)


def test_ceiling_rows_score_the_tower_and_the_time_rule():
  """benchmarks.ceiling: the two-tower row is the given scores, ranked by the shared rule;
  the time row pushes down exactly the items first rated after the user's last train time."""
  from benchmarks import ceiling
  train, eval_, items = _staircase()
  # Every train interaction at time 0 but those with i5 (u0..u9), at 100.
  train = train.assign(timestamp=np.where(train['item_id'] == 'i5', 100, 0))
  late = ceiling.not_yet_rated(train, baselines._index(train['user_id']),
                               baselines._catalogue(items), 16)
  u14 = list(baselines._index(train['user_id'])).index('u14')
  # For u14 (last active at 0): i5 and the 95 items nobody rated in train.
  assert late[u14].sum() == 96 and late[u14, 5] and not late[u14, 0]
  assert not late[-1].any()  # the row of users absent from train: nothing is withheld
  oracle_items = {'i5', 'i12', 'i50'}
  def tower(user_ids, item_ids):
    assert user_ids[-1] not in set(train['user_id'])
    return np.tile([1.0 if i in oracle_items else 0.0 for i in item_ids], (len(user_ids), 1))
  rows = ceiling.ceiling_rows(train, eval_, items, tower)
  # Three items tie at the top, ties count against: every eval item ranks 2nd -> top_10 hits.
  assert rows['pipeline two-tower']['top_10_unseen'] == 1.0
  assert rows['EASE λ=500'] == pytest.approx(
      baselines.ease(train, eval_, items, lam=500.0))
  # u14's eval item i5 was first rated after u14's last train time: pushed below u14's 13
  # other unseen items rated by then. u0's i50 (never rated) stays first: all of u0's other
  # unseen items are pushed down with it.
  timed = rows["two-tower, items not yet rated at the user's last train time last"]
  assert timed['top_10_unseen'] == pytest.approx(2 / 3)


def test_zscore_and_rp3beta():
  from benchmarks import ceiling
  z = ceiling.zscore(np.array([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]]))
  assert z[0] == pytest.approx([-1.2247, 0.0, 1.2247], abs=1e-4)
  assert (z[1] == 0).all()  # a flat row stays flat rather than dividing by zero
  x = np.array([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
  w = ceiling.rp3beta_weights(x, beta=0.0)
  # i0 -> user a (1) -> i1 (1/2): 0.5; i0 never reaches i2; diagonal zero.
  assert w[0, 1] == pytest.approx(0.5) and w[0, 2] == 0 and w[1, 1] == 0
  assert ceiling.rp3beta_weights(x, beta=1.0)[0, 1] == pytest.approx(0.25)
