"""Ingestion: interactions.csv, items.csv and users.csv read, checked and joined into
tf.Examples, as Beam transforms.

A recommender needs the interactions joined with the features of their item and user, the
whole item catalogue (items nobody interacted with included) and the users table (so that a
user with no interactions can be served from its features). build_splits makes four splits:
``train`` and ``eval`` (joined interactions), ``items`` and ``users``.

Rules (docs/data.md has the input layout):
  * ids (user_id, item_id and any ``*_id`` column) are strings, even when they look numeric;
  * a feature column whose non-empty values all parse as numbers is numeric, else text;
    text values keep their ``|`` separators, which the transform splits;
  * bad input stops ingestion with an error naming the file, the line and the column.

Library code of InteractionExampleGen (components/interaction_example_gen/executor.py, which
reads the options and the input config and writes the splits into the Examples artifact):
nothing here knows of TFX.
"""
import array
import csv
import hashlib
import io
import math
import os
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

import apache_beam as beam
import numpy as np
import tensorflow as tf
from absl import logging

from core import features as F
from core.configs import IngestConfig
from core.recent_popularity import time_cut

Row = Dict[str, str]

# The ingestion options' defaults are IngestConfig's (overridden through custom_config).
DEFAULT_OPTIONS = IngestConfig().to_dict()


class InputDataError(ValueError):
  """Bad input data; the message names the file, the line or column and the problem."""


def _is_id_column(column: str) -> bool:
  return column in (F.USER_ID, F.ITEM_ID) or column.endswith('_id')


def _decoded_lines(raw, path: str, before: int = 0) -> Iterator[str]:
  for number, line in enumerate(raw, before + 1):
    try:
      yield line.decode('utf-8')
    except UnicodeDecodeError as e:
      raise InputDataError(
          f'{path}: line {number}: bytes that are not UTF-8 ({e.reason} at byte {e.start} '
          'of the line)') from None


# A CSV file is parsed in pieces of about this many bytes, spread over the workers.
PIECE_BYTES = 4 << 20

Piece = Tuple[int, Optional[int], int]  # start byte, end byte (None: the end), lines before


# Bytes read at a time: a GFile read line by line costs a call into TensorFlow per line, the
# largest cost of splitting a file into pieces.
BLOCK_BYTES = 1 << 20


def _lines(raw, size: Optional[int] = None) -> Iterator[bytes]:
  """The lines of ``raw`` (a binary file) from where it stands, read a block at a time; with
  ``size``, only the lines that make up its next ``size`` bytes (a piece ends on a line end)."""
  left, read = b'', 0
  while size is None or read < size:
    block = raw.read(BLOCK_BYTES)
    if not block:
      break
    data = left + block
    end = data.rfind(b'\n') + 1  # lines end at b'\n' only, as GFile.readline's do
    left = data[end:]
    for line in io.BytesIO(data[:end]):
      if size is not None and read >= size:
        return
      read += len(line)
      yield line
  if left and (size is None or read < size):
    yield left


def csv_pieces(path: str, piece_bytes: int = PIECE_BYTES) -> Iterator[Tuple[str, Piece]]:
  """(path, piece) of a CSV file cut into pieces of about ``piece_bytes`` at record ends.

  A quoted field may hold a line break, so a file cannot be cut at any line: the cuts come
  from one pass of the csv module's own reader (in C, cheap beside parsing), so they fall
  where the parser would end a record. A file is not cut past a point the reader stops on
  (malformed CSV); the piece that holds a fault reports it with its line number.
  """
  with tf.io.gfile.GFile(path, 'rb') as raw:
    read = 0

    def counted():
      nonlocal read
      for line in _lines(raw):
        read += len(line)
        yield line.decode('utf-8', 'replace')

    reader = csv.reader(counted(), strict=True)
    start, before, cut_at = 0, 0, piece_bytes
    try:
      for _ in reader:
        if read >= cut_at:
          yield path, (start, read, before)
          start, before, cut_at = read, reader.line_num, read + piece_bytes
    except csv.Error:
      pass
  yield path, (start, None, before)


