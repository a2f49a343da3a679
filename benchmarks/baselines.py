"""Reference baselines for the retrieval and ranking pipeline, scored on the seed split.

Every top-k figure goes through `core.retrieval_metrics` so the baselines and the
pipeline's evaluator share one rule (pessimistic ranks over the whole items.csv catalogue).
Each baseline is a pure function of DataFrames (ids as str) returning a metrics dict.

Run: TF_USE_LEGACY_KERAS=1 python -m benchmarks.baselines --split-dir /tmp/seed42
"""
import argparse
import json
import os
import time
from typing import Callable, Dict, Optional

import sys

import numpy as np
import pandas as pd

if __package__ in (None, ''):  # run as `python benchmarks/baselines.py`: make the repo importable
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from core.retrieval_metrics import rank_of_target, top_k_rates

KS = (10, 50, 100)
UNSEEN_KS = (10, 100)
BATCH_ROWS = 1024


def _index(ids) -> Dict[str, int]:
  """Maps each distinct id (as str, first-seen order) to a column/row number."""
  return {k: i for i, k in enumerate(pd.unique(pd.Series(ids, dtype=str)))}


def _catalogue(items: pd.DataFrame) -> Dict[str, int]:
  """The candidate set is every items.csv item, seen in train or not."""
  return _index(items['item_id'])


def _item_columns(df: pd.DataFrame, item_index: Dict[str, int]) -> np.ndarray:
  cols = df['item_id'].astype(str).map(item_index)
  if cols.isna().any():
    missing = sorted(set(df['item_id'].astype(str)[cols.isna()]))[:5]
    raise ValueError(f'items not in items.csv: {missing}')
  return cols.to_numpy(dtype=np.int64)


def _train_matrix(train: pd.DataFrame, eval_: pd.DataFrame, item_index: Dict[str, int]):
  """Binary train user x item matrix plus each eval row's user row.

  Eval users absent from train map to one extra all-zero row (no history, nothing seen).
  """
  user_index = _index(train['user_id'])
  x = np.zeros((len(user_index) + 1, len(item_index)), dtype=np.float64)
  x[train['user_id'].astype(str).map(user_index).to_numpy(),
    _item_columns(train, item_index)] = 1.0
  eval_users = eval_['user_id'].astype(str).map(user_index).fillna(len(user_index))
  return x, eval_users.to_numpy(dtype=np.int64)


def _ranks(score_rows: Callable[[slice], np.ndarray], target: np.ndarray,
           seen_rows: Optional[Callable[[slice], np.ndarray]] = None) -> np.ndarray:
  """Pessimistic ranks computed BATCH_ROWS eval rows at a time to bound memory."""
  out = []
  for start in range(0, len(target), BATCH_ROWS):
    rows = slice(start, start + BATCH_ROWS)
    excluded = None if seen_rows is None else seen_rows(rows)
    out.append(rank_of_target(score_rows(rows), target[rows], excluded))
  return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def _topk_metrics(scores_for_users: Callable[[np.ndarray], np.ndarray], x: np.ndarray,
                  eval_users: np.ndarray, target: np.ndarray) -> Dict[str, float]:
  """top_10/50/100 over the catalogue, and top_10/100 with the user's train items removed."""
  score_rows = lambda rows: scores_for_users(eval_users[rows])
  metrics = top_k_rates(_ranks(score_rows, target), KS)
  unseen = top_k_rates(_ranks(score_rows, target, lambda rows: x[eval_users[rows]] > 0),
                       UNSEEN_KS)
  metrics.update({f'{k}_unseen': v for k, v in unseen.items()})
  return metrics


def most_popular(train: pd.DataFrame, eval_: pd.DataFrame,
                 items: pd.DataFrame) -> Dict[str, float]:
  """Scores every item by its train interaction count: the floor any model must beat.

  The same score row for all users, so the top-k is the non-personalised chart; ties
  (e.g. the many items never seen in train, score 0) count against the target.
  """
  item_index = _catalogue(items)
  x, eval_users = _train_matrix(train, eval_, item_index)
  counts = np.bincount(_item_columns(train, item_index), minlength=len(item_index))
  counts = counts.astype(np.float64)
  return _topk_metrics(lambda users: np.broadcast_to(counts, (len(users), len(counts))),
                       x, eval_users, _item_columns(eval_, item_index))


