"""Synthetic interaction data in the pipeline's input layout, with planted user segments.

Used (a) to check that user segments found by the model are objective (they can be
compared with the planted ones in truth.json) and (b) for scale benchmarks (100K..10M+
interactions).

Generative model
  * S hidden segments; segment s prefers `prefs_per_segment` (default 2) of the C
    categories. When S * prefs_per_segment <= C the preferred sets are disjoint
    (a random partition), otherwise each segment draws its own set (overlaps possible).
  * Each user belongs to one segment (uniform). User features carry segment signal for
    cold start: with probability `feature_signal` (0.7) the country comes from the
    segment's two "home" countries, else from all countries; language follows the
    country (85%) else is random; age ~ Normal(segment mean, 6), clipped 13..80.
  * Items: a category (every category has at least one warm item), a creator from a
    category-specific pool, a log-normal price with a category-specific scale, and 1-3
    distinct tags (the first from the category's own three tags). A fraction
    `cold_item_frac` of items is never interacted with (cold items).
  * Item popularity inside a category is Zipf-like: weight (rank+1)^-item_zipf over a
    random ranking.
  * User activity is power-law: every active user gets `min_per_user` interactions and
    the rest are spread with Pareto(`activity_alpha`) weights, capped at
    `max_per_user` (default max(warm items / 10, 4 x mean activity)). A fraction
    `cold_user_frac` of users (at least one) has a users.csv row but no interactions.
  * Each interaction: with probability p_pref the category is one of the user's
    segment's preferred categories, else any category (uniform); then an item of that
    category by popularity. Expected share on preferred categories is
    p_pref + (1 - p_pref) * prefs_per_segment / C.
  * Rating: round(4.2 if preferred category else 2.8, + item bias N(0, 0.3)
    + noise N(0, 0.7)), clipped to 1..5.
  * Timestamps: each user joins at a uniform time in the first half of a `span_days`
    window (default 180 days from `start_ts`); its interactions are uniform between its
    join time and the window end.
  * Time dynamics (`time_dynamics`, off by default; when off nothing below is drawn and
    the output is the static model's):
      - Items are released over the span: a share `launch_item_frac` (and at least one
        warm item per category) at the span start, the others at a uniform time inside
        it. No interaction precedes its item's release.
      - An item's pull decays with its age: an interaction at time t picks an item of
        the drawn category with weight (Zipf weight) * 2^(-(t - release) / half-life)
        among the items already released (`item_half_life_days`). What is popular
        lately therefore differs from what was popular overall.
      - A share `drift_prob` of the active users drifts: at a uniform time inside their
        own window their segment (the preferred categories and the ratings that follow
        them) switches to another one; their features keep the segment they joined
        with. Their recent interactions say more about them than their old ones.
    Each interaction's time is drawn first (the same rule as above), then its category
    (by the segment at that time) and its item (among those released by then).
  * Duplicate (user, item) pairs are redrawn inside the same drawn category (by
    popularity; after 30 rounds uniformly in the category; after 60 a new category), so
    the category mix is the model's, every user gets exactly its planned count, no pair
    repeats and the interaction count equals the flag. Redrawing flattens the
    popularity of the top items a little for heavy users. With time dynamics a redraw
    keeps the slot's time; after the category redraws it draws a new time too, so a
    user is never stuck on the few items released early.
  * `implicit` writes no rating column (views or clicks); everything else, including
    every random draw, is the same as with ratings.

Output layout in OUT:
  interactions.csv  user_id,item_id,rating,timestamp (no rating with implicit)
  items.csv         item_id,category,creator_id,price,tags (+ release_ts, Unix seconds,
                    with time dynamics)
  users.csv         user_id,age,country,language
  truth.json        seed, params, sizes, per-segment preferred categories and feature
                    profile, user_segment {user_id: segment}, cold user/item ids;
                    with time dynamics user_drift {user_id: {segment, at}} (the later
                    segment and the switch time) for the drifting users.

Ids look like "u123"/"i456"; with numeric_ids they are plain, non-contiguous integers
(10 * index + a random digit 1..9), to check that numeric-looking ids are treated as
strings downstream. interactions.csv is written in blocks of users (about `chunk_rows`
rows each), each user's rows ordered by time; the file as a whole is NOT globally sorted
by timestamp. Memory is O(users + items + chunk_rows), not O(interactions).

The output is a deterministic function of all arguments (including chunk_rows).
Independent random streams are used for users, items, activity, interactions and time
(releases and drift), so for example changing the interaction count leaves users.csv and
items.csv unchanged.

CLI: python -m pipeline.synthetic_data --out DIR --users N --items N --interactions N
       --segments S --categories C --seed 0 [--numeric-ids] [--implicit]
       [--time-dynamics [--item-half-life-days 14] [--drift-prob 0.3]
        [--launch-item-frac 0.2]]
"""
import argparse
import json
import math
import os
import sys
import time
from typing import Any, Dict, Optional

