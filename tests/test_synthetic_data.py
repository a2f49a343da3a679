"""Tests for pipeline.synthetic_data (small sizes; the whole file runs in a few seconds)."""
import filecmp
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from core import recent_popularity
from pipeline import synthetic_data

FILES = ('interactions.csv', 'items.csv', 'users.csv', 'truth.json')
DEFAULTS = dict(users=2000, items=1000, interactions=50000, segments=4, categories=8)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _read(out):
  inter = pd.read_csv(os.path.join(out, 'interactions.csv'), dtype=str,
                      keep_default_na=False)
  items = pd.read_csv(os.path.join(out, 'items.csv'), dtype=str, keep_default_na=False)
  users = pd.read_csv(os.path.join(out, 'users.csv'), dtype=str, keep_default_na=False)
  with open(os.path.join(out, 'truth.json')) as fh:
    truth = json.load(fh)
  return inter, items, users, truth


@pytest.fixture(scope='module')
def default_run(tmp_path_factory):
  out = str(tmp_path_factory.mktemp('default'))
  result = synthetic_data.generate(out, seed=0, **DEFAULTS)
  return out, result, _read(out)


def test_headers_exact(default_run):
  out = default_run[0]
  expected = {'interactions.csv': 'user_id,item_id,rating,timestamp',
              'items.csv': 'item_id,category,creator_id,price,tags',
              'users.csv': 'user_id,age,country,language'}
  for name, header in expected.items():
    with open(os.path.join(out, name)) as fh:
      assert fh.readline().rstrip('\n') == header


def test_sizes_match_flags(default_run):
  _, result, (inter, items, users, truth) = default_run
  assert len(inter) == DEFAULTS['interactions'] == result['interactions']
  assert len(items) == DEFAULTS['items'] == result['items']
  assert len(users) == DEFAULTS['users'] == result['users']
  assert truth['seed'] == 0
  assert truth['sizes']['segments'] == DEFAULTS['segments'] == len(truth['segments'])
  assert len(truth['categories']) == DEFAULTS['categories']
  assert items['category'].nunique() == DEFAULTS['categories']
  assert set(items['category']) == set(truth['categories'])
  assert set(truth['user_segment']) == set(users['user_id'])
  for path in result['paths'].values():
    assert os.path.isfile(path)


def test_same_seed_identical_other_seed_different(default_run, tmp_path):
  out0 = default_run[0]
  same, other = str(tmp_path / 'same'), str(tmp_path / 'other')
  synthetic_data.generate(same, seed=0, **DEFAULTS)
  synthetic_data.generate(other, seed=1, **DEFAULTS)
  for name in FILES:
    assert filecmp.cmp(os.path.join(out0, name), os.path.join(same, name),
                       shallow=False), name
    assert not filecmp.cmp(os.path.join(out0, name), os.path.join(other, name),
                           shallow=False), name


def test_referential_integrity_and_no_duplicates(default_run):
  inter, items, users, _ = default_run[2]
  assert items['item_id'].is_unique and users['user_id'].is_unique
  assert inter['item_id'].isin(items['item_id']).all()
  assert inter['user_id'].isin(users['user_id']).all()
  assert not inter.duplicated(['user_id', 'item_id']).any()


def test_cold_items_and_users_exist(default_run):
  inter, items, users, truth = default_run[2]
  cold_items = set(items['item_id']) - set(inter['item_id'])
  cold_users = set(users['user_id']) - set(inter['user_id'])
  assert cold_items and cold_users
  assert cold_items == set(truth['cold_items'])
  assert cold_users == set(truth['cold_users'])


def test_activity_and_field_formats(default_run):
  inter, items, users, truth = default_run[2]
  per_user = inter.groupby('user_id').size()
  assert per_user.min() >= truth['params']['min_per_user']
  assert per_user.max() > 3 * per_user.median()  # heavy-tailed activity
  rating = inter['rating'].astype(int)
  assert rating.between(1, 5).all() and set(rating) == {1, 2, 3, 4, 5}
  ts = inter['timestamp'].astype(np.int64)
  span = ts.max() - ts.min()
  assert 150 * 86400 < span <= 180 * 86400
  # each user's rows are in time order
  assert (inter.assign(ts=ts).groupby('user_id')['ts'].apply(
      lambda s: s.is_monotonic_increasing)).all()
  assert items['category'].str.fullmatch(r'cat_\d{2}').all()
  assert items['creator_id'].str.fullmatch(r'cr_\d+').all()
  assert (items['price'].astype(float) > 0).all()
  tags = items['tags'].str.split('|')
  assert tags.map(len).between(1, 3).all()
  assert tags.map(lambda t: len(set(t)) == len(t)).all()
  assert items['tags'].str.fullmatch(r't_\d+(\|t_\d+){0,2}').all()
  assert users['age'].astype(int).between(13, 80).all()
  assert users['user_id'].str.fullmatch(r'u\d+').all()
  assert items['item_id'].str.fullmatch(r'i\d+').all()


