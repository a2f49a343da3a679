"""User segments: k-means over the served user embeddings, and what each segment likes.

Segments come from the model's own ``embed_users`` signature, so they group users by what the
model predicts they engage with, not by hand-drawn rules. Each segment is described from the
train interactions (item feature values and items over-represented in it) and the users
table (typical user feature values), so a person can name it.

Library code of the UserSegmenter (components/segmentation/executor.py, which only reads its
artifacts, calls this and writes its outputs): these functions know nothing of TFX, and
choose_k, cluster, lift, profile, describe_segments and publish are tested on arrays.
"""
import csv
import io
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
from scipy import sparse
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score

from core import features as F
from core import publish as publisher
from core.artifacts import embed
from models import data

SEGMENTS_CSV = 'segments.csv'
SEGMENTS_JSON = 'segments.json'
K_RANGE = (2, 12)
SILHOUETTE_SAMPLE = 5000
# Values seen in fewer rows of a segment are not reported: their lift is noise.
MIN_COUNT = 5
TOP = 10


# --- clustering ---------------------------------------------------------------------------

def _kmeans(x: np.ndarray, k: int, seed: int):
  return KMeans(n_clusters=k, n_init=10, random_state=seed).fit(x)


def choose_k(embeddings: np.ndarray, seed: int = 0, k_range: Tuple[int, int] = K_RANGE,
             sample: int = SILHOUETTE_SAMPLE) -> Tuple[int, Dict[int, float]]:
  """K with the highest mean silhouette (Euclidean, on at most ``sample`` users).

  The embeddings are L2-normalised, so Euclidean distance ranks pairs like cosine distance
  does. Ties go to the smaller K (fewer segments are easier to act on).
  Returns (K, {k: silhouette}).
  """
  n = len(embeddings)
  if n < 3:
    return 1, {}
  rng = np.random.default_rng(seed)
  x = embeddings if n <= sample else embeddings[rng.choice(n, sample, replace=False)]
  scores: Dict[int, float] = {}
  for k in range(k_range[0], min(k_range[1], len(x) - 1) + 1):
    labels = _kmeans(x, k, seed).labels_
    if len(set(labels.tolist())) < 2:
      continue
    scores[k] = float(silhouette_score(x, labels))
  if not scores:
    return 1, {}
  best = max(scores.values())
  return min(k for k, s in scores.items() if s == best), scores


def cluster(embeddings: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
  """Segment per row, numbered by size (0 = largest) so that reruns read alike."""
  k = max(1, min(k, len(embeddings)))
  if k == 1:
    return np.zeros(len(embeddings), dtype=np.int64)
  labels = _kmeans(embeddings, k, seed).labels_
  sizes = np.bincount(labels, minlength=k)
  order = np.argsort(-sizes, kind='stable')
  rank = np.empty(k, dtype=np.int64)
  rank[order] = np.arange(k)
  return rank[labels]


# --- describing segments ------------------------------------------------------------------

def lift(counts: np.ndarray, totals: np.ndarray, values: Sequence[str],
         min_count: int = MIN_COUNT, top: int = TOP) -> List[List[Dict[str, Any]]]:
  """Per group, the values over-represented in it, by lift then count.

  ``counts[g, v]`` rows of group g having value v, ``totals[g]`` rows of group g (a row may
  have several values, so counts need not sum to totals). lift = P(v | g) / P(v), where
  P(v) is over all rows. Values with lift <= 1 or fewer than ``min_count`` rows are left out.
  """
  counts = np.asarray(counts, dtype=np.float64)
  totals = np.asarray(totals, dtype=np.float64)
  overall = counts.sum(axis=0) / max(totals.sum(), 1.0)
  out = []
  for g in range(counts.shape[0]):
    share = counts[g] / max(totals[g], 1.0)
    with np.errstate(divide='ignore', invalid='ignore'):
      ratio = np.where(overall > 0, share / overall, 0.0)
    keep = np.flatnonzero((counts[g] >= min_count) & (ratio > 1.0))
    keep = keep[np.lexsort((-counts[g][keep], -ratio[keep]))][:top]
    out.append([{'value': str(values[v]), 'count': int(counts[g, v]),
                 'share': round(float(share[v]), 4), 'overall_share': round(float(overall[v]), 4),
                 'lift': round(float(ratio[v]), 3)} for v in keep])
  return out


def is_numeric(column: np.ndarray) -> bool:
  """A column read by models.data.read_table is numeric when no present value is text."""
  present = [v for v in column if v is not None]
  return bool(present) and not any(isinstance(v, (str, bytes)) for v in present)


def membership(column: np.ndarray, separator: str = F.MULTI_VALUE_SEPARATOR):
  """(rows x values) 0/1 sparse matrix of a text column with multi-values, and the values."""
  index: Dict[str, int] = {}
  rows, cols = [], []
  for r, v in enumerate(column):
    if v is None:
      continue
    for token in sorted({t.strip() for t in str(v).split(separator)} - {''}):
      rows.append(r)
      cols.append(index.setdefault(token, len(index)))
  m = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(column), len(index)))
  return m, list(index)


