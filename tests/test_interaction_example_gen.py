"""Ingestion (transforms/ingestion.py) on tiny tables: joins, types, splits, errors; and the
executor's options."""
import os

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf

from components.interaction_example_gen import executor as ex
from core import features as F
from transforms import ingestion
from tests.helpers import write


_COLLECTED = {}


def _collect(serialized, split):
  """Records an output example as a plain dict (module-level: Beam pickles it by reference).

  Parsed by TensorFlow's own parser too: the joined examples are concatenations of
  serialized parts, which must read as one Example with every feature."""
  example = tf.train.Example.FromString(serialized)
  parsed = tf.io.parse_single_example(serialized, {
      key: tf.io.FixedLenFeature([], tf.string if v.HasField('bytes_list') else
                                 (tf.int64 if v.HasField('int64_list') else tf.float32))
      for key, v in example.features.feature.items()})
  assert sorted(parsed) == sorted(example.features.feature)
  _COLLECTED.setdefault(split, []).append(
      {k: (v.bytes_list.value[0].decode() if v.HasField('bytes_list') else
           (v.int64_list.value[0] if v.HasField('int64_list') else v.float_list.value[0]))
       for k, v in example.features.feature.items()})


def _collect_split(described):
  _COLLECTED['split'] = described


def _run(files, **options):
  """Runs build_splits in-process and returns {split: [feature dict]}."""
  _COLLECTED.clear()
  with beam.Pipeline() as p:
    splits, split = ingestion.build_splits(p, files, dict(ingestion.DEFAULT_OPTIONS, **options))
    for name, pcoll in splits.items():
      _ = pcoll | f'Collect{name}' >> beam.Map(_collect, name)
    _ = split | 'CollectSplit' >> beam.Map(_collect_split)
  return dict(_COLLECTED)


def _files(folder, users=True):
  """Pre-split layout: the tiny interactions for train, one row for eval."""
  inter = [str(folder / 'interactions.csv')]
  held_out = [write(folder / 'eval' / 'interactions.csv',
                    'user_id,item_id,rating,timestamp\n3,30,4,105\n')]
  out = {'train': inter, 'eval': held_out, 'items': [str(folder / 'items.csv')],
         'interactions': inter + held_out}
  if users:
    out['users'] = [str(folder / 'users.csv')]
  return out


def test_joins_features_and_keeps_ids_as_strings(tiny_tables):
  out = _run(_files(tiny_tables))
  assert [(r[F.USER_ID], r[F.ITEM_ID]) for r in out['eval']] == [('3', '30')]
  rows = {(r[F.USER_ID], r[F.ITEM_ID]): r for r in out['train']}
  assert len(rows) == 5
  first = rows[('1', '10')]
  assert first[F.RATING] == 5.0 and first[F.TIMESTAMP] == 100
  assert first['item__genres'] == 'Action|Comedy'  # split later by the transform
  assert first['item__price'] == pytest.approx(1.5)  # numeric column
  assert first['user__country'] == 'ES' and first['user__age'] == 20.0
  assert 'item__price' not in rows[('1', '20')]  # empty value -> missing feature
  assert sorted(r[F.ITEM_ID] for r in out['items']) == ['10', '20', '30']
  assert sorted(r[F.USER_ID] for r in out['users']) == ['1', '2', '3']


def test_hash_split_is_deterministic_and_partitions(tiny_tables):
  rows = ''.join(f'{u},{i},3,{100 + n}\n' for n, (u, i) in
                 enumerate((u, i) for u in (1, 2, 3) for i in (10, 20, 30) for _ in range(5)))
  path = [write(tiny_tables / 'interactions.csv', 'user_id,item_id,rating,timestamp\n' + rows)]
  files = {'train': path, 'eval': path, 'interactions': path,
           'items': [str(tiny_tables / 'items.csv')]}
  a, b = (_run(files, split='hash', eval_percent=30), _run(files, split='hash', eval_percent=30))
  key = lambda split: sorted(r[F.TIMESTAMP] for r in split)
  assert key(a['train']) == key(b['train']) and key(a['eval']) == key(b['eval'])
  assert len(a['train']) + len(a['eval']) == 45
  assert 5 <= len(a['eval']) <= 22  # about 30% of 45
  assert max(key(a['train'])) > min(key(a['eval']))  # not a cut by time
  assert a['split'] == {'split': 'hash', 'eval_percent': 30}


def _timed_rows(folder, timestamps):
  rows = ''.join(f'{1 + n % 3},{(10, 20, 30)[n % 3]},3,{t}\n' for n, t in enumerate(timestamps))
  path = [write(folder / 'interactions.csv', 'user_id,item_id,rating,timestamp\n' + rows)]
  return {'train': path, 'eval': path, 'interactions': path,
          'items': [str(folder / 'items.csv')]}


