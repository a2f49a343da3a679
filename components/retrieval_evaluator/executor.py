"""RetrievalEvaluator executor: exact top-k over the whole catalogue, ties counted against.

The model is used through its exported signatures (``embed_users``, ``embed_items``), so what
is scored is what will be served. Scores are computed in row blocks sized to the catalogue,
so memory stays bounded at a million items; ``max_users`` samples eval users at scale.
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
from core.retrieval_metrics import rank_of_target, top_k_rates

METRICS_FILE = 'metrics.json'


def evaluate_retrieval(model, eval_users: np.ndarray, eval_items: np.ndarray,
                       catalogue: np.ndarray, seen: Dict[str, set],
                       ks: Sequence[int] = (10, 50, 100), max_users: int = 0,
                       seed: int = 42) -> Dict[str, Any]:
  """Top-k shares of eval interactions, plain and with each user's train items removed.

  Args:
    model: a loaded retrieval SavedModel with embed_users / embed_items signatures.
    eval_users, eval_items: str arrays, one entry per eval interaction.
    catalogue: str array of every item id.
    seen: user -> set of items in the user's training interactions.
    max_users: if > 0, score only that many eval users, drawn at random with ``seed``.
  """
  if max_users and len(set(eval_users)) > max_users:
    users = np.unique(eval_users)
    keep = set(np.random.default_rng(seed).choice(users, max_users, replace=False))
    mask = np.array([u in keep for u in eval_users])
    eval_users, eval_items = eval_users[mask], eval_items[mask]
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
  metrics.update({f'{k}_unseen': v for k, v in
                  top_k_rates(ranks_unseen, [k for k in ks if k in (10, 100)]).items()})
  metrics['eval_interactions'] = int(len(target))
  metrics['eval_users'] = int(len(users))
  return metrics


def decide_blessing(metrics: Dict[str, float], baseline: Optional[Dict[str, float]],
                    min_top_100: float, max_drop: float) -> Dict[str, Any]:
  """Blessed when top_100 clears the floor and does not fall behind the baseline by more."""
  reasons = []
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
  seen: Dict[str, set] = {}
  for u, i in zip(train_users, train_items):
    seen.setdefault(u, set()).add(i)
  return eval_users, eval_items, catalogue, seen


class Executor(base_executor.BaseExecutor):
  """Loads the model(s), scores the eval split, writes metrics.json and the blessing."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    examples = input_dict['examples']
    split_files = lambda split: [io_utils.all_files_pattern(uri) for uri in
                                 artifact_utils.get_split_uris(examples, split)]
    eval_users, eval_items, catalogue, seen = evaluation_inputs(
        split_files(F.TRAIN), split_files(F.EVAL), split_files(F.ITEMS))
    ks = json.loads(exec_properties['top_ks'])
    max_users = int(exec_properties.get('max_users') or 0)

    def score(model_artifact):
      model = tf.saved_model.load(path_utils.serving_model_path(model_artifact.uri))
      return evaluate_retrieval(model, eval_users, eval_items, catalogue, seen, ks, max_users)

    model_artifact = artifact_utils.get_single_instance(input_dict['model'])
    metrics = score(model_artifact)
    baseline_artifacts = input_dict.get('baseline_model') or []
    baseline = score(baseline_artifacts[0]) if baseline_artifacts else None
    decision = decide_blessing(metrics, baseline, float(exec_properties['min_top_100']),
                               float(exec_properties['max_top_100_drop']))
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
