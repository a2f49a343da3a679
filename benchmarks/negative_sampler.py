"""Cost of drawing the ranking's negatives, tf.random.categorical beside the sampler's CDF search.

Why the ranking step grew with the catalogue at 10M interactions (benchmarks/SCALE.md):
tf.random.categorical exponentiates and sums every logit at each call. Prints the median time
of one step's draw (``negative_pool`` items) from a catalogue of each size, by both methods,
and the largest gap between each method's draw frequencies and the probabilities:

  python -m benchmarks.negative_sampler --items 10000,100000,1000000
"""
import argparse
import os
import time

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from core.configs import RankingConfig  # noqa: E402
from models.ranking import NegativeSampler  # noqa: E402


def median_ms(draw, n: int, repeats: int) -> float:
  draw(n)  # traces
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    draw(n)
    times.append(time.perf_counter() - start)
  return 1000 * float(np.median(times))


def frequency_gap(rows: np.ndarray, probabilities: np.ndarray) -> float:
  """Largest |draw share - probability| over the catalogue's 10 most likely rows."""
  top = np.argsort(-probabilities)[:10]
  shares = np.bincount(rows, minlength=len(probabilities))[top] / len(rows)
  return float(np.abs(shares - probabilities[top]).max())


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--items', default='10000,100000,1000000',
                      help='catalogue sizes, comma-separated')
  parser.add_argument('--draws', type=int, default=RankingConfig().negative_pool,
                      help='items drawn a step (the ranking config\'s negative_pool)')
  parser.add_argument('--repeats', type=int, default=50)
  args = parser.parse_args(argv)
  print(f'| catalogue items | tf.random.categorical (ms) | CDF search (ms) | '
        f'frequency gap, categorical / CDF |  {args.draws} draws a step')
  print('| ---: | ---: | ---: | ---: |')
  rng = np.random.default_rng(0)
  for items in (int(i) for i in args.items.split(',')):
    # Popularity-like probabilities: a long tail, as negative_probabilities makes them.
    p = rng.pareto(1.2, items) + 1e-3
    p /= p.sum()
    logits = tf.constant(np.log(p)[np.newaxis, :], tf.float32)
    sampler = NegativeSampler({}, 'item_id_xf', items, p)
    categorical = tf.function(lambda n: tf.random.categorical(logits, n, dtype=tf.int64)[0])
    search = tf.function(sampler.sample_rows)
    gaps = [frequency_gap(f(200_000).numpy(), p) for f in (categorical, search)]
    print(f'| {items:,} | {median_ms(categorical, args.draws, args.repeats):.2f} | '
          f'{median_ms(search, args.draws, args.repeats):.2f} | '
          f'{gaps[0]:.4f} / {gaps[1]:.4f} |')


if __name__ == '__main__':
  main()