def test_planted_segment_signal(default_run):
  inter, items, users, truth = default_run[2]
  cat = items.set_index('item_id')['category']
  df = inter.assign(category=inter['item_id'].map(cat),
                    segment=inter['user_id'].map(truth['user_segment']))
  p = truth['params']
  expected = p['p_pref'] + (1 - p['p_pref']) * p['prefs_per_segment'] / len(
      truth['categories'])
  preferred = {s['segment']: set(s['preferred_categories']) for s in truth['segments']}
  df['pref'] = [c in preferred[s] for c, s in zip(df['category'], df['segment'])]
  share = df.groupby('segment')['pref'].mean()
  assert len(share) == DEFAULTS['segments']
  assert (share > 0.6).all(), share
  assert np.allclose(share, expected, atol=0.03), (share, expected)
  # preferred categories are rated higher
  mean = df.assign(r=df['rating'].astype(int)).groupby('pref')['r'].mean()
  assert mean[True] - mean[False] > 1.0
  # user features carry the segment: the modal country of a segment is one of its
  # home countries and is over-represented
  seg = users['user_id'].map(truth['user_segment'])
  for s in truth['segments']:
    countries = users.loc[seg == s['segment'], 'country'].value_counts(normalize=True)
    assert countries.index[0] in s['home_countries']
    assert countries.iloc[0] > 0.2


def test_numeric_ids_cli(tmp_path):
  out = str(tmp_path / 'num')
  proc = subprocess.run(
      [sys.executable, '-m', 'pipeline.synthetic_data', '--out', out, '--users', '300',
       '--items', '200', '--interactions', '3000', '--segments', '3', '--categories', '6',
       '--seed', '5', '--numeric-ids'], cwd=REPO, capture_output=True, text=True,
      check=True)
  result = json.loads(proc.stdout)
  assert result['interactions'] == 3000
  inter, items, users, truth = _read(out)
  for col in (inter['user_id'], inter['item_id'], items['item_id'], users['user_id']):
    assert col.str.fullmatch(r'[1-9]\d*').all()
  assert len(inter) == 3000 and len(items) == 200 and len(users) == 300
  assert inter['item_id'].isin(items['item_id']).all()
  assert inter['user_id'].isin(users['user_id']).all()
  assert not inter.duplicated(['user_id', 'item_id']).any()
  assert set(truth['user_segment']) == set(users['user_id'])
  assert all(isinstance(x, str) for x in truth['cold_items'] + truth['cold_users'])


def test_chunked_writing_matches_sizes(tmp_path):
  out = str(tmp_path / 'chunked')
  result = synthetic_data.generate(out, users=500, items=300, interactions=8000,
                                   segments=2, categories=4, seed=3, chunk_rows=1000)
  inter, items, users, _ = _read(out)
  assert result['interactions'] == len(inter) == 8000
  assert not inter.duplicated(['user_id', 'item_id']).any()
  # each user's rows are contiguous (written in blocks of users)
  assert inter.groupby('user_id', sort=False).ngroup().is_monotonic_increasing


def test_infeasible_sizes_rejected(tmp_path):
  with pytest.raises(ValueError):
    synthetic_data.generate(str(tmp_path / 'x'), users=100, items=50, interactions=100,
                            segments=2, categories=4, seed=0)  # < 5 per active user
  with pytest.raises(ValueError):
    synthetic_data.generate(str(tmp_path / 'y'), users=100, items=5, interactions=600,
                            segments=2, categories=8, seed=0)  # fewer items than categories


# --- time dynamics -------------------------------------------------------------------------

TIME_FLAGS = ['--time-dynamics', '--item-half-life-days', '14', '--drift-prob', '0.3',
              '--launch-item-frac', '0.2']
TIME_KWARGS = dict(time_dynamics=True, item_half_life_days=14.0, drift_prob=0.3,
                   launch_item_frac=0.2)


@pytest.fixture(scope='module')
def time_run(tmp_path_factory):
  """The default sizes with time dynamics, written through the CLI flags."""
  out = str(tmp_path_factory.mktemp('time'))
  argv = ['--out', out, '--seed', '0'] + TIME_FLAGS
  for key, value in DEFAULTS.items():
    argv += ['--' + key, str(value)]
  assert synthetic_data.main(argv) == 0
  return out, _read(out)


