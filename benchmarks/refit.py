"""What the refit costs and gains, judged on a future the pipeline never saw.

    python -m benchmarks.refit [--work-dir DIR] [--past-share 0.8] [runner flags...]

MovieLens-100K is cut by time: the first 80% of the interactions ("the past") are given to
``local_runner.py`` as one folder, and the pipeline splits them as it does by default (its
eval window: the latest 20% of the past). The rest ("the future") is never shown to it. One
run gives both models of each kind: the gated candidate (``RetrievalTrainer`` /
``RankingTrainer``, which never learnt the eval window) and the refit, which learnt it and is
what the run pushed. Both are scored here on the future with the rules of benchmarks/temporal.py
(whole catalogue, the user's past items removed, returning and new users at the future's
cut), and the ranking models by RMSE on the future's ratings. The seconds are the run's
components' own (metrics.json). The table goes to stdout and to benchmarks/REFIT.md.
"""
import argparse
import glob
import os
import sys
from typing import Dict, Optional, Tuple

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # run as `python benchmarks/refit.py`
  sys.path.insert(0, REPO)

from benchmarks import split, temporal  # noqa: E402
from core import recent_popularity as rp  # noqa: E402

REFIT_COMPONENTS = ('RefitTransform', 'RetrievalRefit', 'RankingRefit')


def write_past(data_dir: str, out_dir: str, past_share: float
               ) -> Tuple[pd.DataFrame, pd.DataFrame]:
  """Writes the past as one folder (OUT/past: interactions.csv and the side tables, the
  layout local_runner.py splits itself); returns (the future's rows, the past's)."""
  interactions = split.read_interactions(data_dir)
  timestamps = interactions['timestamp'].astype(np.int64).to_numpy()
  cut = rp.time_cut(timestamps, 1.0 - past_share)
  past = os.path.join(out_dir, 'past')
  split.write_split(data_dir, past, interactions, {'.': timestamps < cut})
  return interactions[timestamps >= cut].reset_index(drop=True), interactions[timestamps < cut]


def _newest(pattern: str) -> Optional[str]:
  found = sorted(glob.glob(pattern), key=lambda p: int(p.split(os.sep)[-2]))
  return found[-1] if found else None


def ranking_rmse(model_dir: str, future: pd.DataFrame) -> Dict[str, float]:
  """RMSE of the ranking export's ``rank`` signature on the future's ratings, clipped to the
  ratings' range as the pipeline's predictions are."""
  import tensorflow as tf
  model = tf.saved_model.load(model_dir)
  rank = model.signatures['rank']
  users = future['user_id'].astype(str).to_numpy().astype(bytes)
  items = future['item_id'].astype(str).to_numpy().astype(bytes)
  predicted = np.concatenate([
      rank(user_id=tf.constant(users[i:i + 4096]),
           item_id=tf.constant(items[i:i + 4096]))['rating'].numpy()
      for i in range(0, len(users), 4096)])
  ratings = future['rating'].to_numpy(np.float64)
  predicted = np.clip(predicted, ratings.min(), ratings.max())
  return {'rmse': float(np.sqrt(np.mean((predicted - ratings) ** 2)))}


def score(out_dir: str, past: pd.DataFrame, future: pd.DataFrame,
          items: pd.DataFrame) -> Dict[str, Dict]:
  """The candidate and the refit (pushed) model of each kind, scored on the future."""
  from core import publish
  ev = temporal.eval_rows(past, future, items)
  pipeline = os.path.join(out_dir, 'pipeline')
  models = {
      'candidate': (_newest(os.path.join(pipeline, 'RetrievalTrainer', 'model', '*',
                                         'Format-Serving')),
                    _newest(os.path.join(pipeline, 'RankingTrainer', 'model', '*',
                                         'Format-Serving'))),
      'refit (pushed)': (publish.latest_version(os.path.join(out_dir, 'serving', 'retrieval')),
                         publish.latest_version(os.path.join(out_dir, 'serving', 'ranking'))),
  }
  rows = {}
  for name, (retrieval, ranking) in models.items():
    row = {}
    if retrieval:
      row.update(temporal.breakdown(temporal.retrieval_ranks(retrieval, future, ev),
                                    ev.returning))
    if ranking:
      row.update(ranking_rmse(ranking, future))
    rows[name] = row
  return rows


def table(rows: Dict[str, Dict], seconds: Dict[str, float]) -> str:
  columns = [f'{m} {g}' for m in temporal.METRICS for g in temporal.GROUPS] + ['rmse']
  lines = ['| model | ' + ' | '.join(columns) + ' | trainers\' seconds |',
           '| --- ' * (len(columns) + 2) + '|']
  trained = {'candidate': seconds.get('RetrievalTrainer', 0) + seconds.get('RankingTrainer', 0),
             'refit (pushed)': sum(seconds.get(c, 0) for c in REFIT_COMPONENTS)}
  for name, row in rows.items():
    cells = [temporal._fmt(row.get(c)) for c in columns]
    lines.append(f'| {name} | ' + ' | '.join(cells) + f' | {trained.get(name, 0):.0f} |')
  return '\n'.join(lines)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--work-dir', default=os.path.join(REPO, 'out', 'benchmark-refit'))
  parser.add_argument('--past-share', type=float, default=0.8)
  parser.add_argument('--output-dir', help='score this finished run (on the same past) '
                      'instead of running one')
  parser.add_argument('--results', default=os.path.join(REPO, 'benchmarks', 'REFIT.md'))
  args, runner_args = parser.parse_known_args(argv)
  from benchmarks.scale import current_commit

  future, past = write_past(temporal.DATA, args.work_dir, args.past_share)
  past_dir = os.path.join(args.work_dir, 'past')
  out_dir, run_seconds = args.output_dir, None
  if not out_dir:
    out_dir = os.path.join(args.work_dir, 'out')
    code, run_seconds = temporal.run_pipeline(past_dir, out_dir, runner_args)
    if code != 0:
      return code
  seconds = temporal.component_seconds(out_dir)
  items = pd.read_csv(os.path.join(past_dir, 'items.csv'), dtype=str, keep_default_na=False)
  rows = score(out_dir, past, future, items)
  total = sum(seconds.values())
  refit = sum(seconds.get(c, 0) for c in REFIT_COMPONENTS)
  text = '\n'.join([
      '# The refit: what it costs and what it gains on a future the pipeline never saw', '',
      f'Commit {current_commit()}; `python -m benchmarks.refit'
      + (' ' + ' '.join(runner_args) if runner_args else '') + '`.', '',
      f'The pipeline was given the first {args.past_share:.0%} of MovieLens-100K by time '
      f'({len(past):,} interactions; it held out its own latest 20% to judge the candidates); '
      f'both models of each kind are scored on the {len(future):,} interactions that came '
      'after, never shown to the run. top_k_unseen: whole catalogue, the user\'s past items '
      'removed; returning = the user is in the past. RMSE: the future\'s ratings.', '',
      table(rows, seconds), '',
      f'The refit\'s components took {refit:.0f} s of the run\'s {total:.0f} s of component '
      f'time ({refit / max(total, 1e-9):.0%})'
      + (f'; the whole run took {run_seconds:.0f} s.' if run_seconds else '.'), ''])
  print(text)
  with open(args.results, 'w') as f:
    f.write(text)
  return 0


if __name__ == '__main__':
  sys.exit(main())