def read_csv_rows(path: str, max_field_chars: int,
                  piece: Optional[Piece] = None) -> Iterator[Tuple[int, Row]]:
  """Yields (line number, row dict) of a CSV file with a header, or of one ``piece`` of it
  (csv_pieces), checking its shape."""
  start, end, before = piece or (0, None, 0)
  with tf.io.gfile.GFile(path, 'rb') as raw:
    if start:
      raw.seek(start)
    lines = _lines(raw, None if end is None else end - start)
    reader = csv.reader(_decoded_lines(lines, path, before), strict=True)
    try:
      if start:
        header = read_header(path)  # checked with the first piece
      else:
        header = next(reader, None)
        if header is None:
          raise InputDataError(f'{path}: the file is empty; expected a header row')
        header = [h.strip() for h in header]
        if any(not h for h in header):
          raise InputDataError(f'{path}: line 1: the header has an empty column name')
        duplicated = sorted({h for h in header if header.count(h) > 1})
        if duplicated:
          raise InputDataError(f'{path}: line 1: duplicated columns {duplicated}')
      for values in reader:
        line = before + reader.line_num
        if not values:
          continue
        if len(values) != len(header):
          raise InputDataError(
              f'{path}: line {line}: expected {len(header)} columns ({",".join(header)}), '
              f'found {len(values)}')
        for column, value in zip(header, values):
          if len(value) > max_field_chars:
            raise InputDataError(
                f'{path}: line {line}: column {column!r} has {len(value)} characters; '
                f'the limit is {max_field_chars}')
        yield line, dict(zip(header, (v.strip() for v in values)))
    except csv.Error as e:
      raise InputDataError(f'{path}: line {before + reader.line_num}: malformed CSV: {e}'
                           ) from None


def read_header(path: str) -> List[str]:
  """The header of a CSV file, checked, without reading the data rows."""
  with tf.io.gfile.GFile(path, 'rb') as raw:
    first = raw.readline()
  if not first.strip():
    raise InputDataError(f'{path}: the file is empty; expected a header row')
  try:
    header = next(csv.reader([first.decode('utf-8')]))
  except UnicodeDecodeError:
    raise InputDataError(f'{path}: line 1: the header has bytes that are not UTF-8') from None
  return [h.strip() for h in header]


def _parse_number(value: str) -> Optional[float]:
  try:
    number = float(value)
  except ValueError:
    return None
  return number if math.isfinite(number) else None


class ColumnKinds(beam.CombineFn):
  """Finds which columns are numeric: every non-empty value parses as a finite number."""

  def create_accumulator(self) -> Dict[str, bool]:
    return {}

  def add_input(self, acc: Dict[str, bool], row: Row) -> Dict[str, bool]:
    for column, value in row.items():
      if column.startswith('_'):
        continue
      numeric = acc.get(column, True)
      if numeric and value and _parse_number(value) is None:
        numeric = False
      acc[column] = numeric
    return acc

  def merge_accumulators(self, accs: Iterable[Dict[str, bool]]) -> Dict[str, bool]:
    merged: Dict[str, bool] = {}
    for acc in accs:
      for column, numeric in acc.items():
        merged[column] = merged.get(column, True) and numeric
    return merged

  def extract_output(self, acc: Dict[str, bool]) -> Dict[str, str]:
    return {c: ('numeric' if numeric and not _is_id_column(c) else 'text')
            for c, numeric in acc.items()}


def encode_features(row: Row, kinds: Dict[str, str], prefix: str,
                    skip: Iterable[str]) -> Dict[str, Any]:
  """Typed feature values of a table row, keyed with ``prefix``; empty values are dropped."""
  out: Dict[str, Any] = {}
  for column, value in row.items():
    if column in skip or column.startswith('_') or not value:
      continue
    if kinds.get(column) == 'numeric':
      number = _parse_number(value)
      if number is not None:
        out[prefix + column] = number
    else:
      out[prefix + column] = value
  return out


