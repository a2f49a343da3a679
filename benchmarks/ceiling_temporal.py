"""What the strongest methods reach on the time split, beside the pipeline's pushed models.

Issue #20 sets two targets the pipeline misses on the latest 20% of MovieLens-100K by time:
returning users' top_100_unseen at least 10% above the recent-popularity list, and a ranking
RMSE below SVD++'s. Before another sweep, this measures what the field's other answers reach
on exactly the benchmark's rows (benchmarks/temporal.py's split and scorers; top-k by
core.retrieval_metrics): item-item models (EASE, RP3beta, item-kNN) with and without
time-decayed user histories, decayed popularity, blends with popularity lately; for ratings,
biases with tuned shrinkage and with time-decayed item biases (drift), user-feature biases for
new users, SVD, SVD++, KNNBaseline and a stacked blend of them. Every figure is broken down
into returning users (with train interactions) and new users.

Every hyper-parameter and blend weight of a row is chosen on a validation cut inside train
(its latest 20% by time, predicted from the rows before, as benchmarks/temporal.py chooses the
recency window), then the model is refitted on all of train and scored once on eval. The
pipeline's models were trained on all of train, validation rows included, so no weight of a
blend with them can be chosen honestly on that cut: those grids are read on eval, shown as
such, and their best cell is an upper bound (an oracle choice), not a chosen row.

    python -m benchmarks.temporal --work-dir DIR       # once: the split and a pipeline run
    python -m benchmarks.ceiling_temporal --work-dir DIR

writes benchmarks/CEILING_TEMPORAL.md. Without a finished run under DIR/out the pipeline rows
are left out.
"""
import argparse
import datetime
import json
import os
import sys
import time
from typing import Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # run as `python benchmarks/ceiling_temporal.py`
  sys.path.insert(0, REPO)

from benchmarks import baselines, temporal  # noqa: E402
from benchmarks.ceiling import rp3beta_weights, zscore  # noqa: E402
from core import recent_popularity as rp  # noqa: E402
from models.rating_baseline import fit_biases  # noqa: E402

GROUPS = temporal.GROUPS
K = 100  # what every retrieval choice maximises: top_100_unseen of the validation rows
EASE_LAMBDAS = (100.0, 200.0, 300.0, 500.0, 1000.0, 2000.0)
RP3_BETAS = (0.3, 0.5, 0.7, 0.9)
KNN_NEIGHBOURS = (50, 200, None)
# Half-lives of a user's history: None is the plain binary history.
HISTORY_DECAYS = (None, (1, 'days'), (7, 'days'), (30, 'days'), (180, 'days'),
                  (5, 'interactions'), (20, 'interactions'), (80, 'interactions'))
POPULARITY_HALF_LIVES = (3, 7, 14, 30, 60, 120)  # days
POPULARITY_BLEND_WEIGHTS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
# Eval-read grids of the pipeline's blends.
TOWER_RECENT_WEIGHTS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)
TOWER_EASE_WEIGHTS = (0.2, 0.35, 0.5, 0.65)
# Ratings.
BIAS_REGS = (0.5, 1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 200.0)  # user and item shrinkage, in ratings
DRIFT_HALF_LIVES = (30, 90, 180, 365, 730)  # days
FEATURE_REGS = (10.0, 100.0, 1000.0, 10000.0)
AGE_BINS = (0, 18, 25, 35, 45, 50, 56, 200)
KNN_BASELINE_KS = (20, 40, 100)
SVDPP_GRID = tuple({'n_factors': f, 'reg_all': reg, 'n_epochs': 20}
                   for f in (10, 20) for reg in (0.05, 0.1, 0.2))
SVD_GRID = tuple({'n_factors': f, 'reg_all': reg, 'n_epochs': e}
                 for f in (20, 50, 100) for reg in (0.05, 0.1, 0.2) for e in (20, 40, 80))
DAY = rp.DAY


# ---------------------------------------------------------------- scoring functions


def history_weights(users: np.ndarray, timestamps: np.ndarray,
                    decay: Optional[Tuple[float, str]]) -> np.ndarray:
  """Weight of each interaction in its user's history: 0.5 ** (age / half-life).

  ``decay`` is (half-life, unit): in 'days', the age is the time from the interaction to its
  user's latest one; in 'interactions', how many of the user's interactions came strictly
  later (ties share a weight). None weighs every interaction 1. The latest interactions of
  each user weigh 1 either way, so users are on one scale.
  """
  timestamps = np.asarray(timestamps, np.int64)
  if decay is None:
    return np.ones(len(timestamps))
  half_life, unit = decay
  frame = pd.DataFrame({'u': np.asarray(users), 't': timestamps})
  if unit == 'days':
    age = (frame.groupby('u')['t'].transform('max') - frame['t']).to_numpy() / DAY
  elif unit == 'interactions':
    age = frame.groupby('u')['t'].rank(ascending=False, method='min').to_numpy() - 1.0
  else:
    raise ValueError(f'unknown decay unit {unit!r}: days or interactions')
  return 0.5 ** (age / float(half_life))


