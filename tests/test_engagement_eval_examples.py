"""The labelled eval set for implicit feedback: every interaction plus sampled negatives."""
import collections
import glob
import os

import pytest
import tensorflow as tf
from tfx.types import artifact_utils, standard_artifacts

from components.engagement_eval_examples import executor
from core import features as F


def _write(path, rows):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with tf.io.TFRecordWriter(path, options='GZIP') as writer:
    for row in rows:
      feature = {k: tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode()]))
                 for k, v in row.items()}
      writer.write(tf.train.Example(
          features=tf.train.Features(feature=feature)).SerializeToString())


def _read(pattern):
  rows = []
  for record in tf.data.TFRecordDataset(glob.glob(pattern), compression_type='GZIP'):
    f = tf.train.Example.FromString(record.numpy()).features.feature
    rows.append((f[F.USER_ID].bytes_list.value[0].decode(),
                 f[F.ITEM_ID].bytes_list.value[0].decode(), f[F.ENGAGED].int64_list.value[0]))
  return rows


def _run(tmp_path, eval_rows, items, negatives=3):
  examples = standard_artifacts.Examples()
  examples.uri = str(tmp_path / 'examples')
  examples.split_names = artifact_utils.encode_split_names([F.EVAL, F.ITEMS])
  _write(str(tmp_path / 'examples' / 'Split-eval' / 'part.gz'), eval_rows)
  _write(str(tmp_path / 'examples' / 'Split-items' / 'part.gz'),
         [{F.ITEM_ID: i, 'item__title': i.upper()} for i in items])
  output = standard_artifacts.Examples()
  output.uri = str(tmp_path / 'out')
  executor.Executor().Do({'examples': [examples]}, {'labelled_examples': [output]},
                         {'negatives': negatives, 'seed': 7})
  return output, _read(str(tmp_path / 'out' / 'Split-eval' / '*'))


def test_every_interaction_gets_its_negatives(tmp_path):
  eval_rows = [{F.USER_ID: 'u1', F.ITEM_ID: 'a'}, {F.USER_ID: 'u2', F.ITEM_ID: 'b'}]
  output, rows = _run(tmp_path, eval_rows, ['a', 'b', 'c', 'd'])
  assert artifact_utils.decode_split_names(output.split_names) == [F.EVAL]
  assert sorted(r for r in rows if r[2] == 1) == [('u1', 'a', 1), ('u2', 'b', 1)]
  negatives = collections.Counter((u, i) for u, i, label in rows if label == 0)
  per_user = collections.Counter(u for u, _ in negatives.elements())
  assert per_user == {'u1': 3, 'u2': 3}
  assert ('u1', 'a') not in negatives and ('u2', 'b') not in negatives
  assert {i for _, i in negatives} <= {'a', 'b', 'c', 'd'}


def test_sampling_is_repeatable(tmp_path):
  eval_rows = [{F.USER_ID: 'u1', F.ITEM_ID: 'a'}]
  _, first = _run(tmp_path / 'one', eval_rows, ['a', 'b', 'c', 'd', 'e'])
  _, second = _run(tmp_path / 'two', eval_rows, ['a', 'b', 'c', 'd', 'e'])
  assert sorted(first) == sorted(second)


def test_a_one_item_catalogue_has_no_negatives(tmp_path):
  _, rows = _run(tmp_path, [{F.USER_ID: 'u1', F.ITEM_ID: 'a'}], ['a'])
  assert rows == [('u1', 'a', 1)]


def test_empty_catalogue_is_a_clear_error(tmp_path):
  with pytest.raises(Exception, match='items split is empty'):
    _run(tmp_path, [{F.USER_ID: 'u1', F.ITEM_ID: 'a'}], [])
