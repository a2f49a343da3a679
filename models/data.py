"""Reading the ExampleGen output inside a Trainer: datasets, split files, feature specs.

The Trainers read the *raw* examples and apply the Transform layer themselves, in the input
pipeline. Serving applies the same layer to the features it looks up, so training and serving
share one transformation.
"""
import dataclasses
import json
import os
import re
from typing import Dict, Iterable, List, Optional

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from core import features as F


def split_files(files: Iterable[str], split: str) -> List[str]:
  """File patterns of another split of the same Examples artifact.

  TFX lays out an Examples artifact as ``<uri>/Split-<name>/``; the Trainer is given the train
  and eval splits, and the catalogue (``items``) and ``users`` splits sit beside them.
  """
  files = list(files)
  if not files or any('Split-' not in f for f in files):
    raise ValueError(f'cannot derive the {split!r} split from {files}')
  # Given train and eval (a refit trains on both), both name the same other split: once.
  return list(dict.fromkeys(re.sub(r'Split-[^/]+', f'Split-{split}', f) for f in files))


@dataclasses.dataclass(frozen=True)
class SideSpec:
  """The transformed features of one side (user or item) and their embedding table sizes."""
  id_key: str
  id_rows: int
  # Dense int64 features (numeric buckets) and sparse bags of token ids: key -> rows.
  categorical: Dict[str, int]
  bags: Dict[str, int]
  numeric: List[str]
  # Transformed key -> name of the vocabulary that indexes its table (warm start remaps rows
  # by token through it).
  vocabularies: Dict[str, str] = dataclasses.field(default_factory=dict)

  @property
  def keys(self) -> List[str]:
    return [self.id_key, *self.categorical, *self.bags, *self.numeric]


def _rows(schema_feature, vocabulary_size: Optional[int]) -> int:
  """Embedding rows for an int feature: its domain (OOV included) plus one spare row."""
  if schema_feature is not None and schema_feature.HasField('int_domain'):
    return int(schema_feature.int_domain.max) + 2
  if vocabulary_size is not None:
    return vocabulary_size + 2
  raise ValueError(f'no domain for {schema_feature}')


def side_spec(tft_output: tft.TFTransformOutput, id_raw_key: str, prefix: str) -> SideSpec:
  """Discovers the transformed features of a side from the Transform output."""
  spec = tft_output.transformed_feature_spec()
  schema = {f.name: f for f in tft_output.transformed_metadata.schema.feature}
  id_key = F.transformed_name(id_raw_key)
  categorical, bags, numeric = {}, {}, []
  vocabularies = {id_key: F.vocabulary_name(id_raw_key)}
  for key in sorted(spec):
    if not key.startswith(prefix):
      continue
    feature = spec[key]
    if feature.dtype == tf.int64:
      raw = key[:-len('_xf')]
      size = None
      try:
        size = tft_output.vocabulary_size_by_name(F.vocabulary_name(raw))
      except (ValueError, KeyError, tf.errors.NotFoundError):
        pass
      if size is not None:
        vocabularies[key] = F.vocabulary_name(raw)
      target = bags if isinstance(feature, tf.io.VarLenFeature) else categorical
      target[key] = _rows(schema.get(key), size)
    else:
      numeric.append(key)
  id_rows = tft_output.vocabulary_size_by_name(F.vocabulary_name(id_raw_key)) + 2
  return SideSpec(id_key=id_key, id_rows=id_rows, categorical=categorical, bags=bags,
                  numeric=numeric, vocabularies=vocabularies)


def records(files: List[str]) -> tf.data.Dataset:
  """The serialized records of ``files`` (glob patterns of gzipped TFRecord files, as
  ExampleGen writes them), file after file."""
  paths = [p for pattern in files for p in sorted(tf.io.gfile.glob(pattern))]
  return tf.data.TFRecordDataset(paths, compression_type='GZIP')


def raw_dataset(files: List[str], tft_output: tft.TFTransformOutput,
                batch_size: int) -> tf.data.Dataset:
  """Batches of raw examples (dicts of sparse/dense tensors), one pass over ``files``.

  Not TFX's data accessor: it reads the files through a parallel interleave of one record at
  a time and parses them with ``parse_example_dataset``, several times slower than reading
  the files in turn and parsing whole batches with ``tf.io.parse_example`` in parallel
  (benchmarks/trainer_input.py); at 10M rows that pass was most of each trainer's first
  four minutes. The spec is Transform's raw feature spec, the one its layer is built for.
  """
  spec = tft_output.raw_feature_spec()
  return records(files).batch(batch_size).map(lambda batch: tf.io.parse_example(batch, spec),
                                              num_parallel_calls=tf.data.AUTOTUNE)


def _as_ragged(value):
  """A sparse bag as a ragged tensor (row by row; column positions do not matter to a bag)."""
  if isinstance(value, tf.SparseTensor):
    return tf.RaggedTensor.from_value_rowids(value.values, value.indices[:, 0],
                                             nrows=value.dense_shape[0])
  return value