def item_decayed_counts(item_rows: np.ndarray, timestamps: np.ndarray, n_items: int,
                        until: int, half_life_days: float) -> np.ndarray:
  """Each item's interactions before ``until``, each weighing 0.5 ** (age in days /
  half-life): popularity that fades instead of a window that cuts."""
  timestamps = np.asarray(timestamps, np.int64)
  keep = timestamps < until
  weights = 0.5 ** ((until - timestamps[keep]) / DAY / float(half_life_days))
  return np.bincount(np.asarray(item_rows)[keep], weights, minlength=n_items)


def fit_linear_blend(predictions: np.ndarray, target: np.ndarray,
                     nonnegative: bool = False) -> np.ndarray:
  """Least-squares weights [intercept, w_1..w_m] of ``target`` ~ the columns of
  ``predictions`` [n, m]; ``nonnegative`` keeps every w_j >= 0 (the intercept is free), the
  usual guard of a blend of collinear models against weights that cancel each other."""
  predictions = np.asarray(predictions, np.float64)
  target = np.asarray(target, np.float64)
  if not nonnegative:
    design = np.column_stack([np.ones(len(target)), predictions])
    return np.linalg.lstsq(design, target, rcond=None)[0]
  from scipy.optimize import nnls
  means = predictions.mean(axis=0)
  w = nnls(predictions - means, target - target.mean())[0]
  return np.concatenate([[target.mean() - means @ w], w])


def apply_linear_blend(weights: np.ndarray, predictions: np.ndarray) -> np.ndarray:
  return weights[0] + np.asarray(predictions, np.float64) @ weights[1:]


def fit_feature_biases(codes: np.ndarray, residuals: np.ndarray, reg: float,
                       epochs: int = 10) -> List[np.ndarray]:
  """Additive shrunk biases of categorical features (backfitting): ``codes`` [n, f] holds
  each rating's user feature values as small ints, ``residuals`` what is left to explain.
  Returns one array of biases per feature (a user's bias: their sum)."""
  codes = np.asarray(codes, np.int64)
  biases = [np.zeros(codes[:, j].max() + 1) for j in range(codes.shape[1])]
  for _ in range(epochs):
    for j in range(codes.shape[1]):
      others = sum(biases[m][codes[:, m]] for m in range(codes.shape[1]) if m != j)
      n = np.bincount(codes[:, j], minlength=len(biases[j]))
      biases[j] = np.bincount(codes[:, j], residuals - others, len(biases[j])) / (reg + n)
  return biases


def rmse(predicted: np.ndarray, ratings: np.ndarray) -> float:
  error = np.asarray(predicted, np.float64) - np.asarray(ratings, np.float64)
  return float(np.sqrt(np.mean(error ** 2))) if len(error) else float('nan')


# ---------------------------------------------------------------- the two cuts


class Cut(NamedTuple):
  """One (past, future) pair: train -> eval, or inside train, its past -> its latest 20%."""
  train: pd.DataFrame
  eval_: pd.DataFrame
  ev: temporal.EvalRows
  items: np.ndarray       # train rows' item columns
  timestamps: np.ndarray  # train rows' timestamps
  user_rows: np.ndarray   # train rows' rows of ev.x


def make_cut(train: pd.DataFrame, eval_: pd.DataFrame, items: pd.DataFrame) -> Cut:
  ev = temporal.eval_rows(train, eval_, items)
  user_index = baselines._index(train['user_id'])
  return Cut(train, eval_, ev, baselines._item_columns(train, ev.item_index),
             train['timestamp'].to_numpy(np.int64),
             train['user_id'].astype(str).map(user_index).to_numpy(np.int64))


def validation_cut(train: pd.DataFrame, items: pd.DataFrame) -> Cut:
  """The latest temporal.VALIDATION_SHARE of train by time, predicted from the rows before."""
  timestamps = train['timestamp'].to_numpy(np.int64)
  cut = rp.time_cut(timestamps, temporal.VALIDATION_SHARE)
  return make_cut(train[timestamps < cut], train[timestamps >= cut], items)


def history(cut: Cut, decay) -> np.ndarray:
  """The user x item matrix of ``cut.ev.x`` with each interaction weighted by its decay."""
  x = np.zeros_like(cut.ev.x)
  np.maximum.at(x, (cut.user_rows, cut.items),
                history_weights(cut.user_rows, cut.timestamps, decay))
  return x


def until(cut: Cut) -> int:
  return int(cut.timestamps.max()) + 1


# ---------------------------------------------------------------- retrieval


def user_ranks(scores: np.ndarray, cut: Cut) -> np.ndarray:
  """Ranks of the eval rows under per-user scores (rows of ``cut.ev.x``), seen removed."""
  return temporal.matrix_ranks(lambda rows: scores[cut.ev.users[rows]], cut.ev)


def share(ranks: np.ndarray, k: int = K) -> float:
  return float(np.mean(ranks < k))


def _decay_name(decay) -> str:
  return 'binary history' if decay is None else f'half-life {decay[0]} {decay[1]}'


class Choice(NamedTuple):
  chosen: str
  grid: Dict[str, float]  # setting -> validation top_100_unseen (or RMSE)


def choose(grid: Dict[str, float], lower_is_better: bool = False) -> str:
  """The best setting; ties go to the first listed (grids list the simpler settings first)."""
  sign = -1.0 if lower_is_better else 1.0
  best = max(sign * v for v in grid.values())
  return next(k for k, v in grid.items() if sign * v == best)


