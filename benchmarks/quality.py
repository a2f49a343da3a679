"""Quality benchmark: the pipeline beside the classic baselines, on the seed-42 split.

    python -m benchmarks.quality [--work-dir DIR] [--skip-baselines] [runner flags...]

Builds the split of the quality issue (MovieLens-100K rows permuted with
numpy.random.default_rng(42), first 80% train), runs the whole pipeline on it, trains the
baselines in the same process, and prints one table, also written to benchmarks/RESULTS.md
with the date, the commit and the core count.

New users: for a sample of eval users the split's users.csv gets a copy of their row under a
new id ("new-<id>") with no interactions; the pushed models serve those ids from features only,
and their hits on the original user's eval items are compared with the most-popular list.
"""
import argparse
import datetime
import json
import os
import shutil
import sys
import time
from typing import Dict, List

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(REPO, 'data', 'movielens-100k')
NEW_PREFIX = 'new-'
COLUMNS = ['top_10', 'top_50', 'top_100', 'top_10_unseen', 'top_100_unseen', 'rmse']


def add_new_user_aliases(split_dir: str, count: int, seed: int = 0) -> List[str]:
  """Copies ``count`` eval users' users.csv rows under new ids that have no interactions."""
  users = pd.read_csv(os.path.join(split_dir, 'users.csv'), dtype=str)
  eval_users = pd.read_csv(os.path.join(split_dir, 'eval', 'interactions.csv'),
                           dtype=str)['user_id'].unique()
  chosen = np.random.default_rng(seed).choice(np.sort(eval_users), count, replace=False)
  aliases = users[users['user_id'].isin(chosen)].copy()
  aliases['user_id'] = NEW_PREFIX + aliases['user_id']
  pd.concat([users, aliases]).to_csv(os.path.join(split_dir, 'users.csv'), index=False)
  return sorted(chosen)


def new_user_hits(out_dir: str, split_dir: str, users: List[str]) -> Dict[str, Dict[str, float]]:
  """Hit rates at 10 and 100 of the model's list for 'new-<u>' vs the most-popular list."""
  import tensorflow as tf
  from pipeline.recommend import latest_version
  train = pd.read_csv(os.path.join(split_dir, 'train', 'interactions.csv'), dtype=str)
  eval_ = pd.read_csv(os.path.join(split_dir, 'eval', 'interactions.csv'), dtype=str)
  eval_ = eval_[eval_['user_id'].isin(users)]
  popular = train['item_id'].value_counts().index.to_numpy()
  model = tf.saved_model.load(latest_version(os.path.join(out_dir, 'serving'), 'retrieval'))
  ids = model.signatures['retrieve'](user_id=tf.constant([NEW_PREFIX + u for u in users]))
  lists = {u: [i.decode() for i in row] for u, row in zip(users, ids['item_ids'].numpy())}
  out = {}
  for name, get in (('features (new user)', lambda u: lists[u]),
                    ('most popular', lambda u: list(popular[:100]))):
    hits = {k: np.mean([i in set(get(u)[:k]) for u, i in
                        zip(eval_['user_id'], eval_['item_id'])]) for k in (10, 100)}
    out[name] = {f'top_{k}': float(v) for k, v in hits.items()}
  out['users'] = len(users)
  out['eval_interactions'] = int(len(eval_))
  return out


def _fmt(value) -> str:
  return f'{value:.3f}' if isinstance(value, float) else ('' if value is None else str(value))


def table(rows: Dict[str, Dict[str, float]]) -> str:
  head = '| model | ' + ' | '.join(COLUMNS) + ' | seconds |'
  lines = [head, '|' + ' --- |' * (len(COLUMNS) + 2)]
  for name, metrics in rows.items():
    lines.append(f'| {name} | ' + ' | '.join(_fmt(metrics.get(c)) for c in COLUMNS)
                 + f" | {_fmt(metrics.get('seconds'))} |")
  return '\n'.join(lines)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--work-dir', default=os.path.join(REPO, 'out', 'benchmark'))
  parser.add_argument('--new-users', type=int, default=200)
  parser.add_argument('--skip-baselines', action='store_true')
  parser.add_argument('--results', default=os.path.join(REPO, 'benchmarks', 'RESULTS.md'))
  args, runner_args = parser.parse_known_args(argv)

  import local_runner
  from benchmarks import baselines
  from benchmarks.scale import current_commit
  from benchmarks.split import write_seed_split

  split_dir = os.path.join(args.work_dir, 'split-seed42')
  out_dir = os.path.join(args.work_dir, 'out')
  # A fresh output folder: a model pushed by an earlier benchmark would be the warm start
  # of this one (and its blessing baseline), and the figures would depend on that history.
  shutil.rmtree(out_dir, ignore_errors=True)
  write_seed_split(DATA, split_dir)
  new_users = add_new_user_aliases(split_dir, args.new_users)

  started = time.time()
  # --no-refit: the pushed models, scored below, must not have learnt the eval rows.
  code = local_runner.main(['--data-dir', split_dir, '--output-dir', out_dir, '--no-cache',
                            '--no-refit'] + runner_args)
  pipeline_seconds = time.time() - started
  if code != 0:
    print('the pipeline run failed; see', os.path.join(out_dir, 'run.log'))
    return code
  with open(os.path.join(out_dir, 'metrics.json')) as f:
    metrics = json.load(f)
  seconds = {n: c['seconds'] for n, c in metrics['components'].items()}
  rows = {
      'pipeline: retrieval (two-tower)': dict(metrics['retrieval'],
                                              seconds=seconds.get('RetrievalTrainer')),
      'pipeline: ranking': dict(metrics['ranking'], seconds=seconds.get('RankingTrainer')),
  }
  if not args.skip_baselines:
    labels = {'most_popular': 'most popular (train counts)', 'ease': 'EASE (λ=500)',
              'tutorial_two_tower': 'TFRS tutorial two-tower',
              'seed_ranking_model': 'seed notebook ranking model'}
    for name, result in baselines.run_all(split_dir).items():
      rows[labels.get(name, name)] = result
  cold = new_user_hits(out_dir, split_dir, new_users)

  commit = current_commit()
  report = '\n'.join([
      '# Quality benchmark (seed-42 split of MovieLens-100K)', '',
      f'{datetime.date.today().isoformat()}, commit {commit}, {os.cpu_count()} cores; '
      f'pipeline wall time {pipeline_seconds:.0f} s (`make benchmark`).', '',
      'top_k: share of eval interactions whose item is among the user\'s k best-scored items '
      'over the whole catalogue (ties against); _unseen: the user\'s train items removed. '
      'seconds: training time (pipeline) or fit + scoring (baselines).', '',
      table(rows), '',
      f"## New users ({cold['users']} eval users served under a new id from their "
      f"users.csv features only; {cold['eval_interactions']} eval interactions)", '',
      '| list | top_10 | top_100 |', '| --- | --- | --- |',
      *[f"| {n} | {m['top_10']:.3f} | {m['top_100']:.3f} |" for n, m in cold.items()
        if isinstance(m, dict)], ''])
  print(report)
  os.makedirs(os.path.dirname(args.results), exist_ok=True)
  with open(args.results, 'w') as f:
    f.write(report)
  return 0


if __name__ == '__main__':
  sys.path.insert(0, REPO)
  sys.exit(main())