def ease_weights(x: np.ndarray, lam: float) -> np.ndarray:
  """EASE item-item matrix B for a binary user x item matrix X (Steck 2019, eq. 8)."""
  p = np.linalg.inv(x.T @ x + lam * np.eye(x.shape[1]))
  b = -p / np.diag(p)[None, :]
  np.fill_diagonal(b, 0.0)
  return b


def ease(train: pd.DataFrame, eval_: pd.DataFrame, items: pd.DataFrame,
         lam: float = 500.0) -> Dict[str, float]:
  """EASE (Steck 2019): closed-form item-item linear model, a strong simple retrieval bar.

  G = X^T X + lam I, P = G^-1, B = -P / diag(P) (column-wise), diag(B) = 0; scores = X_u B
  on the binary train matrix X over the whole catalogue.
  """
  item_index = _catalogue(items)
  x, eval_users = _train_matrix(train, eval_, item_index)
  b = ease_weights(x, lam)
  return _topk_metrics(lambda users: x[users] @ b, x, eval_users,
                       _item_columns(eval_, item_index))


def _tf():
  """Imports TensorFlow lazily (legacy Keras, as TFRS 0.7 needs) so EASE/popularity stay TF-free."""
  os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  import tensorflow as tf
  import tensorflow_recommenders as tfrs
  return tf, tfrs


def _embedding_tower(tf, vocabulary: np.ndarray, dim: int = 32):
  """StringLookup + Embedding, as in the TFRS tutorials (row 0 is the OOV bucket)."""
  return tf.keras.Sequential([
      tf.keras.layers.StringLookup(vocabulary=vocabulary, mask_token=None),
      tf.keras.layers.Embedding(len(vocabulary) + 1, dim),
  ])


def _train_dataset(tf, train: pd.DataFrame, seed: int, with_rating: bool = False):
  """Tutorial input pipeline: shuffle(100_000).batch(8192).cache() (one cached order)."""
  features = {'user_id': train['user_id'].astype(str).to_numpy(),
              'item_id': train['item_id'].astype(str).to_numpy()}
  if with_rating:
    features['rating'] = train['rating'].to_numpy(dtype=np.float32)
  return (tf.data.Dataset.from_tensor_slices(features)
          .shuffle(100_000, seed=seed).batch(8192).cache())


def tutorial_two_tower(train: pd.DataFrame, eval_: pd.DataFrame, items: pd.DataFrame,
                       epochs: int = 3, seed: int = 42) -> Dict[str, float]:
  """The TFRS basic retrieval tutorial model, the published two-tower reference point.

  Ids only, 32-d embeddings, in-batch softmax (tfrs.tasks.Retrieval), Adagrad(0.1).
  Top-k is ours (dot products with every catalogue item, pessimistic ranks), not
  FactorizedTopK, so it is comparable with the other baselines.
  """
  tf, tfrs = _tf()
  tf.keras.utils.set_random_seed(seed)
  user_vocab = np.array(list(_index(train['user_id'])))
  item_vocab = np.array(list(_catalogue(items)))
  user_model = _embedding_tower(tf, user_vocab)
  item_model = _embedding_tower(tf, item_vocab)
  # The towers run unconverted by autograph (no tensor control flow in them): converting
  # the Keras layer internals when fit traces the step costs ~10 s and changes nothing.
  plain = tf.autograph.experimental.do_not_convert

  class TwoTower(tfrs.Model):

    def __init__(self):
      super().__init__()
      self.user_model, self.item_model = user_model, item_model
      self.task = tfrs.tasks.Retrieval()

    def compute_loss(self, features, training=False):
      return self.task(plain(self.user_model)(features['user_id']),
                       plain(self.item_model)(features['item_id']))

  model = TwoTower()
  model.compile(optimizer=tf.keras.optimizers.Adagrad(learning_rate=0.1))
  model.fit(_train_dataset(tf, train, seed), epochs=epochs, verbose=0)
  assert len(model.trainable_variables) == 2, 'both embedding tables must be trained'

  item_emb = item_model(item_vocab).numpy().astype(np.float64)
  users = eval_['user_id'].astype(str).to_numpy()
  target = _item_columns(eval_, _catalogue(items))
  score_rows = lambda rows: (
      user_model(users[rows]).numpy().astype(np.float64) @ item_emb.T)
  return top_k_rates(_ranks(score_rows, target), KS)