def to_example(values: Dict[str, Any]) -> tf.train.Example:
  """A tf.train.Example of single values: str -> bytes, int -> int64, float -> float.

  Filled in place through the feature map: building each Feature and list as a message of its
  own and copying it in is the slower way, and this runs once a row and once a table row.
  """
  example = tf.train.Example()
  feature = example.features.feature
  for key, value in values.items():
    if isinstance(value, str):
      feature[key].bytes_list.value.append(value.encode())
    elif isinstance(value, int):
      feature[key].int64_list.value.append(value)
    else:
      feature[key].float_list.value.append(value)
  return example


def serialized(values: Dict[str, Any]) -> bytes:
  """to_example(values), serialized."""
  return to_example(values).SerializeToString()


def check_interaction(path: str, line: int, row: Row, options: Dict[str, Any]) -> Dict[str, Any]:
  """The typed interaction columns of one interactions.csv row, or an InputDataError."""
  where = f'{path}: line {line}'
  out: Dict[str, Any] = {}
  for column in (F.USER_ID, F.ITEM_ID):
    if not row.get(column):
      raise InputDataError(f'{where}: column {column!r} is empty')
    out[column] = row[column]
  try:
    out[F.TIMESTAMP] = int(float(row[F.TIMESTAMP]))
  except ValueError:
    raise InputDataError(
        f'{where}: column {F.TIMESTAMP!r} is {row[F.TIMESTAMP]!r}; expected a Unix time '
        'in seconds') from None
  if F.RATING in row:
    rating = _parse_number(row[F.RATING])
    if rating is None:
      raise InputDataError(
          f'{where}: column {F.RATING!r} is {row[F.RATING]!r}; expected a number')
    low, high = options['rating_min'], options['rating_max']
    if not low <= rating <= high:
      raise InputDataError(
          f'{where}: column {F.RATING!r} is {rating:g}, outside the configured range '
          f'[{low:g}, {high:g}]')
    out[F.RATING] = rating
  return out


def _key_row(parsed, id_column: str):
  """(id, row) of a parsed (path, line, row) table row."""
  path, line, row = parsed
  if not row.get(id_column):
    raise InputDataError(f'{path}: line {line}: column {id_column!r} is empty')
  return row[id_column], row


def _check_unique(keyed, path: str, id_column: str):
  key, rows = keyed
  rows = list(rows)
  if len(rows) > 1:
    raise InputDataError(f'{path}: {id_column} {key!r} appears on {len(rows)} rows; ids must be unique')
  return key, rows[0]


def _is_eval(row: Dict[str, Any], eval_percent: int) -> bool:
  """Deterministic hash split on the interaction itself (stable across runs and runners)."""
  key = f'{row[F.USER_ID]}\x1f{row[F.ITEM_ID]}\x1f{row[F.TIMESTAMP]}'.encode()
  return int(hashlib.md5(key).hexdigest()[:8], 16) % 100 < eval_percent


def input_files(input_base: str, pattern: str) -> List[str]:
  files = sorted(tf.io.gfile.glob(os.path.join(input_base, pattern)))
  if not files:
    raise InputDataError(f'{os.path.join(input_base, pattern)}: no such file')
  return files


def _piece_rows(piece: Tuple[str, Piece], max_field_chars: int
                ) -> Iterator[Tuple[str, int, Row]]:
  path, where = piece
  for line, row in read_csv_rows(path, max_field_chars, where):
    yield path, line, row


def _read_table(pipeline: beam.Pipeline, label: str, files: List[str],
                max_field_chars: int) -> beam.PCollection:
  """(path, line, row) of every data row of ``files``.

  Files are cut into pieces at record ends (csv_pieces) and the pieces, not the rows, are
  redistributed: every worker parses, checks, joins and encodes its own pieces, streaming.
  Redistributing parsed rows instead makes the local runner hold every row of the table in
  memory at once (docs/quality.md).
  """
  return (pipeline
          | f'{label}Files' >> beam.Create(files)
          | f'{label}Pieces' >> beam.FlatMap(csv_pieces)
          | f'{label}Spread' >> beam.Reshuffle()
          | f'{label}Parse' >> beam.FlatMap(_piece_rows, max_field_chars))