def _rows(inter, items):
  """(user ids, item rows into items, timestamps) as arrays."""
  item_row = pd.Series(np.arange(len(items)), index=items['item_id'])
  return (inter['user_id'].to_numpy(), item_row[inter['item_id']].to_numpy(),
          inter['timestamp'].astype(np.int64).to_numpy())


def _recent_minus_all_time(inter, items, k=100):
  """Top-k share on the latest 20% by time of the recent-popularity list (window chosen
  inside the earlier rows) minus that of the all-time popularity list, both taken from the
  earlier rows, with each user's earlier items removed."""
  users, rows, ts = _rows(inter, items)
  cut = recent_popularity.time_cut(ts, 0.2)
  past = ts < cut
  recent, _ = recent_popularity.recent_list_scores(users[past], rows[past], ts[past],
                                                   len(items), k)
  all_time = recent_popularity.counts(rows[past], ts[past], len(items), cut, None)
  order = np.argsort(users[past], kind='stable')
  keys, firsts = np.unique(users[past][order], return_index=True)
  seen = dict(zip(keys, np.split(rows[past][order], firsts[1:])))
  empty = np.zeros(0, np.int64)
  later_seen = [seen.get(u, empty) for u in users[~past]]
  share = lambda scores: recent_popularity.top_k_share(scores, rows[~past], later_seen, k)
  return share(recent) - share(all_time)


def _top_overlap(inter, items, n=50):
  """Share of the n most interacted items of the latest 20% that are in the all-time n."""
  _, rows, ts = _rows(inter, items)
  latest = ts >= recent_popularity.time_cut(ts, 0.2)
  top = lambda r: set(np.argsort(-np.bincount(r, minlength=len(items)), kind='stable')[:n])
  return len(top(rows[latest]) & top(rows)) / n


def test_time_options_off_leave_the_output_as_it_was(default_run, time_run):
  inter, items, users, truth = default_run[2]
  assert 'release_ts' not in items and 'user_drift' not in truth
  assert 'time_dynamics' not in truth['params'] and 'implicit' not in truth['params']
  # The time stream is separate: users.csv is the same, items.csv gains one column.
  t_inter, t_items, t_users, t_truth = time_run[1]
  pd.testing.assert_frame_equal(users, t_users)
  pd.testing.assert_frame_equal(items, t_items.drop(columns='release_ts'))
  assert t_truth['user_segment'] == truth['user_segment']
  assert t_truth['params']['time_dynamics'] is True


def test_no_interaction_precedes_its_item_release(time_run):
  inter, items, _, truth = time_run[1]
  with open(os.path.join(time_run[0], 'items.csv')) as fh:
    assert fh.readline().rstrip('\n') == 'item_id,category,creator_id,price,tags,release_ts'
  release = items.set_index('item_id')['release_ts'].astype(np.int64)
  ts = inter['timestamp'].astype(np.int64)
  assert (ts.to_numpy() >= release[inter['item_id']].to_numpy()).all()
  start = truth['params']['start_ts']
  span = truth['params']['span_days'] * 86400
  assert release.between(start, start + span - 1).all()
  assert 150 * 86400 < ts.max() - ts.min() <= span
  # Items are released all along the span, and every category has one at the start.
  assert (release > start + 0.9 * span).sum() > 0.05 * len(items)
  first = items.assign(r=release.to_numpy()).groupby('category')['r'].min()
  assert (first == start).all()
  assert not inter.duplicated(['user_id', 'item_id']).any()
  assert len(inter) == DEFAULTS['interactions']


def test_latest_rows_favour_items_released_late(time_run):
  inter, items, _, truth = time_run[1]
  _, rows, ts = _rows(inter, items)
  release = items['release_ts'].astype(np.int64).to_numpy()[rows]
  latest = ts >= recent_popularity.time_cut(ts, 0.2)
  late_release = release >= truth['params']['start_ts'] + 0.8 * truth['params'][
      'span_days'] * 86400
  assert late_release[latest].mean() > 0.4
  assert late_release[latest].mean() > 3 * late_release.mean()


def test_popular_lately_differs_from_popular_overall(default_run, time_run):
  """A test the static generator fails: its recent top items are its all-time ones."""
  static = _top_overlap(*default_run[2][:2])
  timed = _top_overlap(*time_run[1][:2])
  assert timed < 0.5, timed
  assert static > 0.7, static


def test_recent_popularity_list_beats_all_time_only_with_time_dynamics(default_run,
                                                                        time_run):
  timed = _recent_minus_all_time(*time_run[1][:2])
  static = _recent_minus_all_time(*default_run[2][:2])
  assert timed > 0.1, timed
  assert abs(static) < 0.03, static