def seed_ranking_model(train: pd.DataFrame, eval_: pd.DataFrame, items: pd.DataFrame,
                       epochs: int = 3, seed: int = 42) -> Dict[str, float]:
  """The TFRS basic ranking tutorial model: the rating-prediction (RMSE) reference point.

  User and item 32-d embeddings, concatenated, Dense(256 relu) -> Dense(64 relu) ->
  Dense(1), MSE loss, Adagrad(0.1), batch 8192.
  """
  tf, _ = _tf()
  tf.keras.utils.set_random_seed(seed)
  user_in = tf.keras.Input(shape=(), dtype=tf.string, name='user_id')
  item_in = tf.keras.Input(shape=(), dtype=tf.string, name='item_id')
  hidden = tf.keras.layers.Concatenate()([
      _embedding_tower(tf, np.array(list(_index(train['user_id']))))(user_in),
      _embedding_tower(tf, np.array(list(_catalogue(items))))(item_in)])
  hidden = tf.keras.layers.Dense(256, activation='relu')(hidden)
  hidden = tf.keras.layers.Dense(64, activation='relu')(hidden)
  output = tf.keras.layers.Dense(1)(hidden)

  class PlainStepModel(tf.keras.Model):
    """Keras steps left unconverted by autograph, as plain `keras` always was: ~6 s less tracing."""
    train_step = tf.autograph.experimental.do_not_convert(tf.keras.Model.train_step)
    predict_step = tf.autograph.experimental.do_not_convert(tf.keras.Model.predict_step)

  model = PlainStepModel({'user_id': user_in, 'item_id': item_in}, output)
  model.compile(optimizer=tf.keras.optimizers.Adagrad(learning_rate=0.1), loss='mse')
  data = _train_dataset(tf, train, seed, with_rating=True).map(
      lambda f: ({'user_id': f['user_id'], 'item_id': f['item_id']}, f['rating']))
  model.fit(data, epochs=epochs, verbose=0)

  predicted = model.predict({'user_id': eval_['user_id'].astype(str).to_numpy(),
                             'item_id': eval_['item_id'].astype(str).to_numpy()},
                            batch_size=BATCH_ROWS, verbose=0)[:, 0]
  error = predicted.astype(np.float64) - eval_['rating'].to_numpy(dtype=np.float64)
  return {'rmse': float(np.sqrt(np.mean(error ** 2)))}


BASELINES = {
    'most_popular': most_popular,
    'ease': ease,
    'tutorial_two_tower': tutorial_two_tower,
    'seed_ranking_model': seed_ranking_model,
}


def run_all(split_dir: str, names=None) -> Dict[str, Dict[str, float]]:
  """Runs each baseline on the split; adds 'seconds' (wall time of fit plus scoring)."""
  from benchmarks.split import load_split
  train, eval_, items, _ = load_split(split_dir)
  results = {}
  for name in names or BASELINES:
    start = time.perf_counter()
    metrics = dict(BASELINES[name](train, eval_, items))
    metrics['seconds'] = round(time.perf_counter() - start, 2)
    results[name] = metrics
  return results


def _table(results: Dict[str, Dict[str, float]]) -> str:
  columns = ['top_10', 'top_50', 'top_100', 'top_10_unseen', 'top_100_unseen', 'rmse',
             'seconds']
  lines = ['| baseline | ' + ' | '.join(columns) + ' |',
           '|---' * (len(columns) + 1) + '|']
  for name, metrics in results.items():
    cells = [f'{metrics[c]:.4f}' if c in metrics and c != 'seconds'
             else (f'{metrics[c]:.1f}' if c in metrics else '') for c in columns]
    lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--split-dir', default='/tmp/seed42')
  parser.add_argument('--data-dir', default='data/movielens-100k',
                      help='used to write the seed-42 split when --split-dir has none')
  parser.add_argument('--only', nargs='*', choices=sorted(BASELINES))
  parser.add_argument('--json', help='also write the results here')
  args = parser.parse_args(argv)
  if not os.path.exists(os.path.join(args.split_dir, 'train', 'interactions.csv')):
    from benchmarks.split import write_seed_split
    write_seed_split(args.data_dir, args.split_dir)
  results = run_all(args.split_dir, args.only)
  print(_table(results))
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(results, f, indent=2)


if __name__ == '__main__':
  main()
