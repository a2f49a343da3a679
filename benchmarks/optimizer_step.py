"""Cost of one optimizer step on an embedding table, Keras Adam beside lazy Adam.

Why the trainers grew faster than their data at 10M interactions (benchmarks/SCALE.md):
Keras Adam moves every row of a table at every step. Prints the median step time of each
optimizer over a table of each size, the same ids and gradients for both:

  python -m benchmarks.optimizer_step --rows 10000,100000,1000000
"""
import argparse
import os
import time

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

from models.optimizers import LazyAdam  # noqa: E402


def step_ms(optimizer, rows: int, dim: int, batch: int, steps: int) -> float:
  """Median milliseconds of ``apply_gradients`` for the sparse gradient of one batch."""
  table = tf.Variable(tf.random.normal([rows, dim], stddev=0.05))
  ids = tf.random.uniform([steps, batch], 0, rows, dtype=tf.int64, seed=0)

  @tf.function
  def step(batch_ids):
    with tf.GradientTape() as tape:
      loss = tf.reduce_sum(tf.gather(table, batch_ids) ** 2)
    optimizer.apply_gradients([(tape.gradient(loss, table), table)])

  step(ids[0])  # traces and creates the slots
  times = []
  for i in range(1, steps):
    start = time.perf_counter()
    step(ids[i])
    times.append(time.perf_counter() - start)
  return 1000 * float(np.median(times))


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--rows', default='10000,100000,1000000',
                      help='table sizes, comma-separated')
  parser.add_argument('--dim', type=int, default=32)
  parser.add_argument('--batch', type=int, default=1024, help='ids looked up a step')
  parser.add_argument('--steps', type=int, default=30)
  args = parser.parse_args(argv)
  print(f'| table rows | Keras Adam (ms/step) | lazy Adam (ms/step) |  '
        f'dim {args.dim}, {args.batch} ids a step')
  print('| ---: | ---: | ---: |')
  for rows in (int(r) for r in args.rows.split(',')):
    dense = step_ms(keras.optimizers.Adam(1e-3), rows, args.dim, args.batch, args.steps)
    lazy = step_ms(LazyAdam(1e-3), rows, args.dim, args.batch, args.steps)
    print(f'| {rows:,} | {dense:.1f} | {lazy:.1f} |')


if __name__ == '__main__':
  main()
