"""Top-k metrics for retrieval, shared by the pipeline's evaluator and the benchmark baselines.

One implementation so that the pipeline and the baselines are scored by the same rule:
an eval interaction (u, i) is a hit at k when fewer than k catalogue items score strictly
higher than i *or tie with it* (ties are counted against the model).
"""
from typing import Dict, Iterable, Optional

import numpy as np


def rank_of_target(scores: np.ndarray, target: np.ndarray,
                   excluded: Optional[np.ndarray] = None) -> np.ndarray:
  """Pessimistic 0-based rank of each row's target item among its scores.

  Args:
    scores: float [n, n_items], one row of catalogue scores per eval interaction.
    target: int [n], the column of the interacted item in each row.
    excluded: optional bool [n, n_items]; True marks items removed from the row's
      candidates (the user's train items, for "seen removed"). The target itself is
      never excluded.

  Returns:
    int [n]: how many other candidates score >= the target (0 means top-1).
  """
  scores = np.asarray(scores, dtype=np.float64)
  rows = np.arange(scores.shape[0])
  target_scores = scores[rows, target]
  beats = scores >= target_scores[:, None]
  beats[rows, target] = False
  if excluded is not None:
    beats &= ~excluded
  return beats.sum(axis=1)


def top_k_rates(ranks: np.ndarray, ks: Iterable[int]) -> Dict[str, float]:
  """Share of rows whose pessimistic rank is inside each k: {'top_10': ..., ...}."""
  ranks = np.asarray(ranks)
  if ranks.size == 0:
    return {f'top_{k}': 0.0 for k in ks}
  return {f'top_{k}': float(np.mean(ranks < k)) for k in ks}