def rebatched(batches: tf.data.Dataset, batch_size: int, shuffle: bool, seed: int = 42,
              window: int = None) -> tf.data.Dataset:
  """Batches of ``batch_size`` rows out of ``batches`` (transformed_batches), their rows
  permuted every epoch when ``shuffle`` so that in-batch negatives differ from one epoch to
  the next (caching fixed batches would show the retrieval loss the same negatives).

  The cached batches are taken in a random order over the whole split (ExampleGen writes
  rows in input order, which may be by time), and rows are permuted inside windows of
  ``window`` of them (SHUFFLE_WINDOW: the whole MovieLens train split; 262,144 rows at scale)
  with one gather per feature: unbatching into single rows and shuffling them one by one is
  far slower at scale (docs/quality.md).
  """
  window = window or SHUFFLE_WINDOW

  def split(stacked):
    merged = {k: v.merge_dims(0, 1) for k, v in stacked.items()}
    first = next(iter(merged.values()))
    n = first.nrows() if isinstance(first, tf.RaggedTensor) else tf.shape(
        first, out_type=tf.int64)[0]
    order = (tf.random.shuffle(tf.range(n), seed=seed) if shuffle else tf.range(n))
    sizes = tf.minimum(tf.cast(batch_size, tf.int64), n - tf.range(0, n, batch_size))
    return tf.data.Dataset.from_tensor_slices(
        {k: tf.RaggedTensor.from_row_lengths(tf.gather(v, order), sizes)
         for k, v in merged.items()})

  def as_sparse(batch):
    return {k: v.to_sparse() if isinstance(v, tf.RaggedTensor) else v for k, v in batch.items()}

  if shuffle:  # a buffer of every batch: references to the cache's tensors when ``batches``
    # is the cache itself; the ranking Trainer's selected rows are new tensors, held once
    batches = batches.shuffle(SHUFFLE_ALL_BATCHES, seed=seed, reshuffle_each_iteration=True)
  ds = batches.map(lambda b: {k: _as_ragged(v) for k, v in b.items()})
  return (ds.ragged_batch(window).flat_map(split).map(as_sparse)
          .prefetch(tf.data.AUTOTUNE))


SHUFFLE_WINDOW = 64
SHUFFLE_ALL_BATCHES = 1 << 20


# Rows per batch read and transformed (and cached: a cache of single rows would hold one
# small tensor per feature per row, several times the memory).
TRANSFORM_BATCH = 4096


def transformed_batches(files: List[str], tft_output: tft.TFTransformOutput,
                        keys: Iterable[str]) -> tf.data.Dataset:
  """Transformed batches of TRANSFORM_BATCH rows restricted to ``keys``, cached."""
  layer = tft_output.transform_features_layer()
  keys = list(keys)

  def transform(raw):
    transformed = layer(raw)
    return {k: transformed[k] for k in keys if k in transformed}

  ds = raw_dataset(files, tft_output, TRANSFORM_BATCH)
  return ds.map(transform, num_parallel_calls=tf.data.AUTOTUNE).cache()


def _rows_of(value) -> tf.Tensor:
  if isinstance(value, tf.SparseTensor):
    return value.dense_shape[0]
  return tf.shape(value, out_type=tf.int64)[0]


def _select_rows(value, mask: tf.Tensor):
  """The rows of a batched tensor (dense or sparse, rows first) where ``mask`` is true."""
  if not isinstance(value, tf.SparseTensor):
    return tf.boolean_mask(value, mask)
  keep = tf.gather(mask, value.indices[:, 0])
  new_row = tf.cumsum(tf.cast(mask, tf.int64), exclusive=True)
  indices = tf.boolean_mask(value.indices, keep)
  indices = tf.concat([tf.gather(new_row, indices[:, :1]), indices[:, 1:]], axis=1)
  shape = tf.concat([[tf.reduce_sum(tf.cast(mask, tf.int64))], value.dense_shape[1:]], 0)
  return tf.SparseTensor(indices, tf.boolean_mask(value.values, keep), shape)


def every_nth_row(batches: tf.data.Dataset, every: int, held_out: bool) -> tf.data.Dataset:
  """Rows whose position in ``batches`` (transformed_batches) is a multiple of ``every``
  (``held_out``) or is not (the rest), selected a batch at a time: a per-row filter costs
  more than a training epoch's arithmetic at a million rows."""

  def select(index, batch):
    size = _rows_of(next(iter(batch.values())))
    positions = index * TRANSFORM_BATCH + tf.range(size)
    mask = tf.equal(tf.equal(positions % every, 0), held_out)
    return {k: _select_rows(v, mask) for k, v in batch.items()}

  return batches.enumerate().map(select, num_parallel_calls=tf.data.AUTOTUNE)