import numpy as np
import pandas as pd

INTERACTION_COLUMNS = ['user_id', 'item_id', 'rating', 'timestamp']
ITEM_COLUMNS = ['item_id', 'category', 'creator_id', 'price', 'tags']
USER_COLUMNS = ['user_id', 'age', 'country', 'language']

COUNTRIES = np.array(['US', 'GB', 'DE', 'FR', 'ES', 'IT', 'BR', 'MX', 'IN', 'JP', 'KR',
                      'NG'])
COUNTRY_LANGUAGE = np.array(['en', 'en', 'de', 'fr', 'es', 'it', 'pt', 'es', 'hi', 'ja',
                             'ko', 'en'])
LANGUAGES = np.array(sorted(set(COUNTRY_LANGUAGE.tolist())))

_PREF_MEAN = 4.2
_OTHER_MEAN = 2.8
_RESAMPLE_ROUNDS = 30
_UNIFORM_ROUNDS = 200
_DAY = 86400
# Release weights are 2^((release - mid-span) / half-life), spanning 2^(span / half-life);
# this bound keeps them and their sums inside the float64 range.
_MAX_HALF_LIVES = 1000


def _category_names(categories: int) -> np.ndarray:
  width = max(2, len(str(categories - 1)))
  return np.array([f'cat_{c:0{width}d}' for c in range(categories)], dtype=object)


def _ids(prefix: str, n: int, numeric: bool, rng: np.random.Generator) -> np.ndarray:
  """Id per index: object array of 'u0'.. strings, or int64 10*i + (1..9)."""
  if numeric:
    return np.arange(n, dtype=np.int64) * 10 + rng.integers(1, 10, size=n)
  return (prefix + pd.Series(np.arange(n)).astype(str)).to_numpy(dtype=object)


def _num_cold(n: int, frac: float) -> int:
  if n < 2 or frac <= 0:
    return 0
  return min(n - 1, max(1, int(round(frac * n))))