def test_one_folder_is_split_by_time_by_default(tiny_tables):
  # Ten rows, out of order, two of them tied at the cut: the latest 20% start at row 8 of
  # the sorted rows (time 180), and the tie at 180 goes to eval with it.
  files = _timed_rows(tiny_tables, [150, 190, 100, 180, 110, 180, 120, 130, 140, 160])
  out = _run(files)
  assert sorted(r[F.TIMESTAMP] for r in out['eval']) == [180, 180, 190]
  assert sorted(r[F.TIMESTAMP] for r in out['train']) == [100, 110, 120, 130, 140, 150, 160]
  assert out['split'] == {'split': 'time', 'eval_percent': 20, 'eval_from': 180}


def test_a_given_cut_date_overrides_the_share(tiny_tables):
  files = _timed_rows(tiny_tables, [150, 190, 100, 180, 110, 180, 120, 130, 140, 160])
  out = _run(files, eval_from=135, eval_percent=50)
  assert sorted(r[F.TIMESTAMP] for r in out['eval']) == [140, 150, 160, 180, 180, 190]
  assert out['split']['eval_from'] == 135


def test_pre_split_data_is_used_as_given(tiny_tables):
  assert _run(_files(tiny_tables))['split'] == {'split': 'given'}


def test_without_users_table_users_come_from_interactions(tiny_tables):
  out = _run(_files(tiny_tables, users=False))
  assert sorted(r[F.USER_ID] for r in out['users']) == ['1', '2', '3']
  assert not any(k.startswith(F.USER_PREFIX) for r in out['train'] for k in r)


@pytest.mark.parametrize('name,text,message', [
    ('interactions.csv', 'user_id,item_id,rating,timestamp\n1,10,5\n', 'line 2: expected 4 columns'),
    ('interactions.csv', 'user_id,item_id,rating,timestamp\n1,10,"5,100\n', 'malformed CSV'),
    ('interactions.csv', 'user_id,item_id,rating\n1,10,5\n', "missing required column(s) ['timestamp']"),
    ('interactions.csv', 'user_id,item_id,rating,timestamp\n1,10,five,100\n', "column 'rating' is 'five'"),
    ('interactions.csv', 'user_id,item_id,rating,timestamp\n1,10,5,yesterday\n', "column 'timestamp'"),
    ('interactions.csv', 'user_id,item_id,rating,timestamp\n1,10,9,100\n', 'outside the configured range'),
    ('interactions.csv', 'user_id,item_id,rating,timestamp\n1,10,nan,100\n', "column 'rating' is 'nan'"),
    ('interactions.csv', 'user_id,item_id,rating,timestamp\n,10,5,100\n', "column 'user_id' is empty"),
    ('interactions.csv', 'user_id,item_id,rating,timestamp\n1,99,5,100\n', "item_id '99' is not in items.csv"),
    ('interactions.csv', '', 'the file is empty'),
    ('interactions.csv', 'user_id,item_id,rating,timestamp\n', 'no data rows'),
    ('items.csv', 'item_id,title\n', 'no data rows'),
    ('items.csv', 'item_id,title\n10,A\n10,B\n', "item_id '10' appears on 2 rows"),
    ('items.csv', 'title\nA\n', "missing required column 'item_id'"),
])
def test_bad_input_names_file_line_and_column(tiny_tables, name, text, message):
  path = write(tiny_tables / name, text)
  with pytest.raises(Exception) as raised:
    _run(_files(tiny_tables))
  assert message in str(raised.value)
  assert os.path.basename(path) in str(raised.value)


def test_bytes_that_are_not_utf8_name_the_line(tiny_tables):
  with open(tiny_tables / 'interactions.csv', 'wb') as f:
    f.write(b'user_id,item_id,rating,timestamp\n1,10,5,100\n2,\xff\xfe,4,101\n')
  with pytest.raises(Exception, match=r'interactions.csv: line 3: bytes that are not UTF-8'):
    _run(_files(tiny_tables))


def test_very_long_field_is_refused(tiny_tables):
  write(tiny_tables / 'items.csv', 'item_id,title\n10,' + 'x' * 5000 + '\n20,B\n30,C\n')
  with pytest.raises(Exception, match=r"items.csv: line 2: column 'title' has 5000 characters"):
    _run(_files(tiny_tables), max_field_chars=4096)


def test_column_kinds():
  kinds = ingestion.ColumnKinds()
  acc = kinds.create_accumulator()
  for row in ({'a': '1', 'b': 'x', 'creator_id': '7'}, {'a': '', 'b': '2', 'creator_id': '8'}):
    acc = kinds.add_input(acc, row)
  assert kinds.extract_output(acc) == {'a': 'numeric', 'b': 'text', 'creator_id': 'text'}


def test_duplicate_interactions_are_kept(tiny_tables):
  """A repeated (user, item) row is a repeated engagement (a re-watch, a second like)."""
  write(tiny_tables / 'interactions.csv', 'user_id,item_id,rating,timestamp\n'
        '1,10,5,100\n1,10,4,200\n')
  out = _run(_files(tiny_tables))
  assert sorted(r[F.TIMESTAMP] for r in out['train']) == [100, 200]


def test_an_extra_interaction_column_is_ignored(tiny_tables):
  write(tiny_tables / 'interactions.csv', 'user_id,item_id,rating,timestamp,device\n'
        '1,10,5,100,phone\n')
  out = _run(_files(tiny_tables))
  assert 'device' not in out['train'][0] and out['train'][0][F.ITEM_ID] == '10'


