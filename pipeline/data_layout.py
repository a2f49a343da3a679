"""Finds the input tables in a data directory (the input layout of docs/data.md).

One data set: DIR/interactions.csv (split 80/20 by hash), or DIR/train/interactions.csv and
DIR/eval/interactions.csv (pre-split); DIR/items.csv; optional DIR/users.csv.

Spans (scheduled retraining): DIR/span-<N>/ folders, each holding one data set's
interactions in either form. items.csv and users.csv sit in the span folder or once beside
the span folders; a span's own copy wins. The patterns use ExampleGen's ``{SPAN}``.
"""
import os
import re
from typing import List, Optional

import tensorflow as tf

from core import features as F
from core.configs import InputLayout

SPAN_DIR = 'span-{SPAN}'
_SPAN_RE = re.compile(r'^span-(\d+)$')


class LayoutError(ValueError):
  """The data directory does not follow the input layout."""


def _exists(data_dir: str, relative: str) -> bool:
  return tf.io.gfile.exists(os.path.join(data_dir, relative))


def list_spans(data_dir: str) -> List[int]:
  """The span numbers of DIR/span-<N>/ folders, ascending."""
  spans = []
  for name in tf.io.gfile.listdir(data_dir):
    match = _SPAN_RE.match(name.rstrip('/'))
    if match and tf.io.gfile.isdir(os.path.join(data_dir, name)):
      spans.append(int(match.group(1)))
  return sorted(spans)


def _interactions(folder: str, shown: str):
  if _exists(folder, 'interactions.csv'):
    return 'interactions.csv', 'interactions.csv'
  if _exists(folder, 'train/interactions.csv') and _exists(folder, 'eval/interactions.csv'):
    return 'train/interactions.csv', 'eval/interactions.csv'
  raise LayoutError(f'{shown}: expected interactions.csv, or train/interactions.csv and '
                    'eval/interactions.csv')


def _has_rating(path: str) -> bool:
  """Whether the header of an interactions file names the rating column."""
  with tf.io.gfile.GFile(path) as f:
    header = f.readline()
  columns = [c.strip().strip('"').lstrip('\ufeff') for c in header.split(',')]
  return F.RATING in columns


def resolve_layout(data_dir: str, span: Optional[int] = None) -> InputLayout:
  """The InputLayout of ``data_dir``, or a LayoutError saying which file is missing.

  With span folders, ``span`` picks one (default: the latest).
  """
  if not tf.io.gfile.isdir(data_dir):
    raise LayoutError(f'{data_dir}: no such data directory')
  spans = list_spans(data_dir)
  if not spans:
    if span is not None:
      raise LayoutError(f'{data_dir}: --span {span} given but there are no span-<N> folders')
    train, eval_ = _interactions(data_dir, data_dir)
    if not _exists(data_dir, 'items.csv'):
      raise LayoutError(f'{data_dir}: missing items.csv (the item catalogue)')
    users = 'users.csv' if _exists(data_dir, 'users.csv') else None
    return InputLayout(train=train, eval=eval_, items='items.csv', users=users,
                       implicit=not _has_rating(os.path.join(data_dir, train)))

  chosen = spans[-1] if span is None else span
  if chosen not in spans:
    raise LayoutError(f'{data_dir}: no span-{chosen} folder (spans found: '
                      f'{", ".join(map(str, spans))})')
  folder = os.path.join(data_dir, f'span-{chosen}')
  train, eval_ = _interactions(folder, folder)

  def table(name: str) -> Optional[str]:
    if _exists(folder, name):
      return f'{SPAN_DIR}/{name}'
    if _exists(data_dir, name):
      return name
    return None

  items = table('items.csv')
  if items is None:
    raise LayoutError(f'{folder}: missing items.csv (the item catalogue), neither in the span '
                      f'folder nor in {data_dir}')
  return InputLayout(train=f'{SPAN_DIR}/{train}', eval=f'{SPAN_DIR}/{eval_}', items=items,
                     users=table('users.csv'), span=chosen,
                     implicit=not _has_rating(os.path.join(folder, train)))