def test_drifting_users_latest_interactions_follow_their_later_segment(time_run):
  inter, items, _, truth = time_run[1]
  drift = truth['user_drift']
  assert 0.2 < len(drift) / truth['sizes']['active_users'] < 0.4
  preferred = {s['segment']: set(s['preferred_categories']) for s in truth['segments']}
  cat = items.set_index('item_id')['category']
  d = inter[inter['user_id'].isin(drift)].assign(category=lambda f: f['item_id'].map(cat))
  later = d['user_id'].map(lambda u: drift[u]['segment'])
  joined = d['user_id'].map(truth['user_segment'])
  assert (later != joined).all()
  d = d.assign(in_later=[c in preferred[s] for c, s in zip(d['category'], later)],
               in_joined=[c in preferred[s] for c, s in zip(d['category'], joined)],
               after=d['timestamp'].astype(np.int64) >= d['user_id'].map(
                   lambda u: drift[u]['at']))
  # Rows are in time order per user: the last ones follow the later segment, the first
  # ones the segment the user joined with.
  last, first = d.groupby('user_id').tail(5), d.groupby('user_id').head(5)
  assert last['in_later'].mean() > 0.6 and last['in_joined'].mean() < 0.3
  assert first['in_joined'].mean() > 0.6 and first['in_later'].mean() < 0.3
  # Exactly the planted rule on either side of the switch, ratings included.
  expected = truth['expected_preferred_share'][0]
  assert abs(d.loc[d['after'], 'in_later'].mean() - expected) < 0.03
  assert abs(d.loc[~d['after'], 'in_joined'].mean() - expected) < 0.03
  rating = d['rating'].astype(int)
  pref_now = d['in_later'].where(d['after'], d['in_joined'])
  assert rating[pref_now].mean() - rating[~pref_now].mean() > 1.0


def test_implicit_is_the_rated_output_without_its_rating_column(time_run, tmp_path):
  out = str(tmp_path / 'implicit')
  synthetic_data.generate(out, seed=0, implicit=True, **DEFAULTS, **TIME_KWARGS)
  inter, items, users, truth = _read(out)
  with open(os.path.join(out, 'interactions.csv')) as fh:
    assert fh.readline().rstrip('\n') == 'user_id,item_id,timestamp'
  rated = time_run[1]
  pd.testing.assert_frame_equal(inter, rated[0].drop(columns='rating'))
  pd.testing.assert_frame_equal(items, rated[1])
  assert truth['params']['implicit'] is True


def test_time_dynamics_same_seed_identical_other_seed_different(time_run, tmp_path):
  same, other = str(tmp_path / 'same'), str(tmp_path / 'other')
  # The API and the CLI flags give the same files.
  synthetic_data.generate(same, seed=0, **DEFAULTS, **TIME_KWARGS)
  synthetic_data.generate(other, seed=1, **DEFAULTS, **TIME_KWARGS)
  for name in FILES:
    assert filecmp.cmp(os.path.join(time_run[0], name), os.path.join(same, name),
                       shallow=False), name
    assert not filecmp.cmp(os.path.join(time_run[0], name), os.path.join(other, name),
                           shallow=False), name


def test_time_dynamics_chunked_and_without_launch_items(tmp_path):
  """Small blocks and a catalogue that starts with one item per category still give
  every user its count, no repeated pair and no interaction before a release."""
  out = str(tmp_path / 'sparse')
  result = synthetic_data.generate(out, users=500, items=300, interactions=8000,
                                   segments=2, categories=4, seed=3, chunk_rows=1000,
                                   time_dynamics=True, launch_item_frac=0.0,
                                   item_half_life_days=3.0, drift_prob=1.0)
  inter, items, _, truth = _read(out)
  assert result['interactions'] == len(inter) == 8000
  assert not inter.duplicated(['user_id', 'item_id']).any()
  release = items.set_index('item_id')['release_ts'].astype(np.int64)
  assert (inter['timestamp'].astype(np.int64).to_numpy()
          >= release[inter['item_id']].to_numpy()).all()
  assert len(truth['user_drift']) == truth['sizes']['active_users']


def test_time_options_rejected_when_invalid(tmp_path):
  for bad in (dict(item_half_life_days=0.0), dict(item_half_life_days=0.1),
              dict(drift_prob=1.5), dict(launch_item_frac=-0.1)):
    with pytest.raises(ValueError):
      synthetic_data.generate(str(tmp_path / 'x'), users=100, items=50, interactions=600,
                              segments=2, categories=4, seed=0, time_dynamics=True, **bad)