def retrieval_rows(train: pd.DataFrame, eval_: pd.DataFrame, items: pd.DataFrame,
                   full: Cut, val: Cut) -> Tuple[Dict[str, Dict], Dict[str, np.ndarray]]:
  """Each family's row: settings chosen on ``val``, scored on ``full``. Returns the rows and
  the full-train score matrices the pipeline's blends reuse."""
  rows, keep = {}, {}
  n = len(full.ev.item_index)

  def row(name, fit: Callable[[], Tuple[Callable[[Cut, str], np.ndarray], Dict[str, str]]],
          eval_best: bool = False):
    """``fit`` returns (scores(cut, setting) -> per-user or list scores, {setting: ...}).
    ``eval_best`` adds a row with the grid's best cell for returning users read on eval: how
    far the family gets at best, an upper bound and not a choice."""
    start = time.perf_counter()
    scores, settings = fit()
    grid = {}
    for setting in settings:
      grid[setting] = share(_ranks(scores(val, setting), val))
    chosen = choose(grid)
    final = scores(full, chosen)
    rows[name] = dict(temporal.breakdown(_ranks(final, full), full.ev.returning),
                      chosen=chosen, validation=grid,
                      seconds=round(time.perf_counter() - start, 1))
    keep[name] = final
    if eval_best:
      start = time.perf_counter()
      found = {s: temporal.breakdown(_ranks(scores(full, s), full), full.ev.returning)
               for s in settings}
      best = max(found, key=lambda s: found[s][f'top_{K}_unseen returning'])
      rows[f'{name}: the best cell for returning users, read on eval'] = dict(
          found[best], chosen=f'upper bound: {best}', eval_read=True,
          seconds=round(time.perf_counter() - start, 1))
    return chosen

  def _ranks(scores, cut):
    return (temporal.list_ranks(scores, cut.ev) if scores.ndim == 1
            else user_ranks(scores, cut))

  # Popularity lately: the benchmark's row (window chosen inside train by the same rule).
  pop = temporal.popularity_rows(train, full.ev)
  for key, label in (('popular', 'most popular (all train)'),
                     ('recent', 'most popular lately (benchmark window)')):
    r = pop[key]
    rows[label] = {k: v for k, v in r.items() if k not in ('scores',)}
    rows[label]['seconds'] = round(r['seconds'], 1)
  window = pop['recent']['chosen']
  window_days = None if window == 'all train' else int(window.split()[1])
  rows['most popular lately (benchmark window)']['validation'] = {
      f'{k} days' if k != 'all' else 'all train': v
      for k, v in pop['recent']['validation'].items()}

  def recent_counts(cut):
    return rp.counts(cut.items, cut.timestamps, n, until(cut), window_days)

  decayed_pop = row('popularity, decayed counts', lambda: (
      lambda cut, s: item_decayed_counts(cut.items, cut.timestamps, n, until(cut),
                                         float(s.split()[1])),
      {f'half-life {h} days': h for h in POPULARITY_HALF_LIVES}))

  # Item-item models over binary histories.
  ease_cache: Dict[Tuple[int, float], np.ndarray] = {}

  def ease_b(cut, lam):
    key = (id(cut), lam)
    if key not in ease_cache:
      ease_cache[key] = baselines.ease_weights(cut.ev.x, lam)
    return ease_cache[key]

  lam_of = lambda s: float(s.split('=')[1])
  ease_lam = lam_of(row('EASE', lambda: (
      lambda cut, s: cut.ev.x @ ease_b(cut, lam_of(s)),
      {f'λ={lam:g}': lam for lam in EASE_LAMBDAS})))
  rp3_beta = row('RP3beta', lambda: (
      lambda cut, s: cut.ev.x @ rp3beta_weights(cut.ev.x, float(s.split('=')[1])),
      {f'β={b}': b for b in RP3_BETAS}))

  # Item-kNN (cosine) and EASE over time-decayed histories.
  knn_cache: Dict[Tuple[int, Optional[int]], np.ndarray] = {}

  def knn(cut, neighbours):
    key = (id(cut), neighbours)
    if key not in knn_cache:
      norms = np.sqrt(cut.ev.x.sum(axis=0))
      sim = (cut.ev.x.T @ cut.ev.x) / np.maximum(np.outer(norms, norms), 1e-12)
      np.fill_diagonal(sim, 0.0)
      if neighbours is not None:  # each item keeps its most similar items only
        low = np.argpartition(-sim, neighbours, axis=0)[neighbours:]
        np.put_along_axis(sim, low, 0.0, axis=0)
      knn_cache[key] = sim
    return knn_cache[key]

  decays = {_decay_name(d): d for d in HISTORY_DECAYS}
  knn_settings = {f'{"all" if k is None else k} neighbours, {name}': (k, d)
                  for k in KNN_NEIGHBOURS for name, d in decays.items()}
  decayed_knn = row('item-kNN (cosine), decayed history', lambda: (
      lambda cut, s: history(cut, knn_settings[s][1]) @ knn(cut, knn_settings[s][0]),
      knn_settings))
  ease_settings = {f'λ={lam:g}, {name}': (lam, d)
                   for lam in EASE_LAMBDAS for name, d in decays.items()}
  decayed_ease = row('EASE, decayed history', lambda: (
      lambda cut, s: history(cut, ease_settings[s][1]) @ ease_b(cut, ease_settings[s][0]),
      ease_settings), eval_best=True)

  # An item-item model (each as chosen above) + popularity lately: per-user z-scores plus w x
  # the popularity list's log counts z-scored; a new user (an all-zero row) gets the list.
  bases = {
      f'EASE ({decayed_ease})': lambda cut: (history(cut, ease_settings[decayed_ease][1])
                                             @ ease_b(cut, ease_settings[decayed_ease][0])),
      f'RP3beta ({rp3_beta})': lambda cut: cut.ev.x @ rp3beta_weights(
          cut.ev.x, float(rp3_beta.split('=')[1])),
      f'item-kNN ({decayed_knn})': lambda cut: (history(cut, knn_settings[decayed_knn][1])
                                                @ knn(cut, knn_settings[decayed_knn][0])),
  }
  lists = {f'the {window} list': recent_counts,
           f'{decayed_pop} counts': lambda cut: item_decayed_counts(
               cut.items, cut.timestamps, n, until(cut), float(decayed_pop.split()[1]))}
  blends = {f'{b} + {w} × {p}': (b, p, w) for b in bases for p in lists
            for w in POPULARITY_BLEND_WEIGHTS}
  base_cache: Dict[Tuple[int, str], np.ndarray] = {}

  def blend(cut, s):
    b, p, w = blends[s]
    if (id(cut), b) not in base_cache:
      base_cache[(id(cut), b)] = zscore(bases[b](cut))
    log_pop = np.log1p(lists[p](cut))
    return base_cache[(id(cut), b)] + w * (log_pop - log_pop.mean()) / log_pop.std()
  row('item-item model + popularity lately', lambda: (blend, blends), eval_best=True)
  keep['_ease'] = full.ev.x @ ease_b(full, ease_lam)
  keep['_seconds'] = {'ease': rows['EASE']['seconds'],
                      'recent': rows['most popular lately (benchmark window)']['seconds']}
  keep['_ease_lambda'] = ease_lam
  keep['_recent_counts'] = recent_counts(full)
  return rows, keep