def piece_timestamps(piece: Tuple[str, Piece]) -> np.ndarray:
  """The timestamps of one piece of an interactions file (csv_pieces) that parse as numbers.

  Only for counting the time cut: rows that do not parse are left out here and reported, with
  their line, by the main read (read_csv_rows, check_interaction).
  """
  path, (start, end, _) = piece
  column = read_header(path).index(F.TIMESTAMP)
  found = array.array('q')
  with tf.io.gfile.GFile(path, 'rb') as raw:
    if start:
      raw.seek(start)
    lines = _lines(raw, None if end is None else end - start)
    if not start:
      next(lines, None)  # the header
    try:
      for values in csv.reader(line.decode('utf-8', 'replace') for line in lines):
        try:
          found.append(int(float(values[column])))
        except (IndexError, ValueError, OverflowError):
          pass
    except csv.Error:
      pass
  return np.frombuffer(found, dtype=np.int64)


def _read_timestamps(pipeline: beam.Pipeline, label: str, files: List[str]
                     ) -> beam.PCollection:
  """An array of the timestamps of each piece of ``files`` (piece_timestamps)."""
  return (pipeline
          | f'{label}Files' >> beam.Create(files)
          | f'{label}Pieces' >> beam.FlatMap(csv_pieces)
          | f'{label}Spread' >> beam.Reshuffle()
          | f'{label}Timestamps' >> beam.Map(piece_timestamps))


def _side_table(pipeline: beam.Pipeline, label: str, files: List[str], id_column: str,
                prefix: str, max_chars: int) -> beam.PCollection:
  """(id, serialized tf.train.Example of the row's features keyed with ``prefix``, id left
  out) of each row of items.csv or users.csv.

  Serialized because every interaction joins them: a serialized Example is the most compact
  form a lookup table of a million rows can take in each Beam worker, and two serialized
  Examples concatenated parse as one Example with the features of both (protobuf merges a
  repeated message field), so the join is a concatenation. Ids must be unique; which columns
  are numeric is decided over the whole table first.
  """
  rows = _read_table(pipeline, label, files, max_chars)
  by_id = (rows
           | f'Key{label}' >> beam.Map(_key_row, id_column)
           | f'Group{label}' >> beam.GroupByKey()
           | f'Unique{label}' >> beam.Map(_check_unique, files[0], id_column))
  kinds = (rows | f'{label}Values' >> beam.Map(lambda r: r[2])
           | f'{label}Kinds' >> beam.CombineGlobally(ColumnKinds()))
  _ = (by_id | f'Count{label}' >> beam.combiners.Count.Globally()
       | f'Require{label}' >> beam.Map(_require_rows, label.lower(), files))
  return by_id | f'{label}Features' >> beam.Map(
      lambda kv, column_kinds: (kv[0], serialized(
          encode_features(kv[1], column_kinds, prefix, (id_column,)))),
      beam.pvalue.AsSingleton(kinds))


def _require_rows(count: int, label: str, files: List[str]) -> None:
  if count == 0:
    raise InputDataError(f'{", ".join(files)}: no data rows (only a header, or empty); '
                         f'the {label} table needs at least one row')


def _has_data_row(path: str) -> bool:
  with tf.io.gfile.GFile(path, 'rb') as f:
    f.readline()
    return any(line.strip() for line in f)


def check_tables(files: Dict[str, List[str]]) -> None:
  """Checks headers and emptiness up front, so these fail before any Beam work."""
  for table in ('interactions', 'items'):
    if not any(_has_data_row(path) for path in files[table]):
      for path in files[table]:
        read_header(path)  # an empty file says so
      _require_rows(0, table, files[table])
  for path in files['interactions']:
    header = read_header(path)
    missing = [c for c in F.REQUIRED_INTERACTION_COLUMNS if c not in header]
    if missing:
      raise InputDataError(f'{path}: missing required column(s) {missing}; found {header}')
    extra = [c for c in header if c not in F.REQUIRED_INTERACTION_COLUMNS
             and c not in F.OPTIONAL_INTERACTION_COLUMNS]
    if extra:
      logging.warning('%s: ignoring unknown interaction column(s) %s', path, extra)
  for table, id_column in (('items', F.ITEM_ID), ('users', F.USER_ID)):
    for path in files.get(table, []):
      if id_column not in read_header(path):
        raise InputDataError(f'{path}: missing required column {id_column!r}')