def columns(batches: tf.data.Dataset, keys: Iterable[str]) -> Dict[str, np.ndarray]:
  """Dense single-valued ``keys`` of every row of ``batches``, as flat numpy arrays."""
  keys = list(keys)
  parts: Dict[str, list] = {k: [] for k in keys}
  for batch in batches.map(lambda x: {k: tf.reshape(x[k], [-1]) for k in keys}) \
                      .as_numpy_iterator():
    for k in keys:
      parts[k].append(batch[k])
  return {k: (np.concatenate(v) if v else np.zeros([0])) for k, v in parts.items()}


def id_pairs(batches: tf.data.Dataset, user_key: str, item_key: str):
  """(user ids, item ids) of the rows of ``batches`` (transformed_batches), as int64 arrays."""
  found = columns(batches, [user_key, item_key])
  return found[user_key].astype(np.int64), found[item_key].astype(np.int64)


class SeenPairs:
  """Membership of (user id, item id) pairs, as sorted keys ``user * item_rows + item``.

  Searched with ``tf.searchsorted``, so it works at any catalogue size (a dense user x item
  matrix would not). A plain object: nothing here is exported.
  """

  def __init__(self, keys, item_rows: int):
    keys = np.unique(np.asarray(keys, np.int64))
    self.item_rows = item_rows
    self.keys = tf.constant(np.append(keys, np.iinfo(np.int64).max), tf.int64)

  def contains(self, user_ids: tf.Tensor, item_ids: tf.Tensor) -> tf.Tensor:
    query = tf.cast(user_ids, tf.int64) * self.item_rows + tf.cast(item_ids, tf.int64)
    found = tf.searchsorted(self.keys, tf.reshape(query, [-1]), side='left', out_type=tf.int64)
    found = tf.minimum(found, tf.size(self.keys, out_type=tf.int64) - 1)
    return tf.reshape(tf.equal(tf.gather(self.keys, found), tf.reshape(query, [-1])),
                      tf.shape(query))


_KIND_DTYPES = {'bytes_list': tf.string, 'float_list': tf.float32, 'int64_list': tf.int64}


def read_table(files: List[str], keys: Iterable[str],
               batch_size: int = 16_384) -> Dict[str, np.ndarray]:
  """Reads single-valued raw features of a split into arrays.

  Returns, for each key, ``values`` (object array of str, float or int; None where absent)
  and ``key + '?'`` a bool presence array. Used to build the serving feature stores and the
  evaluation tables. Records are parsed in batches by ``tf.io.parse_example`` (decoding
  each proto in Python is far slower on large splits); a key's kind is taken
  from the first record that carries it, as ExampleGen writes one kind per column.
  """
  keys = list(keys)
  kinds: Dict[str, Optional[str]] = {k: None for k in keys}
  values: Dict[str, list] = {k: [] for k in keys}
  present: Dict[str, list] = {k: [] for k in keys}
  total = 0
  for batch in records(files).batch(batch_size):
    n = int(batch.shape[0])
    unknown = [k for k in keys if kinds[k] is None]
    for record in (batch.numpy() if unknown else ()):
      feature = tf.train.Example.FromString(record).features.feature
      for k in unknown:
        f = feature.get(k)
        kind = f.WhichOneof('kind') if f is not None else None
        if kind and len(getattr(f, kind).value):
          kinds[k] = kind
      unknown = [k for k in unknown if kinds[k] is None]
      if not unknown:
        break
    known = [k for k in keys if kinds[k] is not None]
    parsed = tf.io.parse_example(
        batch, {k: tf.io.VarLenFeature(_KIND_DTYPES[kinds[k]]) for k in known})
    for k in keys:
      column = np.full(n, None, dtype=object)
      mask = np.zeros(n, dtype=bool)
      if k in parsed:
        indices = parsed[k].indices.numpy()
        first = indices[:, 1] == 0
        rows = indices[first, 0]
        found = parsed[k].values.numpy()[first]
        if kinds[k] == 'bytes_list':
          found = [v.decode() for v in found]
        elif kinds[k] == 'float_list':
          found = found.astype(np.float64).tolist()
        else:
          found = found.tolist()
        column[rows] = found
        mask[rows] = True
      values[k].append(column)
      present[k].append(mask)
    total += n
  out: Dict[str, np.ndarray] = {}
  for k in keys:
    out[k] = np.concatenate(values[k]) if total else np.array([], dtype=object)
    out[k + '?'] = np.concatenate(present[k]) if total else np.array([], dtype=bool)
  return out


def table_keys(tft_output: tft.TFTransformOutput, id_key: str, prefix: str) -> List[str]:
  """The raw keys of one side: its id and its prefixed feature columns."""
  raw = tft_output.raw_feature_spec()
  return [id_key] + [k for k in sorted(raw) if k.startswith(prefix)]


def write_history(model_run_dir: str, history: Dict[str, List[float]]) -> None:
  """Keeps the Keras history of a Trainer in its ModelRun artifact (the run report plots it)."""
  tf.io.gfile.makedirs(model_run_dir)
  with tf.io.gfile.GFile(os.path.join(model_run_dir, 'history.json'), 'w') as f:
    json.dump(history, f)
