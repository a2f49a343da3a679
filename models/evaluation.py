"""How a retrieval export is judged: what the RetrievalEvaluator and the sweep both score.

The model is used through its exported signatures (``embed_users``, ``embed_items``), so what
is scored is what will be served. Every eval interaction is ranked against the whole
catalogue, not a sampled slate, with the core.retrieval_metrics rule (ties counted against
the model), because serving searches the whole catalogue too. Scores are computed in row
blocks sized to the catalogue, so memory stays bounded as the catalogue grows;
``sample_users`` bounds the eval users instead.

Figures come plain and with each user's train items removed (a feed never shows them
again), and for returning and new users apart: a feed serves both, and one figure over all
rows hides the smaller group. The recent-popularity list is scored on the same rows by the
same rule, because it is what a practitioner tries first and a model that loses to it has
nothing to serve. ``decide_blessing`` turns the figures into the gate's decision: a floor,
no regression past a margin from the served model (the baseline), and, when asked, beating
that list.

Library code of the RetrievalEvaluator (components/retrieval_evaluator/executor.py, which
reads its artifacts, calls this and writes metrics.json and the blessing): these functions
know nothing of TFX and are tested on arrays and a hand-made model.
"""
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf

from core import features as F
from core.artifacts import embed
from core.recent_popularity import ranks_unseen, recent_list_scores
from core.retrieval_metrics import rank_of_target, top_k_rates
from models import data


def sample_users(eval_users: np.ndarray, max_users: int, seed: int = 42) -> np.ndarray:
  """Which eval rows to score: all, or those of ``max_users`` users drawn with ``seed``."""
  if not max_users or len(set(eval_users)) <= max_users:
    return np.ones(len(eval_users), dtype=bool)
  users = np.unique(eval_users)
  keep = set(np.random.default_rng(seed).choice(users, max_users, replace=False))
  return np.array([u in keep for u in eval_users])


def _queries(model, eval_users: np.ndarray, eval_times: Optional[np.ndarray],
             batch: int = 4096):
  """(distinct eval users, [queries, d] vectors, each row's query): one query per user,
  or, with ``eval_times`` and an export that takes the request time, one per (user, time)."""
  users, user_row = np.unique(eval_users, return_inverse=True)
  if eval_times is None or F.RETRIEVAL_AT_SIGNATURE not in model.signatures:
    return users, embed(model.signatures['embed_users'], users), user_row
  pairs, query_row = np.unique(np.stack([user_row, np.asarray(eval_times, np.int64)], 1),
                               axis=0, return_inverse=True)
  fn = model.signatures[F.RETRIEVAL_AT_SIGNATURE]
  parts = [fn(user_id=tf.constant(users[pairs[i:i + batch, 0]]),
              **{F.REQUEST_TIME: tf.constant(pairs[i:i + batch, 1])})['embeddings'].numpy()
           for i in range(0, len(pairs), batch)]
  return users, np.concatenate(parts).astype(np.float32), query_row.reshape(-1)