# ---------------------------------------------------------------- the pipeline's models


def model_dir(out_dir: str, stage: str) -> Tuple[Optional[str], bool]:
  """(the newest pushed model of ``stage``, True), else the Trainer's newest, unpushed."""
  if stage == 'retrieval':
    return temporal.retrieval_model_dir(out_dir)
  import glob
  from core import publish
  pushed = publish.latest_version(os.path.join(out_dir, 'serving', stage))
  if pushed:
    return pushed, True
  trainer = {'ranking': 'RankingTrainer'}[stage]
  found = sorted(glob.glob(os.path.join(out_dir, 'pipeline', trainer, 'model', '*',
                                        'Format-Serving')),
                 key=lambda p: int(os.path.basename(os.path.dirname(p))))
  return (found[-1] if found else None), False


def tower_scores(directory: str, user_ids: np.ndarray, item_ids: Sequence[str]
                 ) -> Dict[str, np.ndarray]:
  """The retrieval export's scores of every (user, item), as served and split into their
  parts: the towers' dot product and the two prior columns (cold start, recency;
  models/retrieval.py, RetrievalServing). A user the export does not know is embedded from
  their users.csv features, as served."""
  import tensorflow as tf
  from core.artifacts import embed
  model = tf.saved_model.load(directory)
  users = embed(model.signatures['embed_users'], np.asarray(user_ids)).astype(np.float64)
  items = embed(model.signatures['embed_items'], np.array(list(item_ids))).astype(np.float64)
  towers = users[:, :-2] @ items[:, :-2].T
  return {'towers': towers, 'served': towers + users[:, -2:] @ items[:, -2:].T}


def trainer_seconds(out_dir: str, trainer: str) -> float:
  """The Trainer's seconds in the run's metrics.json (0 when not recorded)."""
  with open(os.path.join(out_dir, 'metrics.json')) as f:
    components = json.load(f).get('components') or {}
  return float((components.get(trainer) or {}).get('seconds') or 0.0)


