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
  """The first timestamp of the latest ``eval_share`` of the rows: the timestamp of row
  ``int(n * (1 - eval_share))`` of the rows sorted by time.

  Rows at or after it are the latest ones (ties at the cut go with them), rows before it the
  past: the rule of the ingestion's time split (transforms.ingestion.TimeCut).
  """
  ordered = np.sort(np.asarray(timestamps, dtype=np.int64))
  if not len(ordered):
    raise ValueError('no timestamps to cut')
  return int(ordered[min(len(ordered) - 1, int(len(ordered) * (1.0 - eval_share)))])


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
  lengths = np.fromiter((len(rows) for rows in seen), dtype=np.int64, count=len(seen))
  rows = np.arange(len(seen), dtype=np.int64)
  items = (np.concatenate([np.asarray(r, dtype=np.int64) for r in seen]) if lengths.sum()
           else np.zeros([0], np.int64))
  return ranks_unseen_of_users(scores, target, rows, np.repeat(rows, lengths), items)


def ranks_unseen_of_users(scores: np.ndarray, target: np.ndarray, row_user: np.ndarray,
                          seen_user: np.ndarray, seen_item: np.ndarray) -> np.ndarray:
  """ranks_unseen with the earlier items given once per user rather than once per row:
  ``row_user`` is each eval row's user and (``seen_user``, ``seen_item``) the pairs met
  before, users as integer codes. Rows of one user share one sorted run of that user's
  items, so a user with many rows and a long history costs its history once, not per row.
  """
  scores = np.asarray(scores, dtype=np.float64)
  target = np.asarray(target, dtype=np.int64)
  row_user = np.asarray(row_user, dtype=np.int64)
  n = len(scores)
  # level[i]: how many items score below item i; "scores at least the target" is
  # level >= the target's level, ties included.
  level = np.searchsorted(np.sort(scores), scores, side='left')
  ranks = n - level[target] - 1  # items scoring >= the target, the target left out
  pairs = np.unique(np.asarray(seen_user, np.int64) * n + np.asarray(seen_item, np.int64))
  keys = np.sort(pairs // n * (n + 1) + level[pairs % n])
  ahead = (np.searchsorted(keys, (row_user + 1) * (n + 1), side='left')
           - np.searchsorted(keys, row_user * (n + 1) + level[target], side='left'))
  # The target among the user's earlier items counted itself.
  if len(pairs):
    own = row_user * n + target
    found = np.minimum(np.searchsorted(pairs, own), len(pairs) - 1)
    ranks = ranks + (pairs[found] == own)
  return ranks - ahead


def top_k_share(scores: np.ndarray, target: np.ndarray, seen: Sequence[np.ndarray],
                k: int) -> float:
  if not len(target):
    return 0.0
  return float(np.mean(ranks_unseen(scores, target, seen) < k))


def choose_window(users: np.ndarray, item_rows: np.ndarray, timestamps: np.ndarray,
                  n_items: int, k: int = 100, validation_share: float = 0.2,
                  windows: Iterable[Optional[int]] = WINDOWS_DAYS
                  ) -> Tuple[Optional[int], Dict[Optional[int], float]]:
  """The window whose list best predicts the latest training rows from the ones before.

  Returns (window in days or None for all, {window: top-k share on the validation rows}).
  """
  item_rows = np.asarray(item_rows, dtype=np.int64)
  timestamps = np.asarray(timestamps, dtype=np.int64)
  _, user = np.unique(np.asarray(users), return_inverse=True)
  cut = time_cut(timestamps, validation_share)
  past = timestamps < cut
  later = ~past
  shares = {}
  for w in windows:
    ranks = ranks_unseen_of_users(counts(item_rows, timestamps, n_items, cut, w),
                                  item_rows[later], user[later], user[past], item_rows[past])
    shares[w] = float(np.mean(ranks < k)) if later.any() else 0.0
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