def profile(weights, table: Dict[str, np.ndarray], keys: Iterable[str],
            min_count: int = MIN_COUNT, top: int = TOP) -> List[Dict[str, Any]]:
  """Per group, each feature of ``table`` described for the rows the group weighs.

  ``weights`` is a (groups x table rows) matrix: how often each group meets each row (the
  segment's interactions with an item, or 1 for a user in the segment). Text features get
  their over-represented values (``lift``); numeric ones the group mean against the overall
  mean, both weighted.
  """
  weights = sparse.csr_matrix(weights, dtype=np.float64)
  groups = weights.shape[0]
  out: List[Dict[str, Any]] = [{} for _ in range(groups)]
  for key in keys:
    column = table[key]
    if is_numeric(column):
      present = np.array([v is not None for v in column], dtype=np.float64)
      x = np.array([v if v is not None else 0.0 for v in column], dtype=np.float64)
      n, s = weights @ present, weights @ x
      overall = s.sum() / n.sum() if n.sum() else None
      for g in range(groups):
        out[g][key] = {'mean': round(float(s[g] / n[g]), 4) if n[g] else None,
                       'overall_mean': round(float(overall), 4) if overall is not None else None}
    else:
      m, values = membership(column)
      counts = (weights @ m).toarray() if m.shape[1] else np.zeros((groups, 0))
      for g, rows in enumerate(lift(counts, np.asarray(weights.sum(axis=1)).ravel(), values,
                                    min_count, top)):
        out[g][key] = rows
  return out


def describe_segments(user_ids: np.ndarray, labels: np.ndarray,
                      users: Dict[str, np.ndarray], items: Dict[str, np.ndarray],
                      train_users: np.ndarray, train_items: np.ndarray,
                      min_count: int = MIN_COUNT, top: int = TOP) -> List[Dict[str, Any]]:
  """Per segment: size, share, item features, top items and typical user features.

  ``users``/``items`` are read_table outputs of the users and items splits (id key plus
  ``user__*`` / ``item__*`` keys); interactions of users or items outside them are ignored.
  """
  k = int(labels.max()) + 1 if len(labels) else 0
  n = len(user_ids)
  segment_of = dict(zip(map(str, user_ids), labels.tolist()))
  item_ids = np.asarray(items[F.ITEM_ID]).astype(str)
  item_row = {i: r for r, i in enumerate(item_ids)}
  seg = np.array([segment_of.get(u, -1) for u in train_users.astype(str)], dtype=np.int64)
  row = np.array([item_row.get(i, -1) for i in train_items.astype(str)], dtype=np.int64)
  ok = (seg >= 0) & (row >= 0)
  # Segment x item interaction counts: everything below is read off this matrix.
  hits = sparse.csr_matrix((np.ones(int(ok.sum())), (seg[ok], row[ok])),
                           shape=(k, len(item_ids)))
  per_segment = np.asarray(hits.sum(axis=1)).ravel()
  item_keys = [key for key in F.feature_keys(items, F.ITEM_PREFIX) if not key.endswith('?')]
  item_profile = profile(hits, items, item_keys, min_count, top)
  dense_hits = hits.toarray()
  item_lift = lift(dense_hits, per_segment, item_ids, min_count, top)
  members = sparse.csr_matrix((np.ones(n), (labels, np.arange(n))), shape=(k, n))
  user_keys = [key for key in F.feature_keys(users, F.USER_PREFIX) if not key.endswith('?')]
  user_profile = profile(members, users, user_keys, min_count, top)
  out = []
  for g in range(k):
    size = int((labels == g).sum())
    by_count = [i for i in np.argsort(-dense_hits[g], kind='stable')[:top] if dense_hits[g, i] > 0]
    out.append({
        'segment': g,
        'size': size,
        'share': round(size / max(n, 1), 4),
        'train_interactions': int(per_segment[g]),
        'item_features': item_profile[g],
        'top_items_by_count': [{'item_id': str(item_ids[i]), 'count': int(dense_hits[g, i])}
                               for i in by_count],
        'top_items_by_lift': [{'item_id': r['value'], 'count': r['count'], 'lift': r['lift']}
                              for r in item_lift[g]],
        'user_features': user_profile[g],
    })
  return out