def pipeline_retrieval_rows(out_dir: str, full: Cut, keep: Dict[str, np.ndarray]
                            ) -> Dict[str, Dict]:
  """The retrieval export as served and without its popularity columns, and its blends with
  popularity lately and EASE (read on eval). seconds: the RetrievalTrainer's, loading and
  scoring here, and the blended baseline's fit."""
  directory, pushed = model_dir(out_dir, 'retrieval')
  if not directory:
    return {}
  start = time.perf_counter() - trainer_seconds(out_dir, 'RetrievalTrainer')
  users, first, user_row = np.unique(full.eval_['user_id'].astype(str).to_numpy(),
                                     return_index=True, return_inverse=True)
  parts = tower_scores(directory, users, list(full.ev.item_index))

  loaded = time.perf_counter() - start

  def breakdown(per_user: np.ndarray, extra: float = 0.0) -> Dict[str, float]:
    """top-k of the eval rows under scores given per distinct eval user, and seconds."""
    scored = time.perf_counter()
    out = temporal.breakdown(temporal.matrix_ranks(lambda rows: per_user[user_row[rows]],
                                                   full.ev), full.ev.returning)
    return dict(out, seconds=round(loaded + extra + time.perf_counter() - scored, 1))

  name = os.path.relpath(directory, out_dir) + ('' if pushed else ', not pushed')
  rows = {f'pipeline two-tower, as served ({name})': breakdown(parts['served'])}
  rows['pipeline two-tower, towers only (no popularity columns)'] = breakdown(parts['towers'])
  recent = keep['_recent_counts']
  log_recent = np.log((recent + 1.0) / (recent.sum() + len(recent)))
  grid = {f'two-tower + {w} × log P_recent': breakdown(parts['served'] + w * log_recent,
                                                       keep['_seconds']['recent'])
          for w in TOWER_RECENT_WEIGHTS}
  rows.update(_eval_grid('pipeline two-tower + popularity lately', grid))
  served_z = zscore(parts['served'])
  ease_z = zscore(keep['_ease'][full.ev.users[first]])  # a new user's EASE row: zeros
  grid = {f'two-tower + EASE λ={keep["_ease_lambda"]:g}, z-scores, EASE weight {w}':
          breakdown((1 - w) * served_z + w * ease_z, keep['_seconds']['ease'])
          for w in TOWER_EASE_WEIGHTS}
  rows.update(_eval_grid('pipeline two-tower + EASE', grid))
  return rows


def _eval_grid(family: str, grid: Dict[str, Dict]) -> Dict[str, Dict]:
  """An eval-read grid: every cell a row, the best (on eval: an upper bound) marked."""
  best = max(grid, key=lambda s: grid[s][f'top_{K}_unseen all'])
  return {f'{s}{" (best on eval)" if s == best else ""}': dict(m, eval_read=True)
          for s, m in grid.items()}


def ranking_predictions(out_dir: str, eval_: pd.DataFrame) -> Tuple[Optional[np.ndarray], str]:
  """The ranking export's predicted rating of each eval row (its ``rank`` signature)."""
  directory, pushed = model_dir(out_dir, 'ranking')
  if not directory:
    return None, ''
  import tensorflow as tf
  model = tf.saved_model.load(directory)
  rank = model.signatures['rank']
  users = eval_['user_id'].astype(str).to_numpy()
  items = eval_['item_id'].astype(str).to_numpy()
  out = [rank(user_id=tf.constant(users[s:s + 4096]),
              item_id=tf.constant(items[s:s + 4096]))['rating'].numpy().reshape(-1)
         for s in range(0, len(users), 4096)]
  return (np.concatenate(out).astype(np.float64),
          os.path.relpath(directory, out_dir) + ('' if pushed else ', not pushed'))


# ---------------------------------------------------------------- ratings


class Ratings(NamedTuple):
  users: np.ndarray   # train rows' user numbers
  items: np.ndarray   # train rows' item numbers
  ratings: np.ndarray
  timestamps: np.ndarray
  eval_users: np.ndarray  # eval rows' user numbers; n_users for users train lacks
  eval_items: np.ndarray  # eval rows' item numbers; n_items for items train lacks
  n_users: int
  n_items: int
  scale: Tuple[float, float]


def ratings_of(train: pd.DataFrame, eval_: pd.DataFrame) -> Ratings:
  user_index = baselines._index(train['user_id'])
  item_index = baselines._index(train['item_id'])
  nu, ni = len(user_index), len(item_index)
  r = train['rating'].to_numpy(np.float64)
  return Ratings(train['user_id'].astype(str).map(user_index).to_numpy(np.int64),
                 train['item_id'].astype(str).map(item_index).to_numpy(np.int64), r,
                 train['timestamp'].to_numpy(np.int64),
                 eval_['user_id'].astype(str).map(user_index).fillna(nu).to_numpy(np.int64),
                 eval_['item_id'].astype(str).map(item_index).fillna(ni).to_numpy(np.int64),
                 nu, ni, (float(r.min()), float(r.max())))


def bias_predictions(data: Ratings, reg_u: float, reg_i: float,
                     drift_half_life: Optional[float] = None) -> np.ndarray:
  """Eval predictions of fit_biases (users or items train lacks: bias 0), clipped."""
  weights = None
  if drift_half_life is not None:
    weights = 0.5 ** ((data.timestamps.max() - data.timestamps) / DAY / drift_half_life)
  mu, bu, bi = fit_biases(data.users, data.items, data.ratings, data.n_users, data.n_items,
                          reg_u, reg_i, weights)
  bu, bi = np.append(bu, 0.0), np.append(bi, 0.0)
  return np.clip(mu + bu[data.eval_users] + bi[data.eval_items], *data.scale)


def user_codes(user_ids: pd.Series, users: pd.DataFrame) -> np.ndarray:
  """[n, 3] ints: gender, occupation and age band of each id's users.csv row."""
  table = users.set_index(users['user_id'].astype(str))
  rows = table.loc[user_ids.astype(str).to_numpy()]
  ages = pd.to_numeric(rows['age'], errors='coerce').fillna(0).to_numpy()
  return np.column_stack([
      pd.Categorical(rows['gender'], categories=sorted(users['gender'].unique())).codes,
      pd.Categorical(rows['occupation'], categories=sorted(users['occupation'].unique())).codes,
      np.digitize(ages, AGE_BINS)]).astype(np.int64)


