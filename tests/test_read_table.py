"""models.data.read_table: batched parsing gives what a record-by-record read gives."""
import numpy as np
import tensorflow as tf

from models import data


def example(**features):
  out = tf.train.Example()
  for key, value in features.items():
    f = out.features.feature[key]
    if not value:
      f.bytes_list.SetInParent()  # present but empty: read as absent
    elif isinstance(value[0], bytes):
      f.bytes_list.value.extend(value)
    elif isinstance(value[0], float):
      f.float_list.value.extend(value)
    else:
      f.int64_list.value.extend(value)
  return out.SerializeToString()


def test_batched_read_matches_records(tmp_path):
  records = [
      example(id=[b'u1'], x=[1.5, 9.0], n=[3]),
      example(id=[b'u\xc3\xa9']),                 # x, n absent; non-ASCII id
      example(id=[b'u3'], x=[0.25], tag=[b'late']),  # tag first appears in the second batch
      example(id=[b'u4'], n=[-7], tag=[]),
      example(id=[b'u5'], x=[2.0], tag=[b'a', b'b']),
  ]
  path = str(tmp_path / 'part.gz')
  with tf.io.TFRecordWriter(path, options='GZIP') as w:
    for r in records:
      w.write(r)
  keys = ['id', 'x', 'n', 'tag', 'never']
  table = data.read_table([str(tmp_path / '*.gz')], keys, batch_size=2)
  assert table['id'].tolist() == ['u1', 'ué', 'u3', 'u4', 'u5']
  assert table['x'].tolist() == [1.5, None, 0.25, None, 2.0]
  assert table['n'].tolist() == [3, None, None, -7, None]
  assert table['tag'].tolist() == [None, None, 'late', None, 'a']
  assert table['never'].tolist() == [None] * 5
  np.testing.assert_array_equal(table['x?'], [True, False, True, False, True])
  np.testing.assert_array_equal(table['tag?'], [False, False, True, False, True])
  assert table['id'].dtype == object and table['never?'].dtype == bool
  assert isinstance(table['n'][0], int) and isinstance(table['x'][0], float)


def test_empty_split(tmp_path):
  path = str(tmp_path / 'part.gz')
  with tf.io.TFRecordWriter(path, options='GZIP'):
    pass
  table = data.read_table([path], ['id'])
  assert len(table['id']) == 0 and len(table['id?']) == 0