def build_splits(pipeline: beam.Pipeline, files: Dict[str, List[str]],
                 options: Dict[str, Any]
                 ) -> Tuple[Dict[str, beam.PCollection], beam.PCollection]:
  """The four output splits as PCollections of serialized tf.train.Examples, and a one-element
  PCollection that describes how train and eval were cut (split_one_folder).

  Args:
    files: 'train' and 'eval' (interaction files; the same files mean "split them"),
      'items', and optionally 'users' (absent: users come from the interactions alone).
    options: DEFAULT_OPTIONS keys.
  """
  check_tables(files)
  max_chars = int(options['max_field_chars'])  # a float when it comes through the Struct

  item_features = _side_table(pipeline, 'Items', files['items'], F.ITEM_ID, F.ITEM_PREFIX,
                              max_chars)
  user_features = (_side_table(pipeline, 'Users', files['users'], F.USER_ID, F.USER_PREFIX,
                               max_chars) if files.get('users') else None)

  def interactions(label: str, split_files: List[str]) -> beam.PCollection:
    return (_read_table(pipeline, label, split_files, max_chars)
            | f'{label}Check' >> beam.Map(
                lambda r: (r[0], r[1], check_interaction(r[0], r[1], r[2], options))))

  def add_features(row, item_table, user_table):
    """(path, line, values, the joined Example serialized, *whatever followed values)."""
    path, line, values = row[:3]
    item = item_table.get(values[F.ITEM_ID])
    if item is None:
      raise InputDataError(
          f'{path}: line {line}: item_id {values[F.ITEM_ID]!r} is not in items.csv '
          f'({files["items"][0]})')
    user = user_table.get(values[F.USER_ID], b'') if user_table is not None else b''
    return (path, line, values, serialized(values) + item + user) + tuple(row[3:])

  def join(rows: beam.PCollection) -> beam.PCollection:
    # One join for both splits: each Beam worker then builds one lookup table per side
    # table, not one per split.
    user_side = (beam.pvalue.AsDict(user_features) if user_features is not None
                 else beam.pvalue.AsSingleton(pipeline | 'NoUsers' >> beam.Create([None])))
    return rows | 'Join' >> beam.Map(add_features, beam.pvalue.AsDict(item_features),
                                     user_side)

  def examples(label: str, rows: beam.PCollection, split_files: List[str]) -> beam.PCollection:
    _ = (rows | f'{label}Count' >> beam.combiners.Count.Globally()
         | f'{label}Require' >> beam.Map(_require_rows, f'{label} interactions', split_files))
    return rows | f'{label}Examples' >> beam.Map(lambda r: r[3])

  if files['train'] == files['eval']:
    joined = join(interactions('Interactions', files['train']))
    # The time cut is counted on a read of its own: counted on the joined rows, it would make
    # the local runner hold every joined row until the cut is known (a stage does not start
    # before its side inputs), where with its own read the rows stream from file to split.
    # That read takes only the timestamps, a packed array a piece (the checks are the main
    # read's).
    timestamps = (_read_timestamps(pipeline, 'CutInteractions', files['train'])
                  if options['split'] != 'hash' and not int(options['eval_from'] or 0)
                  else None)
    train_rows, eval_rows, split = split_one_folder(joined, options, timestamps)
  else:
    # Each row carries where it came from (0: train, 1: eval) through the join.
    given = [interactions(label, files[name])
             | f'{label}Origin' >> beam.Map(lambda r, origin: r + (origin,), origin)
             for origin, (label, name) in enumerate((('TrainInteractions', F.TRAIN),
                                                     ('EvalInteractions', F.EVAL)))]
    joined = join(given | 'AllInteractions' >> beam.Flatten())
    train_rows, eval_rows = joined | 'GivenSplit' >> beam.Partition(lambda r, _: r[4], 2)
    split = pipeline | 'DescribeGivenSplit' >> beam.Create([{'split': 'given'}])

  splits = {
      F.TRAIN: examples('Train', train_rows, files['train']),
      F.EVAL: examples('Eval', eval_rows, files['eval']),
      F.ITEMS: (item_features | 'ItemExample' >> beam.Map(
          lambda kv: serialized({F.ITEM_ID: kv[0]}) + kv[1])),
  }
  if user_features is not None:
    splits[F.USERS] = (user_features | 'UserExample' >> beam.Map(
        lambda kv: serialized({F.USER_ID: kv[0]}) + kv[1]))
  else:
    splits[F.USERS] = (train_rows
                       | 'TrainUserIds' >> beam.Map(lambda r: r[2][F.USER_ID])
                       | 'DistinctUsers' >> beam.Distinct()
                       | 'UserIdExample' >> beam.Map(lambda u: serialized({F.USER_ID: u})))
  return splits, split