def feature_bias_predictions(data: Ratings, train: pd.DataFrame, eval_: pd.DataFrame,
                             users: pd.DataFrame, reg_u: float, reg_i: float,
                             reg_f: float) -> np.ndarray:
  """Biases, and for a user train lacks, a user bias from their features (gender,
  occupation, age band), fitted on what the item biases leave of train's ratings."""
  mu, bu, bi = fit_biases(data.users, data.items, data.ratings, data.n_users, data.n_items,
                          reg_u, reg_i)
  biases = fit_feature_biases(user_codes(train['user_id'], users),
                              data.ratings - mu - bi[data.items], reg_f)
  codes = user_codes(eval_['user_id'], users)
  from_features = sum(b[np.minimum(codes[:, j], len(b) - 1)] for j, b in enumerate(biases))
  bu, bi = np.append(bu, 0.0), np.append(bi, 0.0)
  user_bias = np.where(data.eval_users < data.n_users, bu[data.eval_users], from_features)
  return np.clip(mu + user_bias + bi[data.eval_items], *data.scale)


def rating_rows(train: pd.DataFrame, eval_: pd.DataFrame, users: pd.DataFrame,
                returning: np.ndarray, val_train: pd.DataFrame, val_eval: pd.DataFrame
                ) -> Tuple[Dict[str, Dict], Dict[str, np.ndarray]]:
  """Each rating model's row: settings chosen on the validation cut by RMSE, refitted on
  train, scored on eval. Returns the rows and each row's eval predictions."""
  from surprise import KNNBaseline, SVD, SVDpp, BaselineOnly
  full, val = ratings_of(train, eval_), ratings_of(val_train, val_eval)
  val_truth = val_eval['rating'].to_numpy(np.float64)
  truth = eval_['rating'].to_numpy(np.float64)
  rows, predictions, val_predictions = {}, {}, {}

  def row(name, predict: Callable[[str, bool], np.ndarray], settings: Iterable[str]):
    """``predict(setting, on_validation)`` -> predictions of that cut's eval rows."""
    start = time.perf_counter()
    grid = {}
    for s in settings:
      p = predict(s, True)
      grid[s] = round(rmse(p, val_truth), 4)
      val_predictions.setdefault(name, {})[s] = p
    chosen = choose(grid, lower_is_better=True) if grid else None
    p = predict(chosen, False)
    rows[name] = dict(rmse_breakdown(p, truth, returning),
                      chosen=chosen if len(grid) > 1 else None,
                      validation=grid if len(grid) > 1 else None,
                      seconds=round(time.perf_counter() - start, 1))
    predictions[name] = p
    if chosen is not None:
      val_predictions[name] = val_predictions[name][chosen]
    return chosen

  cut = lambda v: (val_train, val_eval, val) if v else (train, eval_, full)
  row('global mean', lambda s, v: np.full(len(cut(v)[1]), cut(v)[2].ratings.mean()),
      ['-'])
  row('biases (surprise BaselineOnly, the benchmark\'s)',
      lambda s, v: temporal.surprise_predictions(BaselineOnly(verbose=False), *cut(v)[:2]),
      ['defaults'])
  regs = {f'reg_u={ru:g}, reg_i={ri:g}': (ru, ri) for ru in BIAS_REGS for ri in BIAS_REGS}
  chosen = row('biases, tuned shrinkage',
               lambda s, v: bias_predictions(cut(v)[2], *regs[s]), regs)
  reg_u, reg_i = regs[chosen]
  drift = {f'half-life {h} days, reg_i={ri:g}': (h, ri) for h in DRIFT_HALF_LIVES
           for ri in BIAS_REGS}
  row('biases, time-decayed item biases (drift)',
      lambda s, v: bias_predictions(cut(v)[2], reg_u, drift[s][1], drift[s][0]), drift)
  feats = {f'reg_f={r:g}': r for r in FEATURE_REGS}
  row('biases + user-feature biases for new users',
      lambda s, v: feature_bias_predictions(cut(v)[2], *cut(v)[:2], users, reg_u, reg_i,
                                            feats[s]), feats)
  row('SVD (surprise defaults)',
      lambda s, v: temporal.surprise_predictions(SVD(random_state=0), *cut(v)[:2]),
      ['defaults'])
  svd = {json.dumps(g): g for g in SVD_GRID}
  row('SVD, tuned', lambda s, v: temporal.surprise_predictions(
      SVD(random_state=0, **svd[s]), *cut(v)[:2]), svd)
  row('SVD++ (the benchmark\'s settings)', lambda s, v: temporal.surprise_predictions(
      SVDpp(random_state=0, cache_ratings=True), *cut(v)[:2]), ['defaults'])
  svdpp = {json.dumps(g): g for g in SVDPP_GRID}
  row('SVD++, tuned', lambda s, v: temporal.surprise_predictions(
      SVDpp(random_state=0, cache_ratings=True, **svdpp[s]), *cut(v)[:2]), svdpp)
  knn = {f'k={k}': k for k in KNN_BASELINE_KS}
  row('KNNBaseline (item-item, pearson_baseline)', lambda s, v: temporal.surprise_predictions(
      KNNBaseline(k=knn[s], sim_options={'name': 'pearson_baseline', 'user_based': False},
                  verbose=False), *cut(v)[:2]), knn)

  # Stacking: a linear blend of the rows above, its weights fitted on the validation
  # predictions of each row's chosen setting, applied to the full-train predictions.
  start = time.perf_counter()
  names = [n for n in predictions if n != 'global mean']
  weights = fit_linear_blend(np.column_stack([val_predictions[n] for n in names]), val_truth,
                             nonnegative=True)
  blended = np.clip(apply_linear_blend(weights, np.column_stack([predictions[n]
                                                                 for n in names])), 1, 5)
  rows['linear blend of the rows above (non-negative weights fitted on validation)'] = dict(
      rmse_breakdown(blended, truth, returning),
      chosen='intercept {:.2f}; '.format(weights[0]) + ', '.join(
          f'{w:.2f} × {n.split(" (")[0]}' for w, n in zip(weights[1:], names) if w > 0),
      seconds=round(time.perf_counter() - start + sum(rows[n]['seconds'] for n in names), 1))
  predictions['linear blend'] = blended
  return rows, predictions


