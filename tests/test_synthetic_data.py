"""Tests for pipeline.synthetic_data (small sizes; the whole file runs in a few seconds)."""
import filecmp
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

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
