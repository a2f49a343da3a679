"""Serving latency benchmark: the feed's `recommend` at MovieLens size and at 1M items.

    python -m benchmarks.serving [--output-dir OUT] [--items 1000000] [--runs 200]

Part 1 times the pushed models in-process (`recommend` of the feed model, `retrieve`, `rank`
on 100 candidates) for batches of 1 and 64. Part 2 keeps the real towers and ranking model
over a catalogue of --items: the MovieLens items plus synthetic embeddings (clustered around
the trained ones, or uniform on the sphere as the worst case). It measures ScaNN's recall@10
against exact search and its latency for several settings, then times the feed model's own
module built over that catalogue with BruteForce and with ScaNN, beside a plain numpy matrix
product + argpartition (the floor). Writes the tables to benchmarks/SERVING.md.
"""
import argparse
import datetime
import os
import subprocess
import sys
import time
from typing import Callable, Dict, List

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from core import features as F  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(REPO, 'data', 'movielens-100k')


def timings(fn: Callable[[], object], runs: int, warmup: int = 5) -> Dict[str, float]:
  """p50 and p99 wall time of ``fn`` in milliseconds."""
  for _ in range(warmup):
    fn()
  samples = []
  for _ in range(runs):
    start = time.perf_counter()
    fn()
    samples.append((time.perf_counter() - start) * 1000)
  return {'p50': float(np.percentile(samples, 50)), 'p99': float(np.percentile(samples, 99))}


def numpy_top_k(queries: np.ndarray, items: np.ndarray, k: int) -> np.ndarray:
  scores = queries @ items.T
  top = np.argpartition(-scores, k, axis=1)[:, :k]
  order = np.take_along_axis(scores, top, axis=1).argsort(axis=1)[:, ::-1]
  return np.take_along_axis(top, order, axis=1)


def recall_at(found: np.ndarray, exact: np.ndarray) -> float:
  """Mean share of each query's exact top-k found by the approximate search."""
  return float(np.mean([len(set(f.tolist()) & set(e.tolist())) / len(e)
                        for f, e in zip(found.astype(np.int64), exact)]))


def synthetic_catalogue(real: np.ndarray, size: int, kind: str,
                        rng: np.random.Generator) -> np.ndarray:
  """``size`` item vectors: the real ones first, then synthetic ones.

  The exported vectors are a unit-norm tower output plus the prior columns (cold start and
  recency, models/retrieval.py); synthetic items get a synthetic tower part and the prior
  columns of a random real item.
  """
  extra = size - len(real)
  cut = real.shape[1] - F.RETRIEVAL_PRIOR_COLUMNS
  towers, prior = real[:, :cut], real[:, cut:]
  if kind == 'clustered':
    base = towers[rng.integers(0, len(real), extra)]
    noise = rng.normal(size=base.shape).astype(np.float32)
    noise *= (np.linalg.norm(base, axis=1, keepdims=True)
              / np.linalg.norm(noise, axis=1, keepdims=True))
    synthetic = base + noise
  elif kind == 'uniform':
    synthetic = rng.normal(size=(extra, towers.shape[1])).astype(np.float32)
  else:
    raise ValueError(kind)
  synthetic /= np.linalg.norm(synthetic, axis=1, keepdims=True)
  synthetic = np.concatenate([synthetic, prior[rng.integers(0, len(real), extra)]], axis=1)
  return np.concatenate([real, synthetic]).astype(np.float32)


