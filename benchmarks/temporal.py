"""Quality benchmark on a temporal split: the past predicts the latest 20% of interactions.

    python -m benchmarks.temporal [--work-dir DIR] [--skip-pipeline | --output-dir OUT]
                                  [runner flags...]

The seed-42 split (benchmarks/quality.py) hides random interactions, so every eval user is
known and a film's whole life is in train. Here eval is what came last: the rows at or after
``core.recent_popularity.time_cut`` of the timestamps (the rule of the pipeline's own time
split), train everything before. Most eval rows then come from users train has never seen,
and what was popular lately beats what was popular overall.

The pipeline runs once on that split (``local_runner.py``, a separate process); the baselines
are trained in this process. Every top-k figure is the rule of core.retrieval_metrics (whole
items.csv catalogue, ties against, the user's train items removed) and is broken down into
all eval rows, returning users (at least one train interaction) and new users (none).
Whatever a baseline tunes (the recency window, EASE's λ) is chosen on a validation cut inside
train, never on eval. The table goes to stdout and to benchmarks/TEMPORAL.md.
"""
import argparse
import datetime
import glob
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # run as `python benchmarks/temporal.py`
  sys.path.insert(0, REPO)

from benchmarks import baselines, live, split  # noqa: E402
from core import recent_popularity as rp  # noqa: E402
from core.retrieval_metrics import top_k_rates  # noqa: E402

DATA = os.path.join(REPO, 'data', 'movielens-100k')
GROUPS = ('all', 'returning', 'new')
METRICS = ('top_10_unseen', 'top_100_unseen')
EASE_LAMBDAS = (100.0, 300.0, 500.0, 1000.0)
VALIDATION_SHARE = 0.2
LABELS = {
    'popular': 'most popular (all train)',
    'recent': 'most popular lately',
    'ease': 'EASE',
    'svdpp': 'SVD++ (scikit-surprise)',
    'biases': 'global mean + user/item biases',
    'retrieval': 'pipeline: retrieval (two-tower)',
    'ranking': 'pipeline: ranking',
    'feed': 'pipeline: feed (its top 10, the candidate that leaves out train)',
}
# The bars for the pipeline on this split.
RETURNING_OVER_RECENT = 1.10
MIN_TOP_100_UNSEEN = 0.31
TARGETS = ('targets: returning users top_100_unseen ≥ 1.10 × recent-popularity list; '
           'new users ≥ the list; overall top_100_unseen ≥ 0.31; RMSE < SVD++; the feed\'s '
           'top 10: returning users ≥ 1.10 × the list\'s top_10_unseen, new users ≥ the list\'s')
# The bars for the live reading: the model with the request's history against the
# recent list, both with the history removed.
LIVE_BARS = (('new, earlier click', 1.5), ('returning', 1.25))
LIVE_LABELS = {
    'list': 'most popular lately (the offline row\'s window)',
    'ease': 'EASE over the request\'s history (λ of the offline row)',
    'towers': 'pipeline: retrieval, no history (embed_users)',
    'model': 'pipeline: retrieval with the request\'s history (embed_users_with_history)',
}


def write_time_split(data_dir: str, out_dir: str, eval_share: float = 0.2) -> int:
  """Writes OUT/train/interactions.csv and OUT/eval/interactions.csv, copies the side tables.

  Eval is every row with a timestamp at or after time_cut (ties at the cut included), train
  the rest, each in file order; every column is read as text so the rows are written
  byte-for-byte as read. Returns the cut.
  """
  interactions = split.read_interactions(data_dir)
  timestamps = interactions['timestamp'].astype(np.int64).to_numpy()
  cut = rp.time_cut(timestamps, eval_share)
  split.write_split(data_dir, out_dir, interactions,
                    {'train': timestamps < cut, 'eval': timestamps >= cut})
  return cut


class EvalRows(NamedTuple):
  """The eval rows as every scorer here needs them, over the items.csv catalogue."""
  item_index: Dict[str, int]
  x: np.ndarray          # binary train user x item matrix; its last row: users train lacks
  users: np.ndarray      # each eval row's row of x
  target: np.ndarray     # each eval row's item column
  returning: np.ndarray  # bool: the eval row's user has a train interaction
  seen: List[np.ndarray]  # each eval row's user's train item columns


