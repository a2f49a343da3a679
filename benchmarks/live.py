"""The live reading of the temporal split: each eval interaction predicted from everything the
user did strictly before it, the eval period included.

The offline reading (benchmarks/temporal.py) predicts every eval row from train alone, so a
user who arrived during the eval period stays cold for all their clicks. A live feed knows
what the user did a minute ago: the serving signatures take it as a request-time history
(the retrieval model's ``embed_users_with_history``, the feed's ``recommend_with_history``).
Here every eval row is scored as such a request would be, with the models trained on train
only: the history sent is the user's latest items, most recent first, and the items in it
are removed from the ranking (the feed leaves them out). Rows are grouped into returning
users (with train interactions), new users with an earlier click, and new users' first
clicks (no history: what the offline reading already measures).
"""
from typing import Callable, Dict, List, NamedTuple, Sequence

import numpy as np
import pandas as pd

from benchmarks import baselines
from core.retrieval_metrics import top_k_rates

GROUPS = ('returning', 'new, earlier click', 'new, first click')
KS = (10, 100)
# The most recent items sent with each request (the model reads its own history_length).
SENT = 50
BATCH = 1000


class LiveRows(NamedTuple):
  users: np.ndarray           # each eval row's user id
  target: np.ndarray          # each eval row's item column
  history: List[np.ndarray]   # the user's item columns strictly before the row, oldest first
  group: np.ndarray           # index into GROUPS


def live_rows(train: pd.DataFrame, eval_: pd.DataFrame, item_index: Dict[str, int]
              ) -> LiveRows:
  """The eval rows in file order, each with what its user did before it (train and eval)."""
  both = pd.concat([train.assign(_eval=False), eval_.assign(_eval=True)], ignore_index=True)
  both['_t'] = both['timestamp'].astype(np.int64)
  both['_c'] = both['item_id'].astype(str).map(item_index)
  returning = set(train['user_id'].astype(str))
  rows = {}
  for user, g in both.groupby(both['user_id'].astype(str), sort=False):
    t, c = g['_t'].to_numpy(), g['_c'].to_numpy(np.int64)
    order = np.argsort(t, kind='stable')
    t, c = t[order], c[order]
    for j, position in zip(np.flatnonzero(g['_eval'].to_numpy()[order]),
                           g.index.to_numpy()[order][g['_eval'].to_numpy()[order]]):
      history = c[:np.searchsorted(t, t[j], side='left')]
      group = 0 if user in returning else (1 if len(history) else 2)
      rows[position] = (user, c[j], history, group)
  ordered = [rows[p] for p in sorted(rows)]
  return LiveRows(np.array([r[0] for r in ordered], dtype=object),
                  np.array([r[1] for r in ordered], np.int64),
                  [r[2] for r in ordered], np.array([r[3] for r in ordered], np.int64))


def ranks(score_rows: Callable[[slice], np.ndarray], lr: LiveRows) -> np.ndarray:
  """Pessimistic ranks of each row's item, the row's history removed."""
  out = []
  for start in range(0, len(lr.target), BATCH):
    rows = slice(start, min(start + BATCH, len(lr.target)))
    scores = score_rows(rows)
    excluded = np.zeros(scores.shape, bool)
    for i, history in enumerate(lr.history[rows]):
      excluded[i, history] = True
    out.append(baselines.rank_of_target(scores, lr.target[rows], excluded))
  return np.concatenate(out) if out else np.zeros(0, np.int64)


def breakdown(rank: np.ndarray, lr: LiveRows) -> Dict[str, float]:
  """top_k of each group: keys 'top_K GROUP'."""
  out = {}
  for g, name in enumerate(GROUPS):
    rates = top_k_rates(rank[lr.group == g], KS)
    out.update({f'{k} {name}': v for k, v in rates.items()})
  return out


def list_scores(scores: np.ndarray) -> Callable[[slice], np.ndarray]:
  """One list shared by every row (a popularity list)."""
  return lambda rows: np.broadcast_to(scores, (rows.stop - rows.start, len(scores))).copy()


def ease_scores(b: np.ndarray, lr: LiveRows) -> Callable[[slice], np.ndarray]:
  """EASE over the request's history: the binary history row times B."""
  def score(rows):
    x = np.zeros((rows.stop - rows.start, b.shape[0]))
    for i, history in enumerate(lr.history[rows]):
      x[i, history] = 1.0
    return x @ b
  return score


def requests(lr: LiveRows, rows: slice, catalogue: np.ndarray, sent: int = SENT) -> np.ndarray:
  """The history_item_ids a client sends: the latest ``sent`` items, most recent first,
  padded with ''."""
  out = np.full((rows.stop - rows.start, sent), '', dtype=object)
  for i, history in enumerate(lr.history[rows]):
    latest = catalogue[history[::-1][:sent]]
    out[i, :len(latest)] = latest
  return out


def model_scores(model, lr: LiveRows, catalogue: np.ndarray, with_history: bool = True
                 ) -> Callable[[slice], np.ndarray]:
  """A retrieval export's scores as served: ``embed_users_with_history`` (or, without
  history, ``embed_users``) against ``embed_items`` over the catalogue."""
  import tensorflow as tf
  from core.artifacts import embed
  items = embed(model.signatures['embed_items'], catalogue).astype(np.float64)

  def score(rows):
    users = tf.constant(lr.users[rows].astype(str))
    if with_history:
      found = model.signatures['embed_users_with_history'](
          user_id=users, history_item_ids=tf.constant(requests(lr, rows, catalogue).astype(str)))
    else:
      found = model.signatures['embed_users'](user_id=users)
    return found['embeddings'].numpy().astype(np.float64) @ items.T
  return score


def sizes(lr: LiveRows) -> Dict[str, int]:
  return {name: int((lr.group == g).sum()) for g, name in enumerate(GROUPS)}


def table(rows: Dict[str, Dict], labels: Dict[str, str]) -> str:
  columns = [f'top_{k} {g}' for k in KS for g in GROUPS]
  lines = ['| model | ' + ' | '.join(columns) + ' |', '|' + ' --- |' * (len(columns) + 1)]
  for key, metrics in rows.items():
    name = labels[key] + (f" ({metrics['chosen']})" if metrics.get('chosen') else '')
    lines.append(f'| {name} | ' + ' | '.join(
        '' if metrics.get(c) is None else f'{metrics[c]:.4f}' for c in columns) + ' |')
  return '\n'.join(lines)


def ratio_targets(rows: Dict[str, Dict], bars: Sequence[tuple]) -> List[tuple]:
  """(what was compared, met?) for each (group, factor): the model's top_100 against factor
  x the list's; met is None when a row is missing."""
  out = []
  for group, factor in bars:
    key = f'top_100 {group}'
    model, base = (rows.get('model') or {}).get(key), (rows.get('list') or {}).get(key)
    if model is None or base is None:
      out.append((f'{group}: no row', None))
      continue
    out.append((f'{group}: top_100 {model:.4f} vs {factor:g} × the list\'s {base:.4f} = '
                f'{factor * base:.4f}', bool(model >= factor * base)))
  return out