def split_one_folder(rows: beam.PCollection, options: Dict[str, Any],
                     timestamps: Optional[beam.PCollection] = None):
  """(train rows, eval rows, a one-element PCollection describing the split) of one folder.

  ``timestamps``: arrays of the timestamps the time cut is counted on (_read_timestamps, a
  second read of the same files, so that ``rows`` can stream); needed only for a time split
  without a given ``eval_from``.

  By time (the default): eval is every row at or after the cut, the given ``eval_from`` or
  else the first timestamp of the latest ``eval_percent`` of the rows, counted exactly over
  the distinct timestamps (core.recent_popularity.time_cut_from_counts). By hash: a stable
  pseudo-random share.
  """
  eval_percent = int(options['eval_percent'])
  if options['split'] == 'hash':
    train_rows, eval_rows = rows | 'HashSplit' >> beam.Partition(
        lambda r, _: int(_is_eval(r[2], eval_percent)), 2)
    described = rows.pipeline | 'DescribeHashSplit' >> beam.Create(
        [{'split': 'hash', 'eval_percent': eval_percent}])
    return train_rows, eval_rows, described
  if int(options['eval_from'] or 0):
    cut = rows.pipeline | 'GivenCut' >> beam.Create([int(options['eval_from'])])
  else:
    if timestamps is None:
      raise ValueError('a time split without eval_from needs the timestamps to count its cut on')
    cut = timestamps | 'Cut' >> beam.CombineGlobally(TimeCut(eval_percent / 100))
  train_rows, eval_rows = rows | 'TimeSplit' >> beam.Partition(
      lambda r, _, at: int(r[2][F.TIMESTAMP] >= at), 2, beam.pvalue.AsSingleton(cut))
  described = cut | 'DescribeTimeSplit' >> beam.Map(
      lambda at: {'split': 'time', 'eval_percent': eval_percent, 'eval_from': int(at)})
  return train_rows, eval_rows, described


class TimeCut(beam.CombineFn):
  """core.recent_popularity.time_cut over a PCollection of timestamp sequences, exactly.

  The timestamps are gathered as packed int64s (8 bytes a row: 80 MB for 10M rows) rather than
  counted per distinct value, which on interaction data (nearly every timestamp distinct) is a
  Python object and a shuffled key per row.
  """

  def __init__(self, eval_share: float):
    self._eval_share = eval_share

  def create_accumulator(self) -> array.array:
    return array.array('q')

  def add_input(self, acc: array.array, timestamps) -> array.array:
    acc.frombytes(np.asarray(timestamps, dtype=np.int64).tobytes())
    return acc

  def merge_accumulators(self, accs: Iterable[array.array]) -> array.array:
    merged = array.array('q')
    for acc in accs:
      merged.extend(acc)
    return merged

  def extract_output(self, acc: array.array) -> int:
    return time_cut(np.frombuffer(acc, dtype=np.int64), self._eval_share)