# --- writing and publishing ---------------------------------------------------------------

def segments_csv(user_ids: Sequence[str], labels: Sequence[int]) -> str:
  buffer = io.StringIO()
  writer = csv.writer(buffer, lineterminator='\n')
  writer.writerow([F.USER_ID, 'segment'])
  writer.writerows(zip(user_ids, (int(s) for s in labels)))
  return buffer.getvalue()


def publish(push_dir: str, files: Dict[str, str], now: Optional[float] = None) -> str:
  """Writes ``files`` into push_dir/<version>/ so that no reader sees a partial version.

  The models' publisher (core/publish.py), through tf.io.gfile, so push_dir may be local
  or gs://: on a local disk the files go to a hidden folder renamed
  into place (atomic); on an object store they are copied into the version folder with
  segments.json last. version = int(time), raised above any existing version so the newest
  publication is always the highest number, even with clock skew. Returns the version dir.
  """
  return publisher.publish_files(files, push_dir, last=(SEGMENTS_JSON,), now=now)


# --- reading the model and the splits -----------------------------------------------------

def example_keys(patterns: List[str], max_records: int = 10_000) -> List[str]:
  """Feature keys of a split, from its first records (empty CSV values are dropped, so one
  record may miss a column)."""
  paths = [p for pattern in patterns for p in tf.io.gfile.glob(pattern)]
  keys = set()
  ds = tf.data.TFRecordDataset(paths, compression_type='GZIP').take(max_records)
  for record in ds.as_numpy_iterator():
    keys.update(tf.train.Example.FromString(record).features.feature.keys())
  return sorted(keys)


def read_side(patterns: List[str], id_key: str, prefix: str) -> Dict[str, np.ndarray]:
  """models.data.read_table of the users or items split: the id and every ``prefix``
  feature found in the split's first records."""
  return data.read_table(patterns, [id_key] + F.feature_keys(example_keys(patterns), prefix))


def embed_users(model, user_ids: np.ndarray) -> np.ndarray:
  """The user embeddings of a loaded retrieval export, without its prior columns.

  The export's prior columns (cold start, recency) are large for users the id vocabulary
  does not know: segments group users by their towers only.
  """
  return embed(model.signatures['embed_users'], user_ids)[:, :-F.RETRIEVAL_PRIOR_COLUMNS]


def _names(display, item_ids: List[str]) -> Dict[str, str]:
  if not item_ids or display is None:
    return {}
  texts = display(item_id=tf.constant(item_ids))['text'].numpy()
  return {i: t.decode() for i, t in zip(item_ids, texts)}


def name_items(segments: List[Dict[str, Any]], display) -> None:
  """Adds 'text' (the model's ``display`` signature, if any) to each top item of
  ``segments`` whose text is not its id."""
  names = _names(display, sorted({r['item_id'] for s in segments
                                  for key in ('top_items_by_count', 'top_items_by_lift')
                                  for r in s[key]}))
  for s in segments:
    for key in ('top_items_by_count', 'top_items_by_lift'):
      for r in s[key]:
        if names.get(r['item_id'], r['item_id']) != r['item_id']:
          r['text'] = names[r['item_id']]
