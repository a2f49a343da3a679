"""Finds the input tables in a data directory (the README's "input layout").

DIR/interactions.csv (split 80/20 by hash), or DIR/train/interactions.csv and
DIR/eval/interactions.csv (pre-split); DIR/items.csv; optional DIR/users.csv.
"""
import os

import tensorflow as tf

from pipeline.configs import InputLayout


class LayoutError(ValueError):
  """The data directory does not follow the input layout."""


def _exists(data_dir: str, relative: str) -> bool:
  return tf.io.gfile.exists(os.path.join(data_dir, relative))


def resolve_layout(data_dir: str) -> InputLayout:
  """The InputLayout of ``data_dir``, or a LayoutError saying which file is missing."""
  if not tf.io.gfile.isdir(data_dir):
    raise LayoutError(f'{data_dir}: no such data directory')
  if _exists(data_dir, 'interactions.csv'):
    train = eval_ = 'interactions.csv'
  elif _exists(data_dir, 'train/interactions.csv') and _exists(data_dir, 'eval/interactions.csv'):
    train, eval_ = 'train/interactions.csv', 'eval/interactions.csv'
  else:
    raise LayoutError(
        f'{data_dir}: expected interactions.csv, or train/interactions.csv and '
        'eval/interactions.csv')
  if not _exists(data_dir, 'items.csv'):
    raise LayoutError(f'{data_dir}: missing items.csv (the item catalogue)')
  users = 'users.csv' if _exists(data_dir, 'users.csv') else None
  return InputLayout(train=train, eval=eval_, items='items.csv', users=users)