def _contains(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
  """Membership of keys in a sorted array."""
  if not sorted_keys.size:
    return np.zeros(keys.size, dtype=bool)
  pos = np.minimum(np.searchsorted(sorted_keys, keys), sorted_keys.size - 1)
  return sorted_keys[pos] == keys


def _activity(rng: np.random.Generator, active: int, total: int, min_per_user: int,
              max_per_user: int, alpha: float) -> np.ndarray:
  """Per-active-user counts: min_per_user + Pareto-weighted share, capped, summing to total."""
  counts = np.full(active, min_per_user, dtype=np.int64)
  weights = rng.pareto(alpha, size=active) + 1.0
  extra = total - counts.sum()
  while extra > 0:
    room = counts < max_per_user
    w = np.where(room, weights, 0.0)
    add = rng.multinomial(extra, w / w.sum())
    counts += add
    over = np.maximum(counts - max_per_user, 0)
    counts -= over
    extra = int(over.sum())
  return counts


def generate(out_dir: str, *, users: int = 2000, items: int = 1000,
             interactions: int = 50000, segments: int = 4, categories: int = 8,
             seed: int = 0, numeric_ids: bool = False, p_pref: float = 0.8,
             prefs_per_segment: int = 2, item_zipf: float = 1.0,
             activity_alpha: float = 1.5, min_per_user: int = 5,
             max_per_user: Optional[int] = None, cold_item_frac: float = 0.05,
             cold_user_frac: float = 0.01, feature_signal: float = 0.7,
             span_days: float = 180.0, start_ts: int = 1_700_000_000,
             chunk_rows: int = 1_000_000, implicit: bool = False,
             time_dynamics: bool = False, item_half_life_days: float = 14.0,
             drift_prob: float = 0.3, launch_item_frac: float = 0.2) -> Dict[str, Any]:
  """Writes interactions.csv, items.csv, users.csv and truth.json into out_dir.

  implicit: no rating column. time_dynamics: items released over the span whose pull
  decays with age (item_half_life_days; launch_item_frac released at the start) and users
  whose segment switches once with probability drift_prob (see the module docstring).
  Returns a dict with the sizes written, the paths and the elapsed seconds.
  """
  t_start = time.perf_counter()
  if min(users, items, interactions, segments, categories) < 1:
    raise ValueError('users, items, interactions, segments and categories must be >= 1')
  if not 1 <= prefs_per_segment <= categories:
    raise ValueError('prefs_per_segment must be in 1..categories')
  if not 0.0 <= p_pref <= 1.0:
    raise ValueError('p_pref must be in [0, 1]')
  if min_per_user < 1:
    raise ValueError('min_per_user must be >= 1')
  if time_dynamics:
    if not item_half_life_days > 0:
      raise ValueError('item_half_life_days must be > 0')
    if span_days / item_half_life_days > _MAX_HALF_LIVES:
      raise ValueError(f'span_days / item_half_life_days must be <= {_MAX_HALF_LIVES}')
    if not 0.0 <= drift_prob <= 1.0:
      raise ValueError('drift_prob must be in [0, 1]')
    if not 0.0 <= launch_item_frac <= 1.0:
      raise ValueError('launch_item_frac must be in [0, 1]')
  n_cold_users = _num_cold(users, cold_user_frac)
  n_cold_items = _num_cold(items, cold_item_frac)
  active_users = users - n_cold_users
  warm_items = items - n_cold_items
  if warm_items < categories:
    raise ValueError(f'need at least {categories} warm items (one per category); got '
                     f'{warm_items} of {items}')
  if max_per_user is None:
    max_per_user = max(min_per_user, warm_items // 10,
                       math.ceil(4 * interactions / active_users))
  max_per_user = min(max_per_user, warm_items)
  if min_per_user > max_per_user:
    raise ValueError(f'min_per_user={min_per_user} exceeds max_per_user={max_per_user} '
                     f'(warm items: {warm_items})')
  if not min_per_user * active_users <= interactions <= max_per_user * active_users:
    raise ValueError(
        f'interactions={interactions} infeasible for {active_users} active users with '
        f'{min_per_user}..{max_per_user} interactions each')

  os.makedirs(out_dir, exist_ok=True)
  ss = np.random.SeedSequence(seed)
  # A spawned child depends only on its index: the time stream (the sixth) does not change
  # the other five, and without time dynamics nothing is drawn from it.
  rng_world, rng_users, rng_items, rng_activity, rng_inter, rng_time = (
      np.random.default_rng(s) for s in ss.spawn(6))
  cat_names = _category_names(categories)

  # --- segments: preferred categories and feature profiles ---------------------------
  if segments * prefs_per_segment <= categories:
    perm = rng_world.permutation(categories)
    pref_cats = perm[:segments * prefs_per_segment].reshape(segments, prefs_per_segment)
  else:
    pref_cats = np.stack([rng_world.choice(categories, prefs_per_segment, replace=False)
                          for _ in range(segments)])
  pref_cats = np.sort(pref_cats, axis=1)
  pref_mask = np.zeros((segments, categories), dtype=bool)
  pref_mask[np.arange(segments)[:, None], pref_cats] = True
  country_perm = rng_world.permutation(len(COUNTRIES))
  home = np.stack([country_perm[(2 * s + np.arange(2)) % len(COUNTRIES)]
                   for s in range(segments)])
  age_mean = 20.0 + 35.0 * np.arange(segments) / max(1, segments - 1)

  # --- users ---------------------------------------------------------------------------
  user_ids = _ids('u', users, numeric_ids, rng_users)
  seg = rng_users.integers(segments, size=users)
  from_home = rng_users.random(users) < feature_signal
  country = np.where(from_home, home[seg, rng_users.integers(2, size=users)],
                     rng_users.integers(len(COUNTRIES), size=users))
  language = np.where(rng_users.random(users) < 0.85, COUNTRY_LANGUAGE[country],
                      LANGUAGES[rng_users.integers(len(LANGUAGES), size=users)])
  age = np.clip(np.rint(rng_users.normal(age_mean[seg], 6.0)), 13, 80).astype(np.int64)
  cold_user_idx = np.sort(rng_users.choice(users, n_cold_users, replace=False))
  join = start_ts + rng_users.random(users) * (span_days * 86400.0 / 2)
  users_path = os.path.join(out_dir, 'users.csv')
  pd.DataFrame({'user_id': user_ids, 'age': age, 'country': COUNTRIES[country],
                'language': language}).to_csv(users_path, index=False,
                                              lineterminator='\n')

  # --- items ---------------------------------------------------------------------------
  item_ids = _ids('i', items, numeric_ids, rng_items)
  is_cold_item = np.zeros(items, dtype=bool)
  is_cold_item[rng_items.choice(items, n_cold_items, replace=False)] = True
  item_cat = np.empty(items, dtype=np.int64)
  item_cat[~is_cold_item] = rng_items.permutation(np.concatenate(
      [np.arange(categories), rng_items.integers(categories, size=warm_items - categories)]))
  item_cat[is_cold_item] = rng_items.integers(categories, size=n_cold_items)
  n_creators = max(1, items // 20)
  pool = max(1, n_creators // categories)
  creator = item_cat * pool + np.floor(pool * rng_items.random(items) ** 2).astype(np.int64)
  cat_mu = np.log(8.0) + rng_items.normal(0.0, 0.6, size=categories)
  price = np.round(np.exp(cat_mu[item_cat] + 0.5 * rng_items.normal(size=items)), 2)
  n_tags = 3 * categories
  n_item_tags = rng_items.integers(1, 4, size=items)
  tag1 = item_cat * 3 + rng_items.integers(3, size=items)
  d2 = 1 + rng_items.integers(n_tags - 1, size=items)
  d3 = 1 + rng_items.integers(max(1, n_tags - 2), size=items)
  d3 = np.where(d3 >= d2, d3 + 1, d3)
  tag2, tag3 = (tag1 + d2) % n_tags, (tag1 + d3) % n_tags
  t = lambda a: 't_' + pd.Series(a).astype(str)
  tags = (t(tag1) + np.where(n_item_tags >= 2, '|' + t(tag2), '')
          + np.where(n_item_tags >= 3, '|' + t(tag3), ''))
  item_bias = rng_items.normal(0.0, 0.3, size=items)

  # Popularity sampler: warm items sorted by category (random order inside, which is the
  # popularity rank); global "CDF" value = category + within-category CDF, so one
  # searchsorted(category + u) picks an item of that category by popularity.
  warm_idx = np.flatnonzero(~is_cold_item)
  warm_idx = warm_idx[rng_items.permutation(warm_idx.size)]
  warm_idx = warm_idx[np.argsort(item_cat[warm_idx], kind='stable')]
  warm_cat = item_cat[warm_idx]
  starts = np.searchsorted(warm_cat, np.arange(categories))
  rank = np.arange(warm_idx.size) - starts[warm_cat]
  w = (rank + 1.0) ** -item_zipf
  csum = np.cumsum(w)
  before = np.concatenate([[0.0], csum])[starts][warm_cat]
  totals = np.add.reduceat(w, starts)[warm_cat]
  within = (csum - before) / totals
  ends = np.concatenate([starts[1:], [warm_idx.size]]) - 1
  within[ends] = 1.0
  sampler = warm_cat + within

  sizes_by_cat = np.diff(np.concatenate([starts, [warm_idx.size]]))
  end_ts = start_ts + span_days * 86400.0

  # --- time: releases, the decaying popularity sampler, drift -----------------------------
  if time_dynamics:
    span_s = int(span_days * _DAY)
    release = np.where(rng_time.random(items) < launch_item_frac, start_ts,
                       start_ts + np.floor(rng_time.random(items) * span_s).astype(np.int64))
    # Every category has an item from the start, so any interaction time has a choice.
    first = starts + np.floor(rng_time.random(categories) * sizes_by_cat).astype(np.int64)
    release[warm_idx[first]] = start_ts
    # Warm items by (category, release). Decay by age is a factor common to every item at
    # a given time, so an item's weight at time t is proportional to a constant
    # zipf * 2^(release / half-life) over the items released by t: one prefix of a
    # cumulative sum per category. Per-category sums keep early, light items exact.
    half_life_s = item_half_life_days * _DAY
    by_release = np.lexsort((release[warm_idx], warm_cat))
    t_idx = warm_idx[by_release]
    t_release = release[t_idx]
    t_weight = w[by_release] * np.exp2((t_release - (start_ts + span_s / 2)) / half_life_s)
    t_cum = np.empty_like(t_weight)
    for c in range(categories):
      lo, hi = starts[c], starts[c] + sizes_by_cat[c]
      t_cum[lo:hi] = np.cumsum(t_weight[lo:hi])
    drift_to = np.full(users, -1, dtype=np.int64)
    drift_at = np.zeros(users, dtype=np.int64)
    if segments > 1:
      drifts = rng_time.random(users) < drift_prob
      other = (seg + 1 + rng_time.integers(segments - 1, size=users)) % segments
      at = np.floor(join + rng_time.random(users) * (end_ts - join)).astype(np.int64)
      drift_to[drifts], drift_at[drifts] = other[drifts], at[drifts]

  def segment_at(u: np.ndarray, ts: Optional[np.ndarray]) -> np.ndarray:
    """Each user's segment at the slot's time (the joining one without time dynamics)."""
    if ts is None:
      return seg[u]
    return np.where((drift_to[u] >= 0) & (ts >= drift_at[u]), drift_to[u], seg[u])

  def draw_categories(u: np.ndarray, ts: Optional[np.ndarray] = None) -> np.ndarray:
    n = u.size
    return np.where(rng_inter.random(n) < p_pref,
                    pref_cats[segment_at(u, ts), rng_inter.integers(prefs_per_segment,
                                                                    size=n)],
                    rng_inter.integers(categories, size=n))

  def draw_items(cat: np.ndarray, popular: bool) -> np.ndarray:
    """An item of each given category: by popularity, or uniformly inside it."""
    r = rng_inter.random(cat.size)
    if popular:
      return warm_idx[np.searchsorted(sampler, cat + r * (1.0 - 1e-9), side='right')]
    return warm_idx[starts[cat] + np.floor(r * sizes_by_cat[cat]).astype(np.int64)]

  def draw_items_at(cat: np.ndarray, ts: np.ndarray, popular: bool) -> np.ndarray:
    """An item of each given category released by the slot's time: by decayed
    popularity, or uniformly among those released."""
    r = rng_inter.random(cat.size)
    order = np.argsort(cat, kind='stable')
    bounds = np.searchsorted(cat[order], np.arange(categories + 1))
    out = np.empty(cat.size, dtype=np.int64)
    for c in np.flatnonzero(np.diff(bounds)):
      sel = order[bounds[c]:bounds[c + 1]]
      lo, hi = starts[c], starts[c] + sizes_by_cat[c]
      released = np.searchsorted(t_release[lo:hi], ts[sel], side='right')  # >= 1
      if popular:
        cum = t_cum[lo:hi]
        pick = np.searchsorted(cum, r[sel] * cum[released - 1], side='right')
        pick = np.minimum(pick, released - 1)
      else:
        pick = np.floor(r[sel] * released).astype(np.int64)
      out[sel] = t_idx[lo + pick]
    return out

  def draw_times(u: np.ndarray) -> np.ndarray:
    return np.floor(join[u] + rng_inter.random(u.size) * (end_ts - join[u])).astype(np.int64)

  items_path = os.path.join(out_dir, 'items.csv')
  item_table = pd.DataFrame({'item_id': item_ids, 'category': cat_names[item_cat],
                             'creator_id': 'cr_' + pd.Series(creator).astype(str),
                             'price': price, 'tags': tags})
  if time_dynamics:
    item_table['release_ts'] = release
  item_table.to_csv(items_path, index=False, lineterminator='\n')

  # --- activity --------------------------------------------------------------------------
  counts = np.zeros(users, dtype=np.int64)
  active_mask = np.ones(users, dtype=bool)
  active_mask[cold_user_idx] = False
  counts[active_mask] = _activity(rng_activity, active_users, interactions, min_per_user,
                                  max_per_user, activity_alpha)

  # --- interactions, in blocks of users --------------------------------------------------
  cum = np.cumsum(counts)
  edges = np.unique(np.concatenate([
      [0], np.searchsorted(cum, np.arange(chunk_rows, interactions, chunk_rows),
                           side='right'), [users]]))
  inter_path = os.path.join(out_dir, 'interactions.csv')
  columns = [c for c in INTERACTION_COLUMNS if not (implicit and c == 'rating')]
  written = 0
  redrawn = 0
  with open(inter_path, 'w', newline='') as fh:
    fh.write(','.join(columns) + '\n')
    for lo, hi in zip(edges[:-1], edges[1:]):
      c = counts[lo:hi]
      if c.sum() == 0:
        continue
      # Each slot keeps its drawn category; a slot whose (user, item) is already taken
      # redraws the item in the same category (so the category mix is exactly the
      # model's): by popularity for _RESAMPLE_ROUNDS rounds, then uniformly in the
      # category, and only after that (category exhausted for the user) a new category
      # (with time dynamics also a new time: few items may be out at the slot's time).
      pend_u = np.repeat(np.arange(lo, hi), c)
      pend_ts = draw_times(pend_u) if time_dynamics else None
      pend_cat = draw_categories(pend_u, pend_ts)
      parts_u, parts_it, parts_ts = [], [], []
      # Accepted keys: `base` (round 0, sorted once) and `extra` (later rounds, small).
      base = extra = np.empty(0, dtype=np.int64)
      rounds = 0
      while pend_u.size:
        if rounds >= 2 * _RESAMPLE_ROUNDS + _UNIFORM_ROUNDS:
          raise RuntimeError('could not draw enough distinct items for some users')
        if rounds >= 2 * _RESAMPLE_ROUNDS:
          if time_dynamics:
            pend_ts = draw_times(pend_u)
          pend_cat = draw_categories(pend_u, pend_ts)
        if rounds:
          redrawn += pend_u.size
        if time_dynamics:
          nit = draw_items_at(pend_cat, pend_ts, popular=rounds < _RESAMPLE_ROUNDS)
        else:
          nit = draw_items(pend_cat, popular=rounds < _RESAMPLE_ROUNDS)
        nkey = pend_u * items + nit
        fresh = ~(_contains(base, nkey) | _contains(extra, nkey))
        _, first = np.unique(np.where(fresh, nkey, -1), return_index=True)
        accept = np.zeros(nkey.size, dtype=bool)
        accept[first[fresh[first]]] = True
        parts_u.append(pend_u[accept])
        parts_it.append(nit[accept])
        if time_dynamics:
          parts_ts.append(pend_ts[accept])
        if rounds == 0:
          base = np.sort(nkey[accept])
        else:
          extra = np.sort(np.concatenate([extra, nkey[accept]]))
        pend_u, pend_cat = pend_u[~accept], pend_cat[~accept]
        if time_dynamics:
          pend_ts = pend_ts[~accept]
        rounds += 1
      u, it = np.concatenate(parts_u), np.concatenate(parts_it)
      ts = np.concatenate(parts_ts) if time_dynamics else None
      pref = pref_mask[segment_at(u, ts), item_cat[it]]
      mean = np.where(pref, _PREF_MEAN, _OTHER_MEAN) + item_bias[it]
      # Drawn in implicit mode too, so that its rows are the rated ones without the column.
      rating = np.clip(np.rint(mean + rng_inter.normal(0.0, 0.7, size=u.size)), 1, 5)
      if not time_dynamics:
        ts = draw_times(u)
      order = np.lexsort((ts, u))
      u, it = u[order], it[order]
      block = {'user_id': user_ids[u], 'item_id': item_ids[it],
               'rating': rating[order].astype(np.int8), 'timestamp': ts[order]}
      pd.DataFrame({k: block[k] for k in columns}).to_csv(
          fh, header=False, index=False, lineterminator='\n')
      written += u.size
  assert written == interactions, (written, interactions)

  # --- truth -----------------------------------------------------------------------------
  sizes = {'users': users, 'items': items, 'interactions': written,
           'active_users': active_users, 'cold_users': n_cold_users,
           'warm_items': warm_items, 'cold_items': n_cold_items,
           'segments': segments, 'categories': categories}
  params = {'p_pref': p_pref, 'prefs_per_segment': prefs_per_segment,
            'item_zipf': item_zipf, 'activity_alpha': activity_alpha,
            'min_per_user': min_per_user, 'max_per_user': int(max_per_user),
            'cold_item_frac': cold_item_frac, 'cold_user_frac': cold_user_frac,
            'feature_signal': feature_signal, 'span_days': span_days,
            'start_ts': start_ts, 'chunk_rows': chunk_rows, 'numeric_ids': numeric_ids,
            'rating_mean_preferred': _PREF_MEAN, 'rating_mean_other': _OTHER_MEAN}
  # Options that are off are not listed, so that the static output keeps its bytes.
  if implicit:
    params['implicit'] = True
  if time_dynamics:
    params.update({'time_dynamics': True, 'item_half_life_days': item_half_life_days,
                   'drift_prob': drift_prob, 'launch_item_frac': launch_item_frac})
  str_ids = lambda a: [str(x) for x in a.tolist()]
  truth = {
      'seed': seed,
      'sizes': sizes,
      'params': params,
      'categories': cat_names.tolist(),
      'segments': [{'segment': s,
                    'preferred_categories': cat_names[pref_cats[s]].tolist(),
                    'home_countries': COUNTRIES[home[s]].tolist(),
                    'age_mean': float(age_mean[s]),
                    'users': int((seg == s).sum())} for s in range(segments)],
      'expected_preferred_share': [
          p_pref + (1 - p_pref) * prefs_per_segment / categories] * segments,
      'user_segment': dict(zip(str_ids(user_ids), seg.tolist())),
      'cold_users': str_ids(user_ids[cold_user_idx]),
      'cold_items': str_ids(item_ids[is_cold_item]),
  }
  if time_dynamics:
    drifting = np.flatnonzero((drift_to >= 0) & active_mask)
    truth['user_drift'] = {
        uid: {'segment': s, 'at': a} for uid, s, a in zip(
            str_ids(user_ids[drifting]), drift_to[drifting].tolist(),
            drift_at[drifting].tolist())}
  truth_path = os.path.join(out_dir, 'truth.json')
  with open(truth_path, 'w') as fh:
    json.dump(truth, fh, separators=(',', ':'))
  return {**sizes, 'redrawn_pairs': redrawn,
          'paths': {'interactions': inter_path, 'items': items_path,
                    'users': users_path, 'truth': truth_path},
          'seconds': round(time.perf_counter() - t_start, 3)}


def main(argv=None) -> int:
  p = argparse.ArgumentParser(prog='python -m pipeline.synthetic_data',
                              description=__doc__.split('\n')[0])
  p.add_argument('--out', required=True, help='output directory')
  p.add_argument('--users', type=int, default=2000)
  p.add_argument('--items', type=int, default=1000)
  p.add_argument('--interactions', type=int, default=50000)
  p.add_argument('--segments', type=int, default=4)
  p.add_argument('--categories', type=int, default=8)
  p.add_argument('--seed', type=int, default=0)
  p.add_argument('--numeric-ids', action='store_true',
                 help='write user/item ids as plain integers')
  p.add_argument('--p-pref', type=float, default=0.8)
  p.add_argument('--prefs-per-segment', type=int, default=2)
  p.add_argument('--item-zipf', type=float, default=1.0,
                 help='Zipf exponent of item popularity within a category')
  p.add_argument('--activity-alpha', type=float, default=1.5,
                 help='Pareto tail exponent of user activity')
  p.add_argument('--min-per-user', type=int, default=5)
  p.add_argument('--max-per-user', type=int, default=None,
                 help='default: max(warm items // 10, 4 x mean activity)')
  p.add_argument('--cold-item-frac', type=float, default=0.05)
  p.add_argument('--cold-user-frac', type=float, default=0.01)
  p.add_argument('--feature-signal', type=float, default=0.7)
  p.add_argument('--span-days', type=float, default=180.0)
  p.add_argument('--start-ts', type=int, default=1_700_000_000)
  p.add_argument('--chunk-rows', type=int, default=1_000_000)
  p.add_argument('--implicit', action='store_true',
                 help='implicit feedback: write no rating column')
  p.add_argument('--time-dynamics', action='store_true',
                 help='items released over the span with popularity decaying by age; '
                      'users whose interests drift')
  p.add_argument('--item-half-life-days', type=float, default=14.0,
                 help='with --time-dynamics: days for an item\'s pull to halve')
  p.add_argument('--drift-prob', type=float, default=0.3,
                 help='with --time-dynamics: share of users whose segment switches once')
  p.add_argument('--launch-item-frac', type=float, default=0.2,
                 help='with --time-dynamics: share of items released at the span start')
  a = p.parse_args(argv)
  result = generate(a.out, users=a.users, items=a.items, interactions=a.interactions,
                    segments=a.segments, categories=a.categories, seed=a.seed,
                    numeric_ids=a.numeric_ids, p_pref=a.p_pref,
                    prefs_per_segment=a.prefs_per_segment, item_zipf=a.item_zipf,
                    activity_alpha=a.activity_alpha, min_per_user=a.min_per_user,
                    max_per_user=a.max_per_user, cold_item_frac=a.cold_item_frac,
                    cold_user_frac=a.cold_user_frac, feature_signal=a.feature_signal,
                    span_days=a.span_days, start_ts=a.start_ts, chunk_rows=a.chunk_rows,
                    implicit=a.implicit, time_dynamics=a.time_dynamics,
                    item_half_life_days=a.item_half_life_days, drift_prob=a.drift_prob,
                    launch_item_frac=a.launch_item_frac)
  json.dump(result, sys.stdout, indent=2)
  sys.stdout.write('\n')
  return 0


if __name__ == '__main__':
  sys.exit(main())
