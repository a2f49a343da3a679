"""Feature stores inside the exported models: id -> the raw features the model was trained with.

A serving request carries only ids. The models look the user's and the item's features up in
these tables, then apply the Transform layer, so a user or item unknown to the id
vocabularies (cold start) is still served from its features, and an id unknown everywhere
still gets an answer (every feature missing).
"""
from typing import Dict, List

import numpy as np
import tensorflow as tf

from models import data
from core import features as F


class FeatureStore(tf.Module):
  """Maps a batch of ids to a dict of raw features shaped like the parsed raw examples."""

  def __init__(self, id_key: str, table: Dict[str, np.ndarray], raw_spec: Dict[str, object],
               name: str = None):
    super().__init__(name=name)
    self.id_key = id_key
    ids = table[id_key].astype(str)
    self._keys: List[str] = [k for k in table if not k.endswith('?') and k != id_key]
    self._raw_spec = raw_spec
    self._index = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(ids, tf.string), tf.range(len(ids), dtype=tf.int64)),
        default_value=-1)
    self.ids = tf.Variable(ids, dtype=tf.string, trainable=False, name='ids')
    self._values = {}
    self._present = {}
    self._defaults = {}
    for key in self._keys:
      dtype = raw_spec[key].dtype
      present = table[key + '?']
      if dtype == tf.string:
        values = np.array([v if p else '' for v, p in zip(table[key], present)], dtype=object)
        values = values.astype(str) if len(values) else np.zeros([0], dtype=str)
        default = ''
      else:
        numbers = [float(v) for v, p in zip(table[key], present) if p]
        # A missing number reads as the column mean, the value that tells the model least.
        default = float(np.mean(numbers)) if numbers else 0.0
        values = np.array([v if p else default for v, p in zip(table[key], present)],
                          dtype=dtype.as_numpy_dtype)
      self._defaults[key] = tf.constant(default, dtype=dtype)
      self._values[key] = tf.Variable(values, dtype=dtype, trainable=False)
      self._present[key] = tf.Variable(present, dtype=tf.bool, trainable=False)

  @property
  def columns(self) -> List[str]:
    return list(self._keys)

  def text(self, ids: tf.Tensor, key: str) -> tf.Tensor:
    """[batch] string value of column ``key`` ('' when missing, the id for an unknown key)."""
    if key not in self._values:
      return ids
    row = self._index.lookup(ids)
    values = tf.strings.as_string(self._values[key]) if self._values[key].dtype != tf.string \
        else self._values[key]
    return tf.where(row >= 0, tf.gather(values, tf.maximum(row, 0)), tf.constant(''))

  def contains(self, ids: tf.Tensor) -> tf.Tensor:
    return self._index.lookup(ids) >= 0

  def lookup(self, ids: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Raw features of ``ids`` ([batch] string), missing ones absent from the sparse rows."""
    row = self._index.lookup(ids)
    found = row >= 0
    safe = tf.maximum(row, 0)
    out = {self.id_key: _as_raw(ids, tf.ones_like(found), self._raw_spec[self.id_key])}
    for key in self._keys:
      present = tf.logical_and(found, tf.gather(self._present[key], safe))
      values = tf.where(present, tf.gather(self._values[key], safe), self._defaults[key])
      out[key] = _as_raw(values, present, self._raw_spec[key])
    return out


def _as_raw(values: tf.Tensor, present: tf.Tensor, spec) -> tf.Tensor:
  """[batch] values in the shape the raw feature spec parses to (sparse [batch, 1] or dense)."""
  if isinstance(spec, tf.io.FixedLenFeature):
    return tf.reshape(values, [-1, 1])
  batch = tf.shape(values, out_type=tf.int64)[0]
  rows = tf.where(present)
  indices = tf.concat([rows, tf.zeros_like(rows)], axis=1)
  return tf.sparse.SparseTensor(indices, tf.boolean_mask(values, present),
                                tf.stack([batch, tf.constant(1, tf.int64)]))


def build_stores(train_files, tft_output):
  """User and item feature stores from the users and items splits."""
  raw_spec = tft_output.raw_feature_spec()
  stores = {}
  for split, id_key, prefix in ((F.USERS, F.USER_ID, F.USER_PREFIX),
                                (F.ITEMS, F.ITEM_ID, F.ITEM_PREFIX)):
    keys = data.table_keys(tft_output, id_key, prefix)
    table = data.read_table(data.split_files(train_files, split), keys)
    stores[split] = FeatureStore(id_key, table, raw_spec, name=f'{split}_store')
  return stores[F.USERS], stores[F.ITEMS]


def item_features(items: FeatureStore, tft_layer, item_spec: data.SideSpec,
                  batch: int = 8192) -> Dict[str, tf.Tensor]:
  """The transformed features of every catalogue item, in catalogue order (bags ragged, so
  that rows can be gathered)."""
  ids = items.ids.numpy()
  parts: Dict[str, list] = {k: [] for k in item_spec.keys}
  for start in range(0, len(ids), batch):
    transformed = tft_layer(items.lookup(tf.constant(ids[start:start + batch])))
    for key in item_spec.keys:
      value = transformed[key]
      if isinstance(value, tf.sparse.SparseTensor):
        value = tf.RaggedTensor.from_sparse(value)
      parts[key].append(value)
  return {k: tf.concat(v, axis=0) for k, v in parts.items()}