def test_options_as_the_component_packs_them(tiny_tables):
  """Numbers come back from the component's Struct as floats; ingestion must take them."""
  from components.interaction_example_gen.component import InteractionExampleGen
  from tfx.types import standard_component_specs
  node = InteractionExampleGen(str(tiny_tables), ex.example_gen_pb2.Input(),
                               options={'max_field_chars': 100})
  key = standard_component_specs.CUSTOM_CONFIG_KEY
  options = ex.options_from_custom_config({key: node.exec_properties[key]})
  assert options['max_field_chars'] == 100 and isinstance(options['max_field_chars'], float)
  out = _run(_files(tiny_tables), **options)
  assert len(out['train']) == 5


def test_pieces_cut_at_record_ends_and_keep_line_numbers(tmp_path):
  # Quoted fields with line breaks and commas: a cut at a line end inside one would break it.
  rows = ['item_id,title']
  for i in range(300):
    rows.append(f'{i},"title {i}\nsecond line, {i}"' if i % 3 == 0 else f'{i},plain {i}')
  path = write(tmp_path / 'items.csv', '\n'.join(rows) + '\n')
  pieces = list(ingestion.csv_pieces(path, piece_bytes=200))
  assert len(pieces) > 10 and pieces[-1][1][1] is None
  assert all(a[1][1] == b[1][0] for a, b in zip(pieces, pieces[1:]))  # contiguous
  whole = list(ingestion.read_csv_rows(path, 4096))
  cut = [r for _, piece in pieces for r in ingestion.read_csv_rows(path, 4096, piece)]
  assert cut == whole and len(whole) == 300
  assert whole[3] == (7, {'item_id': '3', 'title': 'title 3\nsecond line, 3'})  # lines 6-7
  # A fault far into the file is reported from its piece with the file's line number.
  broken = write(tmp_path / 'broken.csv', '\n'.join(rows[:250]) + '\n250,a,b\n')
  with pytest.raises(ingestion.InputDataError, match=r'broken.csv: line 334: expected 2 columns'):
    for _, piece in ingestion.csv_pieces(broken, piece_bytes=200):
      list(ingestion.read_csv_rows(broken, 4096, piece))


def test_block_reads_give_the_lines_of_line_reads(tmp_path, monkeypatch):
  # Lines read a block at a time: a line cut by a block boundary, '\r\n' ends, an empty line
  # and a last line without its end come out byte for byte (GFile.readline drops the '\r',
  # which would put the pieces' byte offsets off).
  text = b'a,b\r\n1,"x\ny"\n\n22,333333333333\n4,5'
  path = str(tmp_path / 'lines.csv')
  with open(path, 'wb') as f:
    f.write(text)
  expected = [b'a,b\r\n', b'1,"x\n', b'y"\n', b'\n', b'22,333333333333\n', b'4,5']
  for block in (1, 3, 7, 1 << 20):
    monkeypatch.setattr(ingestion, 'BLOCK_BYTES', block)
    with tf.io.gfile.GFile(path, 'rb') as f:
      assert list(ingestion._lines(f)) == expected, block
    with tf.io.gfile.GFile(path, 'rb') as f:  # a piece: the lines of its first 9 bytes
      assert list(ingestion._lines(f, 9)) == expected[:2], block


def test_cut_read_takes_the_timestamps_of_every_piece(tmp_path):
  rows = ['user_id,item_id,timestamp,rating']
  rows += [f'u{i},"i{i}\nx",{1000 + i},{i % 5 + 1}' for i in range(200)]
  rows += ['u,i,not-a-time,1', 'u,i', 'u,i,7.9,1']  # left out, left out, read as 7
  path = str(tmp_path / 'interactions.csv')
  with open(path, 'wb') as f:  # Windows line ends: the pieces' offsets count the '\r's
    f.write(('\r\n'.join(rows) + '\r\n').encode())
  pieces = list(ingestion.csv_pieces(path, piece_bytes=300))
  assert len(pieces) > 5
  found = [t for piece in pieces for t in ingestion.piece_timestamps(piece)]
  assert found == list(range(1000, 1200)) + [7]
  read = []  # the main read of the same pieces: the same rows, and the fault at its line
  with pytest.raises(ingestion.InputDataError, match=r'line 403: expected 4 columns'):
    for _, piece in pieces:
      read.extend(row['timestamp'] for _, row in ingestion.read_csv_rows(path, 99, piece))
  assert read == [str(t) for t in range(1000, 1200)] + ['not-a-time']
  cut = ingestion.TimeCut(0.1)
  acc = cut.add_input(cut.create_accumulator(), ingestion.piece_timestamps(pieces[0]))
  acc = cut.merge_accumulators(
      [acc] + [cut.add_input(cut.create_accumulator(), ingestion.piece_timestamps(p))
               for p in pieces[1:]])
  assert cut.extract_output(acc) == ingestion.time_cut(np.array(found), 0.1)
