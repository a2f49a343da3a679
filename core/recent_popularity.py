"""What is popular lately: the list a practitioner tries first on time-ordered data.

The retrieval gate requires a model to beat it on the eval rows, the benchmark prints it beside
the models, and the retrieval model adds it to its scores as a prior. One implementation so
that all three mean the same list.

The window (how far back "lately" reaches) is chosen on a validation cut inside the training
rows, never on the eval rows: the latest ``validation_share`` of the training rows by time are
predicted from the popularity of the window before them, each candidate window is scored by
the top-k share with the user's earlier items removed, and the best is kept.
"""
from typing import Dict, Iterable, Optional, Sequence, Tuple

import numpy as np

DAY = 86400
# Candidate windows in days; None is "every training row" (plain popularity).
WINDOWS_DAYS: Tuple[Optional[int], ...] = (3, 7, 14, 30, 60, 90, 180, None)


def time_cut(timestamps: np.ndarray, eval_share: float) -> int:
  """The first timestamp of the latest ``eval_share`` of the rows.

  Rows at or after it are the latest ones (ties at the cut go with them), rows before it the
  past: the rule of the ingestion's time split (time_cut_from_counts).
  """
  values, counts_ = np.unique(np.asarray(timestamps, dtype=np.int64), return_counts=True)
  return time_cut_from_counts(zip(values, counts_), eval_share)


def time_cut_from_counts(timestamp_counts: Iterable[Tuple[int, int]], eval_share: float) -> int:
  """time_cut from (timestamp, number of rows) pairs, the form a distributed count gives:
  the timestamp of row ``int(n * (1 - eval_share))`` of the rows sorted by time."""
  pairs = sorted((int(t), int(c)) for t, c in timestamp_counts)
  total = sum(c for _, c in pairs)
  if not total:
    raise ValueError('no timestamps to cut')
  position = min(total - 1, int(total * (1.0 - eval_share)))
  seen = 0
  for timestamp, count in pairs:
    seen += count
    if seen > position:
      return timestamp
  return pairs[-1][0]


def counts(item_rows: np.ndarray, timestamps: np.ndarray, n_items: int, until: int,
           window_days: Optional[int]) -> np.ndarray:
  """Interactions per item in [until - window, until); every row before ``until`` if None."""
  timestamps = np.asarray(timestamps, dtype=np.int64)
  keep = timestamps < until
  if window_days is not None:
    keep &= timestamps >= until - window_days * DAY
  return np.bincount(np.asarray(item_rows)[keep], minlength=n_items).astype(np.float64)


def ranks_unseen(scores: np.ndarray, target: np.ndarray, seen: Sequence[np.ndarray]
                 ) -> np.ndarray:
  """Pessimistic 0-based rank of each target under one score vector shared by every user,
  with the user's earlier items removed (``seen[r]``: the item rows of eval row r's user).

  The rule of core.retrieval_metrics.rank_of_target (ties count against the target), without
  building a row of the catalogue per eval row: a million items stay cheap.
  """
  scores = np.asarray(scores, dtype=np.float64)
  target = np.asarray(target, dtype=np.int64)
  ordered = np.sort(scores)
  target_scores = scores[target]
  # Items scoring >= the target, the target itself left out.
  ranks = len(scores) - np.searchsorted(ordered, target_scores, side='left') - 1
  for r, rows in enumerate(seen):
    if len(rows):
      rows = rows[rows != target[r]]
      ranks[r] -= int(np.sum(scores[rows] >= target_scores[r]))
  return ranks


def top_k_share(scores: np.ndarray, target: np.ndarray, seen: Sequence[np.ndarray],
                k: int) -> float:
  if not len(target):
    return 0.0
  return float(np.mean(ranks_unseen(scores, target, seen) < k))


def _seen_rows(users: np.ndarray, items: np.ndarray) -> Dict[object, np.ndarray]:
  order = np.argsort(users, kind='stable')
  users, items = np.asarray(users)[order], np.asarray(items)[order]
  keys, starts = np.unique(users, return_index=True)
  return dict(zip(keys, np.split(items, starts[1:])))


def choose_window(users: np.ndarray, item_rows: np.ndarray, timestamps: np.ndarray,
                  n_items: int, k: int = 100, validation_share: float = 0.2,
                  windows: Iterable[Optional[int]] = WINDOWS_DAYS
                  ) -> Tuple[Optional[int], Dict[Optional[int], float]]:
  """The window whose list best predicts the latest training rows from the ones before.

  Returns (window in days or None for all, {window: top-k share on the validation rows}).
  """
  users, item_rows = np.asarray(users), np.asarray(item_rows)
  timestamps = np.asarray(timestamps, dtype=np.int64)
  cut = time_cut(timestamps, validation_share)
  past = timestamps < cut
  seen = _seen_rows(users[past], item_rows[past])
  empty = np.zeros([0], np.int64)
  later_seen = [seen.get(u, empty) for u in users[~past]]
  shares = {w: top_k_share(counts(item_rows, timestamps, n_items, cut, w),
                           item_rows[~past], later_seen, k) for w in windows}
  # Ties go to the longer window (a steadier list); None (all) is the longest.
  best = max(shares, key=lambda w: (shares[w], float('inf') if w is None else w))
  return best, shares


def recent_list_scores(users: np.ndarray, item_rows: np.ndarray, timestamps: np.ndarray,
                       n_items: int, k: int = 100) -> Tuple[np.ndarray, Dict[str, object]]:
  """Per-item scores of the recent-popularity list at the end of the training rows.

  The window is chosen on a validation cut inside them (choose_window); the counts are taken
  over that window before the last training time. Returns (scores, a description with the
  window and the validation shares).
  """
  window, shares = choose_window(users, item_rows, timestamps, n_items, k)
  until = int(np.max(timestamps)) + 1
  return counts(item_rows, timestamps, n_items, until, window), {
      'window_days': window, 'until': until,
      'validation': {('all' if w is None else str(w)): v for w, v in shares.items()}}