def evaluate_retrieval(model, eval_users: np.ndarray, eval_items: np.ndarray,
                       catalogue: np.ndarray, seen: Dict[str, set],
                       ks: Sequence[int] = (10, 50, 100),
                       eval_times: Optional[np.ndarray] = None) -> Dict[str, Any]:
  """Top-k shares of eval interactions, plain and with each user's train items removed,
  the latter also for returning users (with train interactions) and new users apart.

  Args:
    model: a loaded retrieval SavedModel with embed_users / embed_items signatures.
    eval_users, eval_items: str arrays, one entry per eval interaction.
    catalogue: str array of every item id.
    seen: user -> set of items in the user's training interactions.
    eval_times: each eval interaction's Unix time, if known: it is then scored as a
      request made at that time (the export's embed_users_at; an export without it is
      scored as requested now), which is what a live feed would have asked.
  """
  eval_users = np.asarray(eval_users)
  column = {item: j for j, item in enumerate(catalogue)}
  missing = [i for i in eval_items if i not in column]
  if missing:
    raise ValueError(f'{len(missing)} eval items are not in the catalogue, e.g. {missing[:3]}')
  users, user_emb, user_row = _queries(model, eval_users, eval_times)
  item_emb = embed(model.signatures['embed_items'], catalogue)
  target = np.array([column[i] for i in eval_items], dtype=np.int64)
  block = max(1, int(2e7 // max(1, len(catalogue))))
  ranks, ranks_unseen = [], []
  for start in range(0, len(target), block):
    rows = slice(start, start + block)
    scores = user_emb[user_row[rows]] @ item_emb.T
    excluded = np.zeros(scores.shape, dtype=bool)
    for r, u in enumerate(eval_users[rows]):
      cols = [column[i] for i in seen.get(u, ()) if i in column]
      excluded[r, cols] = True
    ranks.append(rank_of_target(scores, target[rows]))
    ranks_unseen.append(rank_of_target(scores, target[rows], excluded))
  ranks = np.concatenate(ranks) if ranks else np.zeros([0], np.int64)
  ranks_unseen = np.concatenate(ranks_unseen) if ranks_unseen else np.zeros([0], np.int64)
  metrics: Dict[str, Any] = top_k_rates(ranks, ks)
  unseen_ks = [k for k in ks if k in (10, 100)]
  metrics.update({f'{k}_unseen': v for k, v in top_k_rates(ranks_unseen, unseen_ks).items()})
  metrics.update(by_user_group(ranks_unseen, eval_users, seen, unseen_ks))
  metrics['eval_interactions'] = int(len(target))
  metrics['eval_users'] = int(len(users))
  return metrics


def by_user_group(ranks_unseen: np.ndarray, eval_users: np.ndarray, seen: Dict[str, set],
                  ks: Sequence[int]) -> Dict[str, Any]:
  """top_k_unseen of returning users (known from train) and new users, and their row counts:
  a feed serves both, and one figure over all rows hides the smaller group."""
  returning = np.array([u in seen for u in eval_users], dtype=bool)
  out: Dict[str, Any] = {}
  for group, rows in (('returning', returning), ('new', ~returning)):
    out.update({f'{k}_unseen_{group}': v for k, v in
                top_k_rates(ranks_unseen[rows], ks).items()})
    out[f'eval_interactions_{group}'] = int(rows.sum())
  return out


def recent_popularity(eval_users: np.ndarray, eval_items: np.ndarray, catalogue: np.ndarray,
                      seen: Dict[str, set], train: Dict[str, np.ndarray],
                      ks: Sequence[int] = (10, 100)) -> Dict[str, Any]:
  """The recent-popularity list's figures on the same eval rows, scored by the same rule.

  The list counts the train interactions of a recent window, chosen on a validation cut
  inside train (core.recent_popularity); the user's train items are removed as for the model.
  """
  column = {item: j for j, item in enumerate(catalogue)}
  known = np.array([i in column for i in train[F.ITEM_ID]], dtype=bool)
  item_rows = np.array([column[i] for i in train[F.ITEM_ID][known]], dtype=np.int64)
  scores, described = recent_list_scores(train[F.USER_ID][known], item_rows,
                                         train[F.TIMESTAMP][known], len(catalogue), max(ks))
  target = np.array([column[i] for i in eval_items], dtype=np.int64)
  seen_rows = [np.array([column[i] for i in seen.get(u, ()) if i in column], dtype=np.int64)
               for u in eval_users]
  ranks = ranks_unseen(scores, target, seen_rows)
  out: Dict[str, Any] = {f'{k}_unseen': v for k, v in top_k_rates(ranks, ks).items()}
  out.update(by_user_group(ranks, eval_users, seen, ks))
  out['window_days'] = described['window_days']
  return out


def decide_blessing(metrics: Dict[str, float], baseline: Optional[Dict[str, float]],
                    min_top_100: float, max_drop: float,
                    recent: Optional[Dict[str, float]] = None) -> Dict[str, Any]:
  """Blessed when top_100 clears the floor, does not fall behind the baseline by more, and,
  with ``recent``, top_100_unseen beats the recent-popularity list's on the same rows (a
  model that loses to the list a practitioner tries first has nothing to serve)."""
  reasons = []
  if recent is not None and metrics['top_100_unseen'] <= recent['top_100_unseen']:
    reasons.append(f"top_100_unseen {metrics['top_100_unseen']:.4f} does not beat the "
                   f"recent-popularity list's {recent['top_100_unseen']:.4f}")
  if metrics['top_100'] < min_top_100:
    reasons.append(f"top_100 {metrics['top_100']:.4f} < threshold {min_top_100:.4f}")
  if baseline is not None and metrics['top_100'] < baseline['top_100'] - max_drop:
    reasons.append(f"top_100 {metrics['top_100']:.4f} is more than {max_drop:.4f} below the "
                   f"blessed model's {baseline['top_100']:.4f}")
  return {'blessed': not reasons, 'reasons': reasons}


def _read_pairs(files: List[str]):
  table = data.read_table(files, [F.USER_ID, F.ITEM_ID])
  return table[F.USER_ID].astype(str), table[F.ITEM_ID].astype(str)


def read_eval_rows(files: List[str]) -> Dict[str, np.ndarray]:
  """The eval split's users and items (str) and timestamps (int64), one entry per row."""
  table = data.read_table(files, [F.USER_ID, F.ITEM_ID, F.TIMESTAMP])
  return {F.USER_ID: table[F.USER_ID].astype(str), F.ITEM_ID: table[F.ITEM_ID].astype(str),
          F.TIMESTAMP: table[F.TIMESTAMP].astype(np.int64)}


def evaluation_inputs(train_files: List[str], eval_files: List[str], items_files: List[str]):
  """What evaluate_retrieval takes: eval users and items, the catalogue, each user's
  train items, and the eval rows' times."""
  rows = read_eval_rows(eval_files)
  train_users, train_items = _read_pairs(train_files)
  catalogue = data.read_table(items_files, [F.ITEM_ID])[F.ITEM_ID].astype(str)
  return (rows[F.USER_ID], rows[F.ITEM_ID], catalogue, seen_items(train_users, train_items),
          rows[F.TIMESTAMP])


def seen_items(users: np.ndarray, items: np.ndarray,
               among: Optional[np.ndarray] = None) -> Dict[str, set]:
  """user -> the set of items of the user's rows; with ``among``, only for those users (the
  sampled eval users: a set per train user costs gigabytes at a million users)."""
  users, items = np.asarray(users), np.asarray(items)
  if among is not None:
    keep = np.isin(users, np.unique(np.asarray(among)))
    users, items = users[keep], items[keep]
  seen: Dict[str, set] = {}
  for u, i in zip(users, items):
    seen.setdefault(u, set()).add(i)
  return seen
