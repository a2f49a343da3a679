"""RetrievalEvaluator executor: exact top-k over the whole catalogue, ties counted against.

The model is used through its exported signatures (``embed_users``, ``embed_items``), so what
is scored is what will be served. Scores are computed in row blocks sized to the catalogue,
so memory stays bounded at a million items; ``max_users`` samples eval users at scale. The
recent-popularity list is scored on the same rows, and the gate can require beating it.
"""
import json
import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf
from absl import logging
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils
from tfx.utils import path_utils

from models import data
from core import features as F
from core.artifacts import embed, write_blessing
from core.recent_popularity import ranks_unseen, recent_list_scores
from core.retrieval_metrics import rank_of_target, top_k_rates

METRICS_FILE = 'metrics.json'


def sample_users(eval_users: np.ndarray, max_users: int, seed: int = 42) -> np.ndarray:
  """Which eval rows to score: all, or those of ``max_users`` users drawn with ``seed``."""
  if not max_users or len(set(eval_users)) <= max_users:
    return np.ones(len(eval_users), dtype=bool)
  users = np.unique(eval_users)
  keep = set(np.random.default_rng(seed).choice(users, max_users, replace=False))
  return np.array([u in keep for u in eval_users])


def evaluate_retrieval(model, eval_users: np.ndarray, eval_items: np.ndarray,
                       catalogue: np.ndarray, seen: Dict[str, set],
                       ks: Sequence[int] = (10, 50, 100)) -> Dict[str, Any]:
  """Top-k shares of eval interactions, plain and with each user's train items removed,
  the latter also for returning users (with train interactions) and new users apart.

  Args:
    model: a loaded retrieval SavedModel with embed_users / embed_items signatures.
    eval_users, eval_items: str arrays, one entry per eval interaction.
    catalogue: str array of every item id.
    seen: user -> set of items in the user's training interactions.
  """
  column = {item: j for j, item in enumerate(catalogue)}
  missing = [i for i in eval_items if i not in column]
  if missing:
    raise ValueError(f'{len(missing)} eval items are not in the catalogue, e.g. {missing[:3]}')
  users, user_row = np.unique(eval_users, return_inverse=True)
  user_emb = embed(model.signatures['embed_users'], users)
  item_emb = embed(model.signatures['embed_items'], catalogue)
  target = np.array([column[i] for i in eval_items], dtype=np.int64)
  block = max(1, int(2e7 // max(1, len(catalogue))))
  ranks, ranks_unseen = [], []
  for start in range(0, len(target), block):
    rows = slice(start, start + block)
    scores = user_emb[user_row[rows]] @ item_emb.T
    excluded = np.zeros(scores.shape, dtype=bool)
    for r, u in enumerate(users[user_row[rows]]):
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


def evaluation_inputs(train_files: List[str], eval_files: List[str], items_files: List[str]):
  """What evaluate_retrieval takes: eval users and items, the catalogue, and each user's
  train items."""
  eval_users, eval_items = _read_pairs(eval_files)
  train_users, train_items = _read_pairs(train_files)
  catalogue = data.read_table(items_files, [F.ITEM_ID])[F.ITEM_ID].astype(str)
  return eval_users, eval_items, catalogue, seen_items(train_users, train_items)


def seen_items(users: np.ndarray, items: np.ndarray) -> Dict[str, set]:
  seen: Dict[str, set] = {}
  for u, i in zip(users, items):
    seen.setdefault(u, set()).add(i)
  return seen


class Executor(base_executor.BaseExecutor):
  """Loads the model(s), scores the eval split, writes metrics.json and the blessing."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    examples = input_dict['examples']
    split_files = lambda split: [io_utils.all_files_pattern(uri) for uri in
                                 artifact_utils.get_split_uris(examples, split)]
    train = data.read_table(split_files(F.TRAIN), [F.USER_ID, F.ITEM_ID, F.TIMESTAMP])
    train = {F.USER_ID: train[F.USER_ID].astype(str), F.ITEM_ID: train[F.ITEM_ID].astype(str),
             F.TIMESTAMP: train[F.TIMESTAMP].astype(np.int64)}
    eval_users, eval_items = _read_pairs(split_files(F.EVAL))
    catalogue = data.read_table(split_files(F.ITEMS), [F.ITEM_ID])[F.ITEM_ID].astype(str)
    seen = seen_items(train[F.USER_ID], train[F.ITEM_ID])
    rows = sample_users(eval_users, int(exec_properties.get('max_users') or 0))
    eval_users, eval_items = eval_users[rows], eval_items[rows]
    ks = json.loads(exec_properties['top_ks'])

    def score(model_artifact):
      model = tf.saved_model.load(path_utils.serving_model_path(model_artifact.uri))
      return evaluate_retrieval(model, eval_users, eval_items, catalogue, seen, ks)

    model_artifact = artifact_utils.get_single_instance(input_dict['model'])
    metrics = score(model_artifact)
    baseline_artifacts = input_dict.get('baseline_model') or []
    baseline = score(baseline_artifacts[0]) if baseline_artifacts else None
    recent = recent_popularity(eval_users, eval_items, catalogue, seen, train)
    gate_recent = bool(int(exec_properties.get('beat_recent_popularity') or 0))
    decision = decide_blessing(metrics, baseline, float(exec_properties['min_top_100']),
                               float(exec_properties['max_top_100_drop']),
                               recent if gate_recent else None)
    metrics['recent_popularity'] = recent
    logging.info('Retrieval metrics %s; baseline %s; %s', metrics, baseline, decision)

    evaluation = artifact_utils.get_single_instance(output_dict['evaluation'])
    io_utils.write_string_file(
        os.path.join(evaluation.uri, METRICS_FILE),
        json.dumps({'metrics': metrics, 'baseline': baseline, **decision}, indent=2))

    blessing = artifact_utils.get_single_instance(output_dict['blessing'])
    if baseline_artifacts:
      blessing.set_string_custom_property('baseline_model', baseline_artifacts[0].uri)
      blessing.set_int_custom_property('baseline_model_id', baseline_artifacts[0].id)
    write_blessing(blessing, decision['blessed'], decision['reasons'], model_artifact)
