"""The seed-42 80/20 random split used by every benchmark.

Rows of DIR/interactions.csv are taken in file order, permuted with
`numpy.random.default_rng(seed).permutation(n)`, and the first `train_fraction`
of the permutation is train, the rest eval. This mirrors the TFRS tutorials'
shuffle-then-take split so the baseline figures are comparable with theirs.
"""
import argparse
import os
import shutil
from typing import Dict, Optional, Tuple

import numpy as np
import pandas as pd

ID_COLUMNS = {'user_id': str, 'item_id': str}


def write_seed_split(data_dir: str, out_dir: str, seed: int = 42,
                     train_fraction: float = 0.8) -> str:
  """Writes OUT/train/interactions.csv, OUT/eval/interactions.csv and copies the side tables.

  Every column is read as text so the written rows are byte-for-byte the input values.
  """
  interactions = read_interactions(data_dir)
  n = len(interactions)
  order = np.random.default_rng(seed).permutation(n)
  n_train = int(n * train_fraction)
  return write_split(data_dir, out_dir, interactions,
                     {'train': order[:n_train], 'eval': order[n_train:]})


def read_interactions(data_dir: str) -> pd.DataFrame:
  """DIR/interactions.csv with every column as text, so that rows are written back as read."""
  return pd.read_csv(os.path.join(data_dir, 'interactions.csv'), dtype=str,
                     keep_default_na=False)


def write_split(data_dir: str, out_dir: str, interactions: pd.DataFrame,
                parts: Dict[str, np.ndarray]) -> str:
  """Writes OUT/<part>/interactions.csv for each part's rows (positions or a mask) and copies
  items.csv (required) and users.csv (if any) beside them."""
  for name, rows in parts.items():
    os.makedirs(os.path.join(out_dir, name), exist_ok=True)
    chosen = interactions[rows] if np.asarray(rows).dtype == bool else interactions.iloc[rows]
    chosen.to_csv(os.path.join(out_dir, name, 'interactions.csv'), index=False)
  for side in ('items.csv', 'users.csv'):
    src = os.path.join(data_dir, side)
    if os.path.exists(src):
      shutil.copyfile(src, os.path.join(out_dir, side))
    elif side == 'items.csv':
      raise FileNotFoundError(src)
  return out_dir


def load_split(split_dir: str) -> Tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame,
                                        Optional[pd.DataFrame]]:
  """Returns (train_df, eval_df, items_df, users_df or None), ids as str."""
  train = pd.read_csv(os.path.join(split_dir, 'train', 'interactions.csv'), dtype=ID_COLUMNS)
  eval_ = pd.read_csv(os.path.join(split_dir, 'eval', 'interactions.csv'), dtype=ID_COLUMNS)
  items = pd.read_csv(os.path.join(split_dir, 'items.csv'), dtype={'item_id': str})
  users_path = os.path.join(split_dir, 'users.csv')
  users = (pd.read_csv(users_path, dtype={'user_id': str})
           if os.path.exists(users_path) else None)
  return train, eval_, items, users


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--data-dir', default='data/movielens-100k')
  parser.add_argument('--out', required=True)
  parser.add_argument('--seed', type=int, default=42)
  parser.add_argument('--train-fraction', type=float, default=0.8)
  args = parser.parse_args(argv)
  out = write_seed_split(args.data_dir, args.out, args.seed, args.train_fraction)
  train, eval_, _, _ = load_split(out)
  print(f'wrote {out}: train={len(train)} eval={len(eval_)}')


if __name__ == '__main__':
  main()