def feed_at_scale(retrieval, ranking, ids: np.ndarray, embeddings: np.ndarray,
                  train: 'pd.DataFrame', index: str, feed_lib):
  """The feed module (as FeedModelBuilder makes it) over the given catalogue embeddings."""
  from core.configs import FeedConfig
  config = FeedConfig()
  users = np.unique(train['user_id'].to_numpy())
  keys, max_seen = feed_lib.seen_pairs(train['user_id'].to_numpy(), train['item_id'].to_numpy(),
                                       users, ids)
  candidates, _, search_k = feed_lib.search_window(config.candidates, max_seen, len(ids))
  popular_ids, popular_scores = feed_lib.popular_items(train['item_id'].to_numpy(), ids,
                                                       config.k)
  embed_users = retrieval.signatures['embed_users']
  rank = ranking.signatures['rank']
  return feed_lib.FeedServing(embed_users, rank, [retrieval, ranking], ids, embeddings, users,
                              keys, popular_ids, popular_scores, k=config.k,
                              candidates=candidates, search_k=search_k, index=index,
                              order_by=config.order_by,
                              retrieval_weight=config.retrieval_weight)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--output-dir', default=os.path.join(REPO, 'out'))
  parser.add_argument('--items', type=int, default=1_000_000)
  parser.add_argument('--runs', type=int, default=200)
  parser.add_argument('--results', default=os.path.join(REPO, 'benchmarks', 'SERVING.md'))
  args = parser.parse_args(argv)

  import tensorflow as tf
  from pipeline.recommend import latest_version

  serving = os.path.join(args.output_dir, 'serving')
  feed = tf.saved_model.load(latest_version(serving, 'feed'))
  retrieval = tf.saved_model.load(latest_version(serving, 'retrieval'))
  ranking = tf.saved_model.load(latest_version(serving, 'ranking'))
  rng = np.random.default_rng(0)
  users = np.array([str(u) for u in rng.integers(1, 944, 64)])
  rows: List[List[str]] = []

  def add(name, batch, fn, runs=args.runs):
    t = timings(fn, runs)
    rows.append([name, str(batch), f"{t['p50']:.2f}", f"{t['p99']:.2f}"])
    print(rows[-1], flush=True)

  for batch in (1, 64):
    ids = tf.constant(users[:batch])
    add('MovieLens: feed `recommend` (retrieve 100, drop seen, rank, top 10)', batch,
        lambda: feed.signatures['recommend'](user_id=ids))
    add('MovieLens: retrieval `retrieve` (top 100 of 1,682)', batch,
        lambda: retrieval.signatures['retrieve'](user_id=ids))
  pairs_u = tf.constant(np.repeat(users[:1], 100))
  pairs_i = tf.constant([str(i) for i in range(1, 101)])
  add('MovieLens: ranking `rank` of 100 candidates', 1,
      lambda: ranking.signatures['rank'](user_id=pairs_u, item_id=pairs_i))

  # 1M items: the real towers and ranker over a catalogue of the real items plus synthetic
  # ones, served by the feed model's own module (one graph: retrieve, drop seen, rank, top k).
  from models import feed as feed_lib
  from models import index as index_lib
  real_ids = pd.read_csv(os.path.join(DATA, 'items.csv'), dtype=str)['item_id'].to_numpy()
  real = retrieval.signatures['embed_items'](item_id=tf.constant(real_ids))['embeddings'].numpy()
  catalogues = {'clustered': synthetic_catalogue(real, args.items, 'clustered', rng),
                'uniform': synthetic_catalogue(real, args.items, 'uniform', rng)}
  ids = np.concatenate([real_ids, [f'synthetic-{i}' for i in range(args.items - len(real))]])
  queries = retrieval.signatures['embed_users'](
      user_id=tf.constant([str(u) for u in range(1, 944)]))['embeddings'].numpy()
  exact = {name: numpy_top_k(queries, items, 10) for name, items in catalogues.items()}
  n = f'{args.items:,}'

  # Recall against latency for ScaNN settings (top 100 of the catalogue, batch 1).
  sweep: List[List[str]] = []
  chosen = (index_lib.SCANN_SEARCH_SHARE, index_lib.SCANN_REORDER)
  for name, items in catalogues.items():
    for share, reorder in sorted({(0.02, 500), (0.05, 500), (0.1, 1000), (0.2, 2000), chosen}):
      index = index_lib.make_index('scann', 100, len(items), share, reorder)
      started = time.time()
      index.index(tf.constant(items))
      build = time.time() - started
      _, found = index(tf.constant(queries), k=10)
      recall = recall_at(found.numpy(), exact[name])
      t = timings(lambda: index(tf.constant(queries[:1]), k=100), args.runs)
      leaves, searched = index_lib.scann_leaves(len(items), share)
      sweep.append([name, f'{searched}/{leaves}', str(reorder), f'{recall:.3f}',
                    f"{t['p50']:.2f}", f"{t['p99']:.2f}", f'{build:.0f}',
                    'default' if (share, reorder) == chosen else ''])
      print(sweep[-1], flush=True)

  train = pd.read_csv(os.path.join(DATA, 'interactions.csv'), dtype=str)
  items = catalogues['clustered']
  for batch in (1, 64):
    q = queries[:batch]
    add(f'{n} items: numpy matmul + argpartition top 100 (floor)', batch,
        lambda: numpy_top_k(q, items, 100), runs=max(20, args.runs // 10))
  for kind in ('brute_force', 'scann'):
    feed = feed_at_scale(retrieval, ranking, ids, items, train, kind, feed_lib)
    for batch in (1, 64):
      user_ids = tf.constant(users[:batch])
      add(f'{n} items: feed `recommend` with {kind} (retrieve, drop seen, rank 100, top 10)',
          batch, lambda: feed.recommend(user_ids),
          runs=args.runs if kind == 'scann' else max(20, args.runs // 10))
  recall_default = next(float(r[3]) for r in sweep if r[0] == 'clustered' and r[-1])

  commit = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=REPO,
                          capture_output=True, text=True).stdout.strip() or 'unknown'
  report = '\n'.join([
      '# Serving latency (in-process, milliseconds)', '',
      f'{datetime.date.today().isoformat()}, commit {commit}, {os.cpu_count()} cores '
      '(`make benchmark-serving`). p50/p99 over repeated calls after warm-up.', '',
      '| what | batch | p50 ms | p99 ms |', '| --- | --- | --- | --- |',
      *[f'| {" | ".join(r)} |' for r in rows], '',
      f'## ScaNN at {n} items: recall@10 against exact search, and latency of a top-100 '
      'search (batch 1)', '',
      'clustered: the 1,682 trained MovieLens item vectors plus synthetic items whose tower '
      'part is a trained one plus Gaussian noise of the same norm, re-normalised (items '
      'cluster around real ones, as trained embeddings do); uniform: tower parts uniform on '
      'the sphere, the worst case for a partitioned index. Synthetic items take the '
      'cold-start column of a random real item. Recall over the 943 MovieLens users.',
      '', '| catalogue | leaves searched | reordered | recall@10 | p50 ms | p99 ms | build s | |',
      '| --- | --- | --- | --- | --- | --- | --- | --- |',
      *[f'| {" | ".join(r)} |' for r in sweep], '',
      f'The feed rows at {n} items use the default (recall@10 {recall_default:.3f} on the '
      'clustered catalogue).', ''])
  print(report)
  with open(args.results, 'w') as f:
    f.write(report)
  return 0


if __name__ == '__main__':
  sys.exit(main())
