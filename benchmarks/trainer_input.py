"""Cost of a trainer's first pass over a train split: TFX's data accessor beside models/data.py.

Why the trainers spent about four minutes before their first step at 10M interactions
(benchmarks/SCALE.md): the data accessor (tfx_bsl's TFExampleRecord) reads the files through a
parallel interleave of one record at a time and parses them with ``parse_example_dataset``;
models/data.py reads the files in turn and parses each batch with ``tf.io.parse_example`` in
parallel. Prints the seconds to read (and,
on the last two rows, also transform) the first ``--rows`` rows of a run's train split both
ways, and checks that the two give the same tensors:

  python -m benchmarks.trainer_input --pipeline-root out/pipeline --rows 1000000
"""
import argparse
import os
import time

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_transform as tft  # noqa: E402
from tfx_bsl.public import tfxio  # noqa: E402

from benchmarks.sweep import _latest  # noqa: E402
from core import features as F  # noqa: E402
from models import data  # noqa: E402


def accessor_dataset(files, tft_output, batch_size: int) -> tf.data.Dataset:
  """What ``fn_args.data_accessor.tf_dataset_factory`` builds for a tf.Example split."""
  return tfxio.TFExampleRecord(files, schema=tft_output.raw_metadata.schema).TensorFlowDataset(
      tfxio.TensorFlowDatasetOptions(batch_size=batch_size, shuffle=False, num_epochs=1))


def seconds(dataset: tf.data.Dataset) -> float:
  start = time.perf_counter()
  for _ in dataset:
    pass
  return time.perf_counter() - start


def same(a: tf.data.Dataset, b: tf.data.Dataset, batches: int = 3) -> bool:
  """Whether the first ``batches`` batches hold the same values, key by key."""
  for x, y in zip(a.take(batches), b.take(batches)):
    if sorted(x) != sorted(y):
      return False
    for k in x:
      u, v = x[k], y[k]
      if isinstance(u, tf.SparseTensor):
        u, v = tf.sparse.to_dense(u), tf.sparse.to_dense(v)
      if not np.array_equal(u.numpy(), v.numpy()):
        return False
  return True


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--pipeline-root', required=True,
                      help="a pipeline run's root (InteractionExampleGen and Transform outputs)")
  parser.add_argument('--rows', type=int, default=1_000_000, help='rows read each way')
  args = parser.parse_args(argv)
  examples = _latest(os.path.join(args.pipeline_root, 'InteractionExampleGen', 'examples'))
  files = [os.path.join(examples, f'Split-{F.TRAIN}', '*')]
  tft_output = tft.TFTransformOutput(
      _latest(os.path.join(args.pipeline_root, 'Transform', 'transform_graph')))
  batch = data.TRANSFORM_BATCH
  take = -(-args.rows // batch)
  accessor = accessor_dataset(files, tft_output, batch).take(take)
  ours = data.raw_dataset(files, tft_output, batch).take(take)
  layer = tft_output.transform_features_layer()
  transform = dict(map_func=layer, num_parallel_calls=tf.data.AUTOTUNE)
  print(f'| first pass over {take * batch:,} train rows | seconds | µs a row |  same tensors: '
        f'{same(accessor, ours)}')
  print('| --- | ---: | ---: |')
  for name, dataset in (('data accessor, parse_example_dataset', accessor),
                        ('models/data.py, parse_example', ours),
                        ('data accessor + Transform layer', accessor.map(**transform)),
                        ('models/data.py + Transform layer', ours.map(**transform))):
    took = seconds(dataset)
    print(f'| {name} | {took:.1f} | {1e6 * took / (take * batch):.1f} |')


if __name__ == '__main__':
  main()