def eval_rows(train: pd.DataFrame, eval_: pd.DataFrame, items: pd.DataFrame) -> EvalRows:
  item_index = baselines._catalogue(items)
  x, users = baselines._train_matrix(train, eval_, item_index)
  by_user = {u: np.flatnonzero(x[u]) for u in np.unique(users)}
  return EvalRows(item_index, x, users, baselines._item_columns(eval_, item_index),
                  users < x.shape[0] - 1, [by_user[u] for u in users])


def _masks(returning: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """The rows of each of GROUPS."""
  return np.ones(len(returning), bool), returning, ~returning


def group_sizes(eval_: pd.DataFrame, ev: EvalRows) -> Dict[str, Tuple[int, int]]:
  """(eval rows, distinct users) of each group."""
  users = eval_['user_id'].astype(str).to_numpy()
  return {g: (int(m.sum()), len(np.unique(users[m])))
          for g, m in zip(GROUPS, _masks(ev.returning))}


def breakdown(ranks: np.ndarray, returning: np.ndarray) -> Dict[str, float]:
  """top_k_unseen of all eval rows, returning users' and new users': keys 'METRIC GROUP'."""
  out = {}
  for group, mask in zip(GROUPS, _masks(returning)):
    rates = top_k_rates(ranks[mask], baselines.UNSEEN_KS)
    out.update({f'{k}_unseen {group}': v for k, v in rates.items()})
  return out


def list_ranks(scores: np.ndarray, ev: EvalRows) -> np.ndarray:
  """Ranks under one list shared by every user, the user's train items removed."""
  return rp.ranks_unseen(scores, ev.target, ev.seen)


def matrix_ranks(score_rows: Callable[[slice], np.ndarray], ev: EvalRows) -> np.ndarray:
  """Ranks under per-row scores (``score_rows(rows)``), the user's train items removed."""
  return baselines._ranks(score_rows, ev.target, lambda rows: ev.x[ev.users[rows]] > 0)


def choose_ease_lambda(train: pd.DataFrame, items: pd.DataFrame,
                       lambdas: Sequence[float] = EASE_LAMBDAS, k: int = 100,
                       validation_share: float = VALIDATION_SHARE
                       ) -> Tuple[float, Dict[float, float]]:
  """EASE's λ by top-k_unseen of the latest ``validation_share`` of train (time_cut) predicted
  from the rows before; it reads train only. Ties go to the larger λ (the smoother model)."""
  timestamps = train['timestamp'].to_numpy(np.int64)
  cut = rp.time_cut(timestamps, validation_share)
  ev = eval_rows(train[timestamps < cut], train[timestamps >= cut], items)
  shares = {}
  for lam in lambdas:
    b = baselines.ease_weights(ev.x, lam)
    ranks = matrix_ranks(lambda rows: ev.x[ev.users[rows]] @ b, ev)
    shares[lam] = float(np.mean(ranks < k))
  return max(shares, key=lambda lam: (shares[lam], lam)), shares


def _timed(fn: Callable[[], Dict]) -> Dict:
  start = time.perf_counter()
  out = fn()
  out['seconds'] = round(time.perf_counter() - start, 2)
  return out


def popularity_rows(train: pd.DataFrame, ev: EvalRows) -> Dict[str, Dict]:
  """The all-time and the recent most-popular lists (the window chosen inside train)."""
  items = baselines._item_columns(train, ev.item_index)
  timestamps = train['timestamp'].to_numpy(np.int64)
  n = len(ev.item_index)

  def popular():
    return breakdown(list_ranks(rp.counts(items, timestamps, n, int(timestamps.max()) + 1,
                                          None), ev), ev.returning)

  def recent():
    scores, info = rp.recent_list_scores(train['user_id'].to_numpy(str), items, timestamps, n)
    window = info['window_days']
    return dict(breakdown(list_ranks(scores, ev), ev.returning), scores=scores,
                chosen='all train' if window is None else f'last {window} days',
                validation={w: round(v, 4) for w, v in info['validation'].items()})

  return {'popular': _timed(popular), 'recent': _timed(recent)}


def ease_row(train: pd.DataFrame, items: pd.DataFrame, ev: EvalRows,
             lambdas: Sequence[float] = EASE_LAMBDAS, k: int = 100) -> Dict:
  """EASE on all of train with the λ chosen on the validation cut; new users score 0 everywhere
  (no history), so they rank every item as a tie."""
  def fit():
    lam, shares = choose_ease_lambda(train, items, lambdas, k)
    b = baselines.ease_weights(ev.x, lam)
    return dict(breakdown(matrix_ranks(lambda rows: ev.x[ev.users[rows]] @ b, ev),
                          ev.returning),
                chosen=f'λ={lam:g}', weights=b,
                validation={f'{x:g}': round(v, 4) for x, v in shares.items()})
  return _timed(fit)


def surprise_predictions(algo, train: pd.DataFrame, eval_: pd.DataFrame) -> np.ndarray:
  """Fits a scikit-surprise algorithm on train and returns its rating of each eval row,
  clipped to the train ratings' range (surprise's rating_scale), as the pipeline's are."""
  from surprise import Dataset, Reader
  ratings = train[['user_id', 'item_id', 'rating']]
  scale = (float(ratings['rating'].min()), float(ratings['rating'].max()))
  algo.fit(Dataset.load_from_df(ratings, Reader(rating_scale=scale)).build_full_trainset())
  return np.array([algo.predict(u, i).est for u, i in
                   zip(eval_['user_id'].astype(str), eval_['item_id'].astype(str))])


def surprise_rmse(algo, train: pd.DataFrame, eval_: pd.DataFrame) -> Dict[str, float]:
  """Fits a scikit-surprise algorithm on train and returns its RMSE on eval (clipped
  predictions: surprise_predictions)."""
  error = surprise_predictions(algo, train, eval_) - eval_['rating'].to_numpy(np.float64)
  return {'rmse': float(np.sqrt(np.mean(error ** 2)))}


def rating_rows(train: pd.DataFrame, eval_: pd.DataFrame) -> Dict[str, Dict]:
  """SVD++ (surprise's defaults: 20 factors, 20 epochs) and the global mean plus regularised
  user and item biases (surprise's BaselineOnly, ALS), both fitted on train."""
  from surprise import SVDpp, BaselineOnly
  return {'svdpp': _timed(lambda: surprise_rmse(SVDpp(random_state=0, cache_ratings=True),
                                                train, eval_)),
          'biases': _timed(lambda: surprise_rmse(BaselineOnly(verbose=False), train, eval_))}


def run_baselines(train: pd.DataFrame, eval_: pd.DataFrame, items: pd.DataFrame,
                  ev: Optional[EvalRows] = None) -> Dict[str, Dict]:
  ev = ev or eval_rows(train, eval_, items)
  rows = popularity_rows(train, ev)
  rows['ease'] = ease_row(train, items, ev)
  rows.update(rating_rows(train, eval_))
  return rows


def retrieval_model_dir(out_dir: str) -> Tuple[Optional[str], bool]:
  """(the newest pushed retrieval model, True), else the newest trained one, unpushed (False)."""
  from core import publish
  pushed = publish.latest_version(os.path.join(out_dir, 'serving', 'retrieval'))
  if pushed:
    return pushed, True
  trained = glob.glob(os.path.join(out_dir, 'pipeline', 'RetrievalTrainer', 'model', '*',
                                   'Format-Serving'))
  trained.sort(key=lambda p: int(os.path.basename(os.path.dirname(p))))
  return (trained[-1] if trained else None), False


def retrieval_ranks(model_dir: str, eval_: pd.DataFrame, ev: EvalRows) -> np.ndarray:
  """Ranks under a retrieval export's scores: its embed_users by its embed_items, as served
  (users it does not know get its cold-start vector)."""
  import tensorflow as tf
  from core.artifacts import embed
  model = tf.saved_model.load(model_dir)
  users, user_row = np.unique(eval_['user_id'].astype(str).to_numpy(), return_inverse=True)
  user_emb = embed(model.signatures['embed_users'], users).astype(np.float64)
  item_emb = embed(model.signatures['embed_items'],
                   np.array(list(ev.item_index))).astype(np.float64)
  return matrix_ranks(lambda rows: user_emb[user_row[rows]] @ item_emb.T, ev)


def feed_model_dir(out_dir: str) -> Optional[str]:
  """The run's candidate feed (FeedModelBuilder's ``candidate``: it leaves out the train split
  only; the feed to push leaves out eval too, so it cannot be scored on eval)."""
  found = glob.glob(os.path.join(out_dir, 'pipeline', 'FeedModelBuilder', 'candidate', '*',
                                 'Format-Serving'))
  found.sort(key=lambda p: int(os.path.basename(os.path.dirname(p))))
  return found[-1] if found else None


def feed_hits(model_dir: str, eval_: pd.DataFrame, batch: int = 256) -> np.ndarray:
  """Whether each eval row's item is in its user's list from the feed's ``recommend``."""
  import tensorflow as tf
  recommend = tf.saved_model.load(model_dir).signatures['recommend']
  users, user_row = np.unique(eval_['user_id'].astype(str).to_numpy(), return_inverse=True)
  lists = np.concatenate([recommend(user_id=tf.constant(users[s:s + batch]))['item_ids']
                          .numpy() for s in range(0, len(users), batch)]).astype(str)
  items = eval_['item_id'].astype(str).to_numpy()
  return (lists[user_row] == items[:, np.newaxis]).any(axis=1)


def feed_breakdown(hits: np.ndarray, returning: np.ndarray, k: int) -> Dict[str, float]:
  """The feed's hit rate of each group, keyed as the lists' top_k_unseen: a feed's list is
  its user's k best unseen items, so both are the share of eval rows in that list."""
  return {f'top_{k}_unseen {g}': float(hits[m].mean()) if m.any() else None
          for g, m in zip(GROUPS, _masks(returning))}


def pipeline_rows(out_dir: str, eval_: pd.DataFrame, ev: EvalRows
                  ) -> Tuple[Dict[str, Dict], Dict]:
  """The retrieval model scored here by its embed signatures (so it gets the breakdown), and
  the ranking RMSE from the run's metrics.json. Returns (rows, metrics.json)."""
  with open(os.path.join(out_dir, 'metrics.json')) as f:
    metrics = json.load(f)
  seconds = {n: c.get('seconds') or 0.0 for n, c in (metrics.get('components') or {}).items()}
  rows = {}
  model_dir, pushed = retrieval_model_dir(out_dir)
  if model_dir:
    start = time.perf_counter()
    ranks = retrieval_ranks(model_dir, eval_, ev)
    rows['retrieval'] = dict(
        breakdown(ranks, ev.returning),
        chosen=os.path.relpath(model_dir, out_dir) + ('' if pushed else ', not pushed'),
        seconds=round(seconds.get('RetrievalTrainer', 0.0) + time.perf_counter() - start, 2))
  if (metrics.get('ranking') or {}).get('rmse') is not None:
    rows['ranking'] = {'rmse': metrics['ranking']['rmse'],
                       'seconds': seconds.get('RankingTrainer')}
  feed_dir = feed_model_dir(out_dir)
  if feed_dir:
    start = time.perf_counter()
    hits = feed_hits(feed_dir, eval_)
    rows['feed'] = dict(feed_breakdown(hits, ev.returning, 10), seconds=round(
        seconds.get('FeedModelBuilder', 0.0) + time.perf_counter() - start, 2))
  return rows, metrics


def live_reading(train: pd.DataFrame, eval_: pd.DataFrame, ev: EvalRows,
                 rows: Dict[str, Dict], model_dir: Optional[str]) -> List[str]:
  """The live reading's section of the report (benchmarks/live.py): the recent list and EASE
  of the offline rows, and the pushed retrieval model without and with the request's history.
  """
  lr = live.live_rows(train, eval_, ev.item_index)
  catalogue = np.array(list(ev.item_index), dtype=object)
  scorers = {'list': live.list_scores(rows['recent']['scores']),
             'ease': live.ease_scores(rows['ease']['weights'], lr)}
  if model_dir:
    import tensorflow as tf
    model = tf.saved_model.load(model_dir)
    scorers['towers'] = live.model_scores(model, lr, catalogue, with_history=False)
    if 'embed_users_with_history' in model.signatures:  # exports before it have no such input
      scorers['model'] = live.model_scores(model, lr, catalogue)
  found = {}
  for key, score in scorers.items():
    start = time.perf_counter()
    found[key] = dict(live.breakdown(live.ranks(score, lr), lr),
                      seconds=round(time.perf_counter() - start, 2))
  n = live.sizes(lr)
  lines = ['## Live reading: each eval row predicted from everything its user did before it',
           '', f'The same {len(lr.target)} eval rows, each scored as a request made just '
           f'before it: the history sent is the user\'s latest {live.SENT} items (train and '
           'eval, strictly earlier timestamps), most recent first; the models are the ones '
           'above, trained on train only; the history\'s items are removed from every ranking. '
           f"Returning users: {n['returning']} rows; new users with an earlier click: "
           f"{n['new, earlier click']}; new users' first clicks: {n['new, first click']}.", '',
           live.table(found, LIVE_LABELS), '',
           'targets: ' + '; '.join(f'{g} ≥ {f:g} × the list' for g, f in LIVE_BARS), '']
  lines += [f'- {name}' + ('' if met is None else (': met' if met else ': MISSED'))
            for name, met in live.ratio_targets(found, LIVE_BARS)]
  return lines + ['']


def check_targets(rows: Dict[str, Dict]) -> List[Tuple[str, Optional[bool]]]:
  """Each of the issue's targets for the pipeline's rows: (what was compared, met?); met is
  None when the row the target needs is missing."""
  out = []

  def target(name, row, key, bar, higher=True):
    value = (rows.get(row) or {}).get(key)
    if value is None or bar is None:
      out.append((f'{name}: no {LABELS[row]} row', None))
      return
    met = value >= bar if higher else value < bar
    out.append((f"{name}: {value:.4f} {'≥' if higher else '<'} {bar:.4f}", bool(met)))

  recent = rows['recent']
  target('returning users top_100_unseen vs 1.10 × the recent list', 'retrieval',
         'top_100_unseen returning', RETURNING_OVER_RECENT * recent['top_100_unseen returning'])
  target('new users top_100_unseen vs the recent list', 'retrieval', 'top_100_unseen new',
         recent['top_100_unseen new'])
  target('overall top_100_unseen', 'retrieval', 'top_100_unseen all', MIN_TOP_100_UNSEEN)
  target('ranking RMSE vs SVD++', 'ranking', 'rmse', (rows.get('svdpp') or {}).get('rmse'),
         higher=False)
  target("the feed's top 10, returning users vs 1.10 × the list's", 'feed',
         'top_10_unseen returning', RETURNING_OVER_RECENT * recent['top_10_unseen returning'])
  target("the feed's top 10, new users vs the list's", 'feed', 'top_10_unseen new',
         recent['top_10_unseen new'])
  return out


def _fmt(value) -> str:
  return f'{value:.4f}' if isinstance(value, float) else ('' if value is None else str(value))


def table(rows: Dict[str, Dict]) -> str:
  columns = [f'{m} {g}' for m in METRICS for g in GROUPS] + ['rmse', 'seconds']
  lines = ['| model | ' + ' | '.join(columns) + ' |', '|' + ' --- |' * (len(columns) + 1)]
  for key, metrics in rows.items():
    name = LABELS[key] + (f" ({metrics['chosen']})" if metrics.get('chosen') else '')
    lines.append(f'| {name} | ' + ' | '.join(
        f"{metrics['seconds']:.1f}" if c == 'seconds' and metrics.get(c) is not None
        else _fmt(metrics.get(c)) for c in columns) + ' |')
  return '\n'.join(lines)


def report(rows: Dict[str, Dict], sizes: Dict[str, Tuple[int, int]], cut: int,
           commit: str, pipeline: Optional[Dict] = None,
           pipeline_seconds: Optional[float] = None, live_lines: Sequence[str] = ()) -> str:
  day = lambda t: datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime('%Y-%m-%d')
  lines = [
      '# Quality benchmark (temporal split of MovieLens-100K)', '',
      f'{datetime.date.today().isoformat()}, commit {commit}, {os.cpu_count()} cores'
      + (f'; pipeline wall time {pipeline_seconds:.0f} s' if pipeline_seconds else '')
      + ' (`python -m benchmarks.temporal`).', '',
      f'Eval: the {sizes["all"][0]} interactions at or after {day(cut)} (`time_cut`, the '
      f'latest 20% by timestamp); train: everything earlier. Returning users (with train '
      f'interactions): {sizes["returning"][0]} eval rows of {sizes["returning"][1]} users; '
      f'new users: {sizes["new"][0]} eval rows of {sizes["new"][1]} users.', '',
      'top_k_unseen: share of eval interactions whose item is among the user\'s k best-scored '
      'items of the whole catalogue, the user\'s train items removed, ties against. The '
      'recency window and EASE\'s λ were chosen on the latest 20% of train, predicted from the '
      'rows before (validation top_100_unseen: '
      + '; '.join(f"{LABELS[k]} {json.dumps(rows[k]['validation'])}" for k in ('recent', 'ease')
                  if rows.get(k, {}).get('validation')) + '). '
      'rmse: eval ratings. seconds: fit + scoring (pipeline retrieval: its Trainer + scoring '
      'here; ranking: its Trainer).', '',
      table(rows), '']
  feed = (pipeline or {}).get('feed') or {}
  if feed.get('hit_rate_at_10') is not None:
    lines += [f"Pipeline feed: hit_rate_at_10 {feed['hit_rate_at_10']:.4f} over all eval rows "
              f"(the run's metrics.json).", '']
  if (pipeline or {}).get('retrieval', {}).get('top_100_unseen') is not None:
    lines += [f"The RetrievalEvaluator's own top_100_unseen on this split: "
              f"{pipeline['retrieval']['top_100_unseen']:.4f} (blessed: "
              f"{pipeline['retrieval'].get('blessed')}).", '']
  lines += [TARGETS, '']
  lines += [f"- {name}" + ('' if met is None else (': met' if met else ': MISSED'))
            for name, met in check_targets(rows)]
  return '\n'.join(lines + [''] + list(live_lines))


def run_pipeline(data_dir: str, out_dir: str, flags: List[str]) -> Tuple[int, float]:
  """``local_runner.py`` on ``data_dir`` into a fresh ``out_dir`` (an earlier run's model
  would be this one's warm start and baseline), in a separate process; (exit code, seconds)."""
  shutil.rmtree(out_dir, ignore_errors=True)
  started = time.time()
  code = subprocess.call([sys.executable, os.path.join(REPO, 'local_runner.py'),
                          '--data-dir', data_dir, '--output-dir', out_dir] + flags,
                         cwd=REPO, env=dict(os.environ, PYTHONHASHSEED='0'))
  if code != 0:
    print('the pipeline run failed; see', os.path.join(out_dir, 'run.log'))
  return code, time.time() - started


def component_seconds(out_dir: str) -> Dict[str, float]:
  """Each component's seconds in a finished run (its metrics.json)."""
  with open(os.path.join(out_dir, 'metrics.json')) as f:
    metrics = json.load(f)
  return {n: c.get('seconds') or 0.0 for n, c in (metrics.get('components') or {}).items()}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--work-dir', default=os.path.join(REPO, 'out', 'benchmark-temporal'))
  parser.add_argument('--skip-pipeline', action='store_true', help='only the baselines')
  parser.add_argument('--output-dir', help='score this finished run instead of running one')
  parser.add_argument('--results', default=os.path.join(REPO, 'benchmarks', 'TEMPORAL.md'))
  args, runner_args = parser.parse_known_args(argv)

  from benchmarks.scale import current_commit
  from benchmarks.split import load_split

  split_dir = os.path.join(args.work_dir, 'split-time')
  cut = write_time_split(DATA, split_dir)
  out_dir, pipeline_seconds = args.output_dir, None
  if not args.skip_pipeline and not out_dir:
    out_dir = os.path.join(args.work_dir, 'out')
    # --no-refit: the pushed models are the gated candidates, which never saw eval
    # (benchmarks/refit.py measures what a refit gains on a later future).
    code, pipeline_seconds = run_pipeline(split_dir, out_dir, ['--no-refit'] + runner_args)
    if code != 0:
      return code

  train, eval_, items, _ = load_split(split_dir)
  ev = eval_rows(train, eval_, items)
  rows = run_baselines(train, eval_, items, ev)
  pipeline, model_dir = None, None
  if out_dir and not args.skip_pipeline:
    found, pipeline = pipeline_rows(out_dir, eval_, ev)
    rows.update(found)
    model_dir, _ = retrieval_model_dir(out_dir)
  live_lines = live_reading(train, eval_, ev, rows, model_dir)
  text = report(rows, group_sizes(eval_, ev), cut, current_commit(), pipeline, pipeline_seconds,
                live_lines)
  print(text)
  os.makedirs(os.path.dirname(args.results), exist_ok=True)
  with open(args.results, 'w') as f:
    f.write(text)
  return 0


if __name__ == '__main__':
  sys.exit(main())