def rmse_breakdown(predicted: np.ndarray, truth: np.ndarray, returning: np.ndarray
                   ) -> Dict[str, float]:
  return {f'rmse {g}': rmse(predicted[m], truth[m])
          for g, m in zip(GROUPS, temporal._masks(returning))}


def pipeline_rating_rows(out_dir: str, eval_: pd.DataFrame, returning: np.ndarray,
                         predictions: Dict[str, np.ndarray], seconds: Dict[str, float]
                         ) -> Dict[str, Dict]:
  """The ranking model's RMSE, and its blends with the bias and SVD++ rows: equal weights
  (fixed beforehand), and least squares on eval (an upper bound: no validation model).
  seconds: the RankingTrainer's and predicting here (blends: plus the other model's row)."""
  start = time.perf_counter() - trainer_seconds(out_dir, 'RankingTrainer')
  ranking, name = ranking_predictions(out_dir, eval_)
  if ranking is None:
    return {}
  truth = eval_['rating'].to_numpy(np.float64)
  own = time.perf_counter() - start
  rows = {f'pipeline ranking ({name})': dict(rmse_breakdown(ranking, truth, returning),
                                             seconds=round(own, 1))}
  for other in ('biases, tuned shrinkage', 'SVD++ (the benchmark\'s settings)',
                'biases + user-feature biases for new users'):
    both = np.column_stack([ranking, predictions[other]])
    rows[f'pipeline ranking + {other}, equal weights'] = dict(rmse_breakdown(
        both.mean(axis=1), truth, returning), chosen='fixed beforehand: 0.5 + 0.5',
        seconds=round(own + seconds[other], 1))
    weights = fit_linear_blend(both, truth)
    rows[f'pipeline ranking + {other}, least squares on eval (upper bound)'] = dict(
        rmse_breakdown(np.clip(apply_linear_blend(weights, both), 1, 5), truth, returning),
        chosen=f'{weights[0]:+.2f} {weights[1]:+.2f} × ranking {weights[2]:+.2f} × other',
        eval_read=True, seconds=round(own + seconds[other], 1))
  return rows


# ---------------------------------------------------------------- report


def _fmt(value) -> str:
  if isinstance(value, float):
    return '' if np.isnan(value) else f'{value:.4f}'
  return '' if value is None else str(value)


def table(rows: Dict[str, Dict], columns: Sequence[str]) -> str:
  lines = ['| model | ' + ' | '.join(columns) + ' | setting (chosen on validation unless said) | seconds |',
           '|' + ' --- |' * (len(columns) + 3)]
  for name, m in rows.items():
    chosen = ('read on eval, not chosen' if m.get('eval_read') and not m.get('chosen')
              else m.get('chosen') or '')
    if m.get('eval_read') and m.get('chosen'):
      chosen = (m['chosen'] if m['chosen'].startswith('upper bound')
                else f'fitted on eval: {m["chosen"]}')
    seconds = m.get('seconds')
    lines.append(f'| {name} | ' + ' | '.join(_fmt(m.get(c)) for c in columns)
                 + f' | {chosen} | {"" if seconds is None else f"{seconds:.1f}"} |')
  return '\n'.join(lines)


def grids(rows: Dict[str, Dict], what: str) -> List[str]:
  lines = []
  for name, m in rows.items():
    if m.get('validation') and len(m['validation']) > 1:
      cells = '; '.join(f'**{s}: {v:.4f}**' if s == m.get('chosen') else f'{s}: {v:.4f}'
                        for s, v in m['validation'].items())
      lines.append(f'- {name} ({what}): {cells}')
  return lines


RETRIEVAL_COLUMNS = tuple(f'top_{k}_unseen {g}' for k in (10, 100) for g in GROUPS)
RATING_COLUMNS = tuple(f'rmse {g}' for g in GROUPS)


def targets(retrieval: Dict[str, Dict], ratings: Dict[str, Dict]) -> List[str]:
  """The issue's two missed targets against the best chosen and the best eval-read rows."""
  recent = retrieval['most popular lately (benchmark window)']['top_100_unseen returning']
  bar = temporal.RETURNING_OVER_RECENT * recent
  svdpp = ratings['SVD++ (the benchmark\'s settings)']['rmse all']
  lines = []
  for eval_read in (False, True):
    pick = {n: m for n, m in retrieval.items() if bool(m.get('eval_read')) == eval_read}
    if pick:
      best = max(pick, key=lambda n: pick[n]['top_100_unseen returning'])
      value = pick[best]['top_100_unseen returning']
      lines.append(f'- returning users top_100_unseen ≥ 1.10 × the recent list ({bar:.4f}), '
                   f'best {"eval-read (upper bound)" if eval_read else "chosen"} row: '
                   f'{best}, {value:.4f}: {"reached" if value >= bar else "not reached"}')
    pick = {n: m for n, m in ratings.items() if bool(m.get('eval_read')) == eval_read}
    if pick:
      best = min(pick, key=lambda n: pick[n]['rmse all'])
      value = pick[best]['rmse all']
      lines.append(f'- RMSE < SVD++ ({svdpp:.4f}), best '
                   f'{"eval-fitted (upper bound)" if eval_read else "chosen"} row: {best}, '
                   f'{value:.4f}: {"reached" if value < svdpp else "not reached"}')
  return lines


def report(retrieval, ratings, sizes, commit, work_dir) -> str:
  return '\n'.join([
      '# Ceiling on the time split (latest 20% of MovieLens-100K)', '',
      f'{datetime.date.today().isoformat()}, commit {commit}, {os.cpu_count()} cores '
      f'(`python -m benchmarks.ceiling_temporal --work-dir {work_dir}`).', '',
      f'The rows of benchmarks/TEMPORAL.md: eval {sizes["all"][0]} rows, returning users '
      f'{sizes["returning"][0]} rows ({sizes["returning"][1]} users), new users '
      f'{sizes["new"][0]} rows ({sizes["new"][1]} users). top_k_unseen by '
      'core.retrieval_metrics (whole catalogue, the user\'s train items removed, ties '
      'against). Each row\'s settings were chosen on the latest 20% of train predicted from '
      'the rows before (retrieval: top_100_unseen of all validation rows; ratings: RMSE), then '
      'refitted on all of train. Rows marked "read on eval" or "fitted on eval" blend the '
      'pipeline\'s models, which learnt the validation rows, so no weight could be chosen '
      'inside train: their best cell is an upper bound. seconds: choice on validation + fit + '
      'scoring (an eval-read best cell: scoring its grid on eval); pipeline rows: its '
      'Trainer\'s seconds (the run\'s metrics.json) + loading and scoring here, plus the '
      'blended baseline\'s row.', '',
      '## Retrieval', '', table(retrieval, RETRIEVAL_COLUMNS), '',
      '## Ratings (RMSE of the eval ratings)', '', table(ratings, RATING_COLUMNS), '',
      '## The issue\'s two missed targets', ''] + targets(retrieval, ratings) + [
      '', '## Validation grids (the chosen setting in bold)', ''] + grids(
          retrieval, 'validation top_100_unseen') + grids(ratings, 'validation RMSE') + [''])


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--work-dir', default=os.path.join(REPO, 'out', 'benchmark-temporal'),
                      help='what `python -m benchmarks.temporal --work-dir DIR` wrote: '
                      'split-time/ and out/')
  parser.add_argument('--output-dir', help='the pipeline run to read (default WORK_DIR/out)')
  parser.add_argument('--results',
                      default=os.path.join(REPO, 'benchmarks', 'CEILING_TEMPORAL.md'))
  args = parser.parse_args(argv)
  from benchmarks.scale import current_commit
  from benchmarks.split import load_split
  split_dir = os.path.join(args.work_dir, 'split-time')
  temporal.write_time_split(temporal.DATA, split_dir)  # the benchmark's rows, byte for byte
  train, eval_, items, users = load_split(split_dir)
  full, val = make_cut(train, eval_, items), validation_cut(train, items)
  retrieval, keep = retrieval_rows(train, eval_, items, full, val)
  ratings, predictions = rating_rows(train, eval_, users, full.ev.returning, val.train,
                                     val.eval_)
  out_dir = args.output_dir or os.path.join(args.work_dir, 'out')
  if os.path.isfile(os.path.join(out_dir, 'metrics.json')):
    retrieval.update(pipeline_retrieval_rows(out_dir, full, keep))
    ratings.update(pipeline_rating_rows(out_dir, eval_, full.ev.returning, predictions,
                                        {n: m['seconds'] for n, m in ratings.items()}))
  else:
    print(f'no finished pipeline run in {out_dir}: its rows are left out', file=sys.stderr)
  text = report(retrieval, ratings, temporal.group_sizes(eval_, full.ev), current_commit(),
                os.path.relpath(args.work_dir) if args.work_dir.startswith(REPO)
                else args.work_dir)
  print(text)
  with open(args.results, 'w') as f:
    f.write(text)
  return 0


if __name__ == '__main__':
  sys.exit(main())
