"""The feed model: one SavedModel answering "what should this user see next?".

``recommend(user_id)`` -> ``item_ids`` [batch, k] (tf.string), ``scores`` [batch, k]
(float32), ``source`` [batch] (tf.string: SOURCES):

1. The user is embedded by the retrieval model's ``embed_users`` (from the id, or from the
   users-split features for a user with no training interaction).
2. A BruteForce (or ScaNN) index over the whole catalogue, embedded with ``embed_items`` at
   build time, returns the best ``candidates + margin`` items, where margin is the largest
   number of items any user has (capped at ``margin_cap`` and at the catalogue size).
3. The items the user has are removed (never returned), the first ``candidates`` remaining
   ones are scored with the ranking model's ``rank`` signature, and the best ``k`` are
   returned, best first. With ``order_by='engagement'`` (the default) the score is the
   ranking model's engagement logit plus ``retrieval_weight`` times the retrieval score (the
   dot product of the user's and the item's retrieval embeddings): a logit-scale "will the
   user engage" score, higher is better, not a probability and not a rating. With
   ``order_by='rating'`` the score is the predicted rating. The rating is the wrong order
   for a feed: it says how much u would like i after watching it, not whether u would watch
   it, and re-ranking by it undoes most of what retrieval found.
4. A user unknown everywhere (neither in the users split nor among the users with items)
   gets the ``k`` most popular train items instead; their scores are popularity shares (the
   item's share of the train interactions), not ranking scores.

What "the items the user has" means is the build's choice (``build_feed``'s ``exclude``): the
candidate, which the offline metrics score on eval, leaves out the train split; the feed that
is pushed leaves out everything known when it is pushed (every split, and what the feed
pushed before left out, so that earlier spans stay out). ``recommend_excluding(user_id,
exclude_item_ids)`` also leaves out items named in the request (seen or dismissed since the
push). ``recommend_with_history(user_id, history_item_ids)`` takes the user's latest items
(most recent first) as both: they move the query (the retrieval model's
``embed_users_with_history``), so the feed follows what a user does without retraining and a
user unknown at the push is served from their first click, and they are left out. These are
extra signatures rather than optional inputs because TF Serving's Predict API requires a
request to give every input of the signature it calls. ``serving_default`` is ``recommend``.

If a row has fewer than ``k`` unseen candidates within the searched window (only when a
user has more than ``margin_cap`` items, or nearly the whole catalogue), the list ends with
'' ids scored -inf.

The two input SavedModels are loaded with ``tf.saved_model.load`` and their signatures are
called from a new ``tf.Module``. Only the variables, tables and assets those signatures
capture are tracked (``tracked_dependencies``), so the retrieval model's own indexes (and
their ScaNN ops, if any) stay out; the Transform vocabularies are copied into the new
assets/ folder by the saver. The export also gets TF Serving warm-up requests for each
signature.
"""
import dataclasses
import math
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
from absl import logging
from tfx import types
from tfx.types import artifact_utils
from tfx.utils import io_utils

from core import features as F
from core import publish
from core.artifacts import embed
from core.configs import FeedConfig
from models import data, warmup
from models.index import KINDS as index_kinds, make_index

FEED_DEFAULTS = FeedConfig()

SIGNATURE = 'recommend'
EXCLUDING_SIGNATURE = 'recommend_excluding'
HISTORY_SIGNATURE = 'recommend_with_history'
# The retrieval model's query from a user and their latest items (models/retrieval.py).
RETRIEVAL_HISTORY_SIGNATURE = 'embed_users_with_history'
# Where a user's list comes from (the ``source`` output): the model from the user's own
# interactions, the model from the user's features alone, the popularity fallback, or (a
# user unknown at the push, with known items in the request's history) the model from that
# history.
SOURCES = ('model', 'features', 'popularity', 'history')
METRICS_FILE = 'feed_metrics.json'
INDEXES = index_kinds
PADDING_ID = ''
UNKNOWN_USER_SCORES = 'popularity_share'
ORDERS = ('engagement', 'rating')
# The rank signature's outputs each order reads (models/ranking.py).
ORDER_OUTPUTS = {'engagement': 'engagement_logit', 'rating': 'rating'}
METRIC_CUTOFF = 10


# --- Pure functions --------------------------------------------------------------------------

def search_window(candidates: int, max_seen: int, num_items: int,
                  margin_cap: int = 1000) -> Tuple[int, int, int]:
  """(candidates, margin, search_k), each capped by the catalogue size."""
  if num_items < 1:
    raise ValueError('the catalogue is empty')
  candidates = max(1, min(int(candidates), num_items))
  margin = max(0, min(int(max_seen), int(margin_cap), num_items))
  return candidates, margin, min(candidates + margin, num_items)


def id_strings(values) -> np.ndarray:
  """``values`` as a str array, not copied when it is one already (ids are compared as str)."""
  values = np.asarray(values)
  return values if values.dtype.kind == 'U' else values.astype(str)


def unique_ids(*parts) -> np.ndarray:
  """The sorted distinct ids of all ``parts``; each part is reduced first, so that no sorted
  copy of all of them together is made."""
  return np.unique(np.concatenate([np.unique(id_strings(part)) for part in parts]))


def positions_in(values, ids, chunk: int = 1 << 20) -> np.ndarray:
  """int64: the index of each of ``values`` in ``ids`` (distinct), -1 where it is not there.

  A binary search over the sorted ids rather than a dict of them: a dict of a million ids
  and the Python objects for every value take far more memory than the arrays. Chunks bound
  the temporary copies of the looked-up ids.
  """
  values, ids = id_strings(values), id_strings(ids)
  found = np.full(len(values), -1, np.int64)
  if not len(ids):
    return found
  order = np.argsort(ids, kind='stable')
  ordered = ids[order]
  for start in range(0, len(values), chunk):
    part = values[start:start + chunk]
    at = np.minimum(np.searchsorted(ordered, part), len(ids) - 1)
    found[start:start + chunk] = np.where(ordered[at] == part, order[at], -1)
  return found


def seen_pairs(train_users: np.ndarray, train_items: np.ndarray, user_rows, item_positions
               ) -> Tuple[np.ndarray, int]:
  """Sorted unique keys ``user_row * num_items + item_position`` of the train interactions
  (items outside the catalogue dropped), and the most items any user has seen.

  ``user_rows`` and ``item_positions``: the arrays of ids in index order (the known users,
  the catalogue).
  """
  num_items = len(item_positions)
  rows = positions_in(train_users, user_rows)
  positions = positions_in(train_items, item_positions)
  known = (rows >= 0) & (positions >= 0)
  keys = np.unique(rows[known] * num_items + positions[known])
  max_seen = int(np.bincount(keys // num_items).max()) if len(keys) else 0
  return keys, max_seen


def popular_items(train_items: np.ndarray, catalogue: np.ndarray,
                  k: int) -> Tuple[np.ndarray, np.ndarray]:
  """The ``k`` most frequent train items of the catalogue (ties: catalogue order) and their
  shares of the train interactions; padded with other catalogue items (share 0)."""
  positions = positions_in(train_items, catalogue)
  counts = np.bincount(positions[positions >= 0], minlength=len(catalogue)).astype(np.int64)
  order = np.lexsort((np.arange(len(catalogue)), -counts))[:k]
  total = max(1, len(train_items))
  return catalogue[order], (counts[order] / total).astype(np.float32)


def seen_mask(user_rows: tf.Tensor, positions: tf.Tensor, seen_keys: tf.Tensor,
              num_items: int) -> tf.Tensor:
  """[batch, n] bool: whether ``positions[b, j]`` is a train item of user row ``user_rows[b]``.

  ``seen_keys`` is the sorted int64 output of ``seen_pairs`` (non-empty: pad it with a key
  larger than any pair); rows < 0 (no train interaction) and positions < 0 see nothing.
  """
  rows = tf.cast(user_rows, tf.int64)[:, tf.newaxis]
  positions = tf.cast(positions, tf.int64)
  query = rows * num_items + positions
  flat = tf.reshape(query, [1, -1])
  found = tf.searchsorted(seen_keys[tf.newaxis, :], flat, side='left', out_type=tf.int64)
  found = tf.minimum(found, tf.size(seen_keys, out_type=tf.int64) - 1)
  hit = tf.reshape(tf.equal(tf.gather(seen_keys, found[0]), flat[0]), tf.shape(query))
  return hit & (rows >= 0) & (positions >= 0)


def unseen_columns(excluded: tf.Tensor, n: int) -> Tuple[tf.Tensor, tf.Tensor]:
  """The columns of the first ``n`` entries per row that are not excluded, in order, and a
  validity mask (False where a row had fewer than ``n`` such entries)."""
  order = tf.cast(tf.range(tf.shape(excluded)[1]), tf.float32)
  key = tf.where(excluded, tf.constant(-np.inf, tf.float32), -order[tf.newaxis, :])
  values, columns = tf.math.top_k(key, k=n)
  return columns, tf.math.is_finite(values)


def first_unseen(positions: tf.Tensor, excluded: tf.Tensor,
                 n: int) -> Tuple[tf.Tensor, tf.Tensor]:
  """The first ``n`` entries per row that are not excluded, in order, and a validity mask."""
  columns, valid = unseen_columns(excluded, n)
  return tf.gather(positions, columns, batch_dims=1), valid


def hit_rate(feeds: Mapping[str, Sequence[str]], eval_users: Sequence[str],
             eval_items: Sequence[str], cutoff: int = METRIC_CUTOFF) -> float:
  """Share of eval interactions (u, i) with i in the first ``cutoff`` items of u's feed."""
  if not len(eval_users):
    return 0.0
  tops = {u: set(list(feed)[:cutoff]) for u, feed in feeds.items()}
  hits = sum(1 for u, i in zip(eval_users, eval_items) if i in tops.get(u, ()))
  return hits / len(eval_users)


def ndcg(feeds: Mapping[str, Sequence[str]], eval_users: Sequence[str],
         eval_items: Sequence[str], gains: Sequence[float],
         cutoff: int = METRIC_CUTOFF) -> float:
  """Mean over eval users of DCG@cutoff / ideal DCG@cutoff, the eval rating being the gain.

  DCG = sum over feed positions p = 1.. of gain(item) / log2(p + 1) (0 for items not in the
  user's eval set; an item repeated in the feed counts once). The ideal DCG sorts the user's
  eval items by gain (the highest gain of an item rated twice), capped at ``cutoff``. Users
  whose eval gains are all <= 0 are left out; users without a feed count as 0.
  """
  relevance: Dict[str, Dict[str, float]] = {}
  for u, i, g in zip(eval_users, eval_items, gains):
    user = relevance.setdefault(u, {})
    user[i] = max(float(g), user.get(i, -math.inf))
  scores = []
  for u, rel in relevance.items():
    ideal = sorted(rel.values(), reverse=True)[:cutoff]
    idcg = sum(g / math.log2(p + 2) for p, g in enumerate(ideal) if g > 0)
    if idcg <= 0:
      continue
    dcg, counted = 0.0, set()
    for p, item in enumerate(list(feeds.get(u, ()))[:cutoff]):
      if item in rel and item not in counted:
        counted.add(item)
        dcg += rel[item] / math.log2(p + 2)
    scores.append(dcg / idcg)
  return float(np.mean(scores)) if scores else 0.0


# --- Composing the loaded models -------------------------------------------------------------

def _descendants(root) -> List[Any]:
  # pylint: disable=g-direct-tensorflow-import,protected-access
  # No public API lists a loaded object's children for SavedModel export.
  from tensorflow.python.trackable import base as trackable_base
  found, seen, queue = [], set(), [root]
  while queue:
    obj = queue.pop()
    if id(obj) in seen or not isinstance(obj, trackable_base.Trackable):
      continue
    seen.add(id(obj))
    found.append(obj)
    try:
      children = obj._trackable_children(save_type=trackable_base.SaveType.SAVEDMODEL)
    except Exception:  # pylint: disable=broad-except; a leaf that cannot list children
      children = {}
    queue.extend(children.values())
  return found


def tracked_dependencies(root, functions: Sequence[Any]) -> List[Any]:
  """What a new module must track to re-save ``functions`` of the loaded SavedModel ``root``.

  Re-saving requires every resource a function captures (variables, hash tables,
  Transform's vocabulary tables) to be reachable from the new root; the assets are tracked
  too, for the tables' initialisers. Tracking only these instead of ``root`` keeps what the
  functions do not use (the retrieval model's candidate and audience indexes) out. Falls
  back to ``[root]`` when a captured resource cannot be attributed to an object.
  """
  objects = _descendants(root)
  by_tensor: Dict[int, Any] = {}
  for obj in objects:
    for attr in ('handle', 'resource_handle', 'asset_path'):
      try:
        value = getattr(obj, attr, None)
      except Exception:  # pylint: disable=broad-except; some properties raise when unset
        value = None
      if isinstance(value, tf.Tensor):
        by_tensor[id(value)] = obj
  keep: Dict[int, Any] = {}
  for function in functions:
    for captured in function.captured_inputs:
      owner = by_tensor.get(id(captured))
      if owner is not None:
        keep[id(owner)] = owner
      elif captured.dtype == tf.resource:
        logging.warning('A captured resource of %s has no owner; tracking the whole model',
                        getattr(function, 'name', function))
        return [root]
  for obj in objects:
    if isinstance(obj, tf.saved_model.Asset):
      keep[id(obj)] = obj
  return list(keep.values())


class _Untracked:
  """Holds callables without making them part of the saved object graph."""

  def __init__(self, **functions):
    self.__dict__.update(functions)


class FeedServing(tf.Module):
  """The feed SavedModel's root: retrieval, removal of what a user has, ranking, fallback."""

  def __init__(self, embed_users, rank, dependencies: Sequence[Any], catalogue: np.ndarray,
               item_embeddings: np.ndarray, known_users: np.ndarray, seen_keys: np.ndarray,
               popular_ids: np.ndarray, popular_scores: np.ndarray, k: int, candidates: int,
               search_k: int, index: str = 'brute_force', order_by: str = 'engagement',
               retrieval_weight: float = 0.0, trained_users: Optional[np.ndarray] = None,
               embed_history=None):
    super().__init__(name='feed')
    if index not in INDEXES:
      raise ValueError(f'unknown index {index!r}; expected one of {INDEXES}')
    num_items = len(catalogue)
    if not 1 <= k <= candidates <= search_k <= num_items:
      raise ValueError(f'need 1 <= k ({k}) <= candidates ({candidates}) <= search_k '
                       f'({search_k}) <= catalogue size ({num_items})')
    if not k <= len(popular_ids) == len(popular_scores):
      raise ValueError(f'{len(popular_ids)} popular items for k={k}')
    if order_by not in ORDERS:
      raise ValueError(f'unknown order_by {order_by!r}; expected one of {ORDERS}')
    self.score_key = ORDER_OUTPUTS[order_by]
    # The retrieval score only enters the engagement order (a logit scale).
    self.retrieval_weight = float(retrieval_weight) if order_by == 'engagement' else 0.0
    self._models = list(dependencies)
    # Without a history signature (an older retrieval export) the history only leaves items out.
    self._fns = _Untracked(embed_users=embed_users, rank=rank, embed_history=embed_history)
    self.k, self.candidates, self.search_k, self.num_items = k, candidates, search_k, num_items
    # ScaNN searches a fixed number of neighbours; BruteForce can search further when a
    # request leaves more items out.
    self.grow_search = index == 'brute_force'
    catalogue, known_users = id_strings(catalogue), id_strings(known_users)
    # One string tensor each serves the variable and the lookup table's keys.
    items = tf.constant(catalogue, tf.string)
    self.catalogue = tf.Variable(items, dtype=tf.string, trainable=False, name='catalogue')
    self.item_positions = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(items, tf.range(num_items, dtype=tf.int64)),
        default_value=-1)
    # The users and the pairs the feed leaves out are kept as variables so that the next
    # build can carry them forward (exclusion_pairs).
    users = tf.constant(known_users, tf.string)
    self.known_users = tf.Variable(users, dtype=tf.string, trainable=False, name='known_users')
    self.user_rows = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(users, tf.range(len(known_users), dtype=tf.int64)),
        default_value=-1)
    seen_keys = np.asarray(seen_keys, np.int64)
    # Users the models learned from their own interactions (the train split); the others
    # are served from their features (the ``source`` output).
    has_history = np.isin(known_users, id_strings(
        trained_users if trained_users is not None
        else known_users[np.unique(seen_keys // num_items)]))
    self.has_history = tf.Variable(has_history, trainable=False, name='has_history')
    self.seen_keys = tf.Variable(_padded(seen_keys), dtype=tf.int64, trainable=False,
                                 name='seen_keys')
    popular_positions = positions_in(popular_ids, catalogue)
    if np.any(popular_positions < 0):
      raise ValueError('a popular item is not in the catalogue')
    self.popular_positions = tf.Variable(popular_positions, trainable=False,
                                         name='popular_positions')
    self.popular_scores = tf.Variable(popular_scores.astype(np.float32), trainable=False,
                                      name='popular_scores')
    embeddings = tf.constant(item_embeddings, tf.float32)
    self.index = make_index(index, search_k, num_items)
    self.index.index(embeddings)  # identifiers: catalogue positions

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='user_id')])
  def recommend(self, user_id):
    """The best k items per user that the user does not have, best first (module docstring)."""
    return self._feed(user_id, None)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='user_id'),
                                tf.TensorSpec([None, None], tf.string, name='exclude_item_ids')])
  def recommend_excluding(self, user_id, exclude_item_ids):
    """``recommend``, also leaving out each user's ``exclude_item_ids`` (a row per user,
    padded with ''; unknown ids and repeats are ignored)."""
    return self._feed(user_id, exclude_item_ids)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='user_id'),
                                tf.TensorSpec([None, None], tf.string, name='history_item_ids')])
  def recommend_with_history(self, user_id, history_item_ids):
    """``recommend_excluding`` whose exclusions are also the user's latest items (a row per
    user, most recent first, padded with ''), which move the query (module docstring)."""
    return self._feed(user_id, history_item_ids, history=True)

  def _feed(self, user_id, exclude_item_ids, history: bool = False):
    batch = tf.shape(user_id)[0]
    batch_rows = tf.range(batch, dtype=tf.int64)
    search_k, request_keys = self.search_k, None
    popular_k = tf.minimum(tf.size(self.popular_positions, tf.int64), self.search_k)
    if exclude_item_ids is not None:
      request_keys, count = request_exclusions(self.item_positions.lookup(exclude_item_ids),
                                               self.num_items)
      popular_k = tf.minimum(tf.size(self.popular_positions, tf.int64), popular_k + count)
      if self.grow_search:
        search_k = tf.minimum(tf.cast(self.num_items, tf.int64), self.search_k + count)
    if history and self._fns.embed_history is not None:
      embeddings = self._fns.embed_history(user_id=user_id,
                                           history_item_ids=exclude_item_ids)['embeddings']
    else:
      embeddings = self._fns.embed_users(user_id=user_id)['embeddings']
    retrieval_scores, positions = self.index(embeddings, k=search_k)
    positions = tf.cast(positions, tf.int64)
    rows = self.user_rows.lookup(user_id)
    excluded = seen_mask(rows, positions, self.seen_keys, self.num_items) | (positions < 0)
    if request_keys is not None:
      excluded |= seen_mask(batch_rows, positions, request_keys, self.num_items)
    columns, valid = unseen_columns(excluded, self.candidates)
    candidates = tf.gather(positions, columns, batch_dims=1)
    candidate_ids = tf.gather(self.catalogue, tf.maximum(candidates, 0))
    ranked = self._fns.rank(user_id=tf.repeat(user_id, self.candidates),
                            item_id=tf.reshape(candidate_ids, [-1]))[self.score_key]
    ranked = tf.reshape(ranked, [batch, self.candidates])
    if self.retrieval_weight:
      ranked += self.retrieval_weight * tf.gather(retrieval_scores, columns, batch_dims=1)
    ranked = tf.where(valid, ranked, tf.constant(-np.inf, tf.float32))
    scores, columns = tf.math.top_k(ranked, k=self.k)
    item_ids = tf.gather(candidate_ids, columns, batch_dims=1)
    item_ids = tf.where(tf.math.is_finite(scores), item_ids, PADDING_ID)

    # A user unknown everywhere: the most popular items, less what the request leaves out.
    popular = tf.broadcast_to(self.popular_positions[tf.newaxis, :popular_k],
                              tf.stack([tf.cast(batch, tf.int64), popular_k]))
    left_out = tf.zeros_like(popular, tf.bool)
    if request_keys is not None:
      left_out = seen_mask(batch_rows, popular, request_keys, self.num_items)
    popular_columns, popular_valid = unseen_columns(left_out, self.k)
    popular_ids = tf.gather(self.catalogue, tf.gather(popular, popular_columns, batch_dims=1))
    popular_ids = tf.where(popular_valid, popular_ids, PADDING_ID)
    popular_scores = tf.where(popular_valid, tf.gather(self.popular_scores, popular_columns),
                              tf.constant(-np.inf, tf.float32))
    in_store = rows >= 0
    known = in_store
    if history and self._fns.embed_history is not None:
      known |= tf.reduce_any(self.item_positions.lookup(exclude_item_ids) >= 0, axis=1)
    trained = tf.gather(self.has_history, tf.maximum(rows, 0)) & in_store
    source = tf.where(trained, SOURCES[0], tf.where(
        in_store, SOURCES[1], tf.where(known, SOURCES[3], SOURCES[2])))
    return {'item_ids': tf.where(known[:, tf.newaxis], item_ids, popular_ids),
            'scores': tf.where(known[:, tf.newaxis], scores, popular_scores),
            'source': source}


def _padded(keys: np.ndarray) -> np.ndarray:
  """Sorted keys with a sentinel above any pair, so that a search never runs off the end."""
  return np.append(np.sort(np.asarray(keys, np.int64)), np.iinfo(np.int64).max)


def request_exclusions(positions: tf.Tensor, num_items: int) -> Tuple[tf.Tensor, tf.Tensor]:
  """Sorted keys ``batch_row * num_items + position`` of a request's [batch, n] catalogue
  positions (-1: unknown id or padding, dropped) with a sentinel, and the most any row
  leaves out (how much further the search must reach)."""
  positions = tf.cast(positions, tf.int64)
  rows = tf.range(tf.shape(positions, out_type=tf.int64)[0], dtype=tf.int64)[:, tf.newaxis]
  known = positions >= 0
  keys = tf.sort(tf.boolean_mask(rows * num_items + positions, known))
  sentinel = tf.constant([np.iinfo(np.int64).max], tf.int64)
  count = tf.reduce_max(tf.concat([tf.reduce_sum(tf.cast(known, tf.int64), axis=1),
                                   tf.zeros([1], tf.int64)], 0))
  return tf.concat([keys, sentinel], 0), count


@dataclasses.dataclass
class FeedData:
  """What the feed model is built and evaluated from (str arrays)."""
  catalogue: np.ndarray
  users: np.ndarray  # the users split
  train_users: np.ndarray
  train_items: np.ndarray
  eval_users: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros([0], str))
  eval_items: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros([0], str))
  eval_gains: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros([0], np.float32))

  @property
  def known_users(self) -> np.ndarray:
    return unique_ids(self.users, self.train_users)


def _signature(model, name: str, where: str):
  if name not in model.signatures:
    raise ValueError(f'the {where} model has no {name!r} signature '
                     f'(it has {sorted(model.signatures)})')
  return model.signatures[name]


def build_feed(retrieval, ranking, feed_data: FeedData, k: int = 10, candidates: int = 100,
               index: str = 'brute_force', margin_cap: int = 1000,
               order_by: str = FEED_DEFAULTS.order_by,
               retrieval_weight: float = FEED_DEFAULTS.retrieval_weight,
               exclude: Optional[Tuple[np.ndarray, np.ndarray]] = None,
               item_embeddings: Optional[np.ndarray] = None
               ) -> Tuple[FeedServing, Dict[str, Any]]:
  """The feed module from two loaded SavedModels; and what was chosen (sizes, margin).

  ``exclude``: the (users, items) pairs the feed never returns; by default the train split's
  (the candidate that the offline metrics score on eval). The pushed feed passes everything
  known when it is pushed (``served_exclusions``). ``item_embeddings``: the catalogue's
  retrieval embeddings, when the caller has them already (the executor builds two feeds from
  one retrieval model).
  """
  catalogue = id_strings(feed_data.catalogue)
  if len(np.unique(catalogue)) != len(catalogue):
    raise ValueError('the items split repeats item ids')
  embed_users = _signature(retrieval, 'embed_users', 'retrieval')
  embed_history = retrieval.signatures.get(RETRIEVAL_HISTORY_SIGNATURE)
  embed_items = _signature(retrieval, 'embed_items', 'retrieval')
  rank = _signature(ranking, 'rank', 'ranking')
  if order_by not in ORDERS:
    raise ValueError(f'unknown order_by {order_by!r}; expected one of {ORDERS}')
  if ORDER_OUTPUTS[order_by] not in rank.structured_outputs:
    raise ValueError(f'order_by={order_by!r} needs the ranking model\'s rank signature to '
                     f'return {ORDER_OUTPUTS[order_by]!r}; it returns '
                     f'{sorted(rank.structured_outputs)}')
  if exclude is None:
    exclude = (feed_data.train_users, feed_data.train_items)
  trained_users = unique_ids(feed_data.train_users)
  known = unique_ids(feed_data.users, trained_users, exclude[0])
  # A user's row is its index in the sorted known users, an item's its catalogue position.
  keys, max_seen = seen_pairs(exclude[0], exclude[1], known, catalogue)
  candidates, margin, search_k = search_window(candidates, max_seen, len(catalogue),
                                               margin_cap)
  k = max(1, min(int(k), candidates))
  # The whole catalogue by popularity, so that a request's own exclusions leave k of them.
  popular_ids, popular_scores = popular_items(feed_data.train_items, catalogue,
                                              len(catalogue))
  dependencies = (tracked_dependencies(retrieval, [f for f in (embed_users, embed_history) if f])
                  + tracked_dependencies(ranking, [rank]))
  module = FeedServing(embed_users, rank, dependencies, catalogue,
                       item_embeddings if item_embeddings is not None
                       else embed(embed_items, catalogue), known, keys, popular_ids,
                       popular_scores, k=k, candidates=candidates, search_k=search_k,
                       index=index, order_by=order_by, retrieval_weight=retrieval_weight,
                       trained_users=trained_users,
                       embed_history=embed_history)
  info = {'k': k, 'candidates': candidates, 'margin': margin, 'search_k': search_k,
          'max_seen': max_seen, 'catalogue_size': len(catalogue), 'known_users': len(known),
          'excluded_pairs': int(len(keys)), 'index': index, 'order_by': order_by,
          'retrieval_weight': module.retrieval_weight,
          'unknown_user_scores': UNKNOWN_USER_SCORES}
  return module, info


def exclusion_pairs(export_dir: str) -> Tuple[np.ndarray, np.ndarray]:
  """The (users, items) pairs an exported feed leaves out, read from its variables without
  loading the model (empty for a feed exported before it kept them)."""
  reader = tf.train.load_checkpoint(os.path.join(export_dir, 'variables', 'variables'))
  value = lambda name: reader.get_tensor(f'{name}/.ATTRIBUTES/VARIABLE_VALUE')
  if not all(reader.has_tensor(f'{name}/.ATTRIBUTES/VARIABLE_VALUE')
             for name in ('known_users', 'catalogue', 'seen_keys')):
    logging.warning('The feed model in %s keeps no exclusion pairs', export_dir)
    return np.zeros([0], str), np.zeros([0], str)
  users = value('known_users').astype(str)
  catalogue = value('catalogue').astype(str)
  keys = value('seen_keys')
  keys = keys[keys < np.iinfo(np.int64).max]
  return users[keys // len(catalogue)], catalogue[keys % len(catalogue)]


def served_exclusions(feed_data: FeedData, served_dir: Optional[str] = None
                      ) -> Tuple[Tuple[np.ndarray, np.ndarray], Dict[str, Any]]:
  """Everything known when the feed is pushed: every split of the run, and what the feed
  served now (the latest version under ``served_dir``) left out, so that earlier spans'
  interactions stay out too. Returns the pairs and where they came from."""
  users = [feed_data.train_users, feed_data.eval_users]
  items = [feed_data.train_items, feed_data.eval_items]
  previous = publish.latest_version(served_dir) if served_dir else None
  carried = 0
  if previous:
    old_users, old_items = exclusion_pairs(previous)
    users.append(old_users)
    items.append(old_items)
    carried = len(old_users)
  pairs = (np.concatenate([id_strings(part) for part in users]),
           np.concatenate([id_strings(part) for part in items]))
  return pairs, {'carried_from': previous, 'carried_pairs': int(carried)}


def warmup_users(feed_data: FeedData, n: int = 3) -> np.ndarray:
  """A few train users, a user known only from the users split, and an unknown id."""
  train = unique_ids(feed_data.train_users)
  new = np.setdiff1d(id_strings(feed_data.users), train)  # sorted
  unknown = '__warmup_unknown_user__'
  return np.array(train[:n].tolist() + new[:1].tolist() + [unknown], dtype=object)


def save_feed(module: FeedServing, export_dir: str, feed_data: FeedData,
              index: str = 'brute_force') -> None:
  """Saves the feed with its signatures and warm-up requests for each of them."""
  options = (tf.saved_model.SaveOptions(namespace_whitelist=['Scann'])
             if index == 'scann' else None)
  recommend = module.recommend.get_concrete_function()
  # serving_default: what a client that names no signature gets, the feed itself.
  tf.saved_model.save(module, export_dir, options=options, signatures={
      SIGNATURE: recommend, 'serving_default': recommend,
      EXCLUDING_SIGNATURE: module.recommend_excluding.get_concrete_function(),
      HISTORY_SIGNATURE: module.recommend_with_history.get_concrete_function()})
  users = warmup_users(feed_data)
  # Rows of different lengths, padded with '' as a client would send them.
  excluded = np.array([[item, ''] for item in feed_data.catalogue[:len(users)]]
                      + [['', '']] * max(0, len(users) - len(feed_data.catalogue)), dtype=object)
  warmup.write_warmup(export_dir, {
      SIGNATURE: {'user_id': users}, 'serving_default': {'user_id': users},
      EXCLUDING_SIGNATURE: {'user_id': users, 'exclude_item_ids': excluded[:len(users)]},
      HISTORY_SIGNATURE: {'user_id': users, 'history_item_ids': excluded[:len(users)]}})


def export_feed_model(retrieval_dir: str, ranking_dir: str, export_dir: str,
                      feed_data: FeedData, k: int = 10, candidates: int = 100,
                      index: str = 'brute_force', margin_cap: int = 1000,
                      order_by: str = FEED_DEFAULTS.order_by,
                      retrieval_weight: float = FEED_DEFAULTS.retrieval_weight,
                      exclude: Optional[Tuple[np.ndarray, np.ndarray]] = None
                      ) -> Dict[str, Any]:
  """Loads both SavedModels, saves the feed model to ``export_dir`` with warm-up requests
  (``exclude``: as in ``build_feed``)."""
  retrieval = tf.saved_model.load(retrieval_dir)
  ranking = tf.saved_model.load(ranking_dir)
  module, info = build_feed(retrieval, ranking, feed_data, k=k, candidates=candidates,
                            index=index, margin_cap=margin_cap, order_by=order_by,
                            retrieval_weight=retrieval_weight, exclude=exclude)
  save_feed(module, export_dir, feed_data, index)
  logging.info('Feed model exported to %s: %s', export_dir, info)
  return info


def recommend_all(model, users: np.ndarray, batch: int = 64) -> Dict[str, List[str]]:
  """user -> feed (item ids, best first, padding dropped) from a loaded feed model.

  Each call scores its users against the whole catalogue at once ([batch, catalogue]
  floats), so the batch bounds the memory. It stays a power of two: a row's offset within
  the matrix kernels' blocks can change the last bits of its scores, and with them a tie.
  """
  fn = model.signatures[SIGNATURE]
  feeds: Dict[str, List[str]] = {}
  for start in range(0, len(users), batch):
    chunk = users[start:start + batch]
    ids = fn(user_id=tf.constant(chunk.astype(str)))['item_ids'].numpy()
    for u, row in zip(chunk, ids):
      feeds[str(u)] = [i.decode() for i in row if i]
  return feeds


def evaluate_feed(export_dir: str, feed_data: FeedData, cutoff: int = METRIC_CUTOFF,
                  max_users: int = 0, seed: int = 42) -> Dict[str, Any]:
  """hit_rate_at_10 and ndcg_at_10 of the exported feed model on the eval interactions."""
  eval_users = id_strings(feed_data.eval_users)
  eval_items = id_strings(feed_data.eval_items)
  gains = np.asarray(feed_data.eval_gains, dtype=np.float64)
  users = np.unique(eval_users)
  if max_users and len(users) > max_users:
    users = np.sort(np.random.default_rng(seed).choice(users, max_users, replace=False))
    keep = np.isin(eval_users, users)
    eval_users, eval_items, gains = eval_users[keep], eval_items[keep], gains[keep]
  feeds = recommend_all(tf.saved_model.load(export_dir), users)
  return {
      f'hit_rate_at_{METRIC_CUTOFF}': hit_rate(feeds, eval_users, eval_items, cutoff),
      f'ndcg_at_{METRIC_CUTOFF}': ndcg(feeds, eval_users, eval_items, gains, cutoff),
      'eval_users': int(len(users)),
      'eval_interactions': int(len(eval_users)),
      'unknown_eval_users': int(np.sum(~np.isin(users, feed_data.known_users))),
      'cutoff': int(cutoff),
  }


# --- Reading the Examples artifact -----------------------------------------------------------

def read_feed_data(examples: Sequence[types.Artifact]) -> FeedData:
  """The catalogue, users, train pairs and eval triples of an ExampleGen output."""
  def read(split, keys):
    files = [io_utils.all_files_pattern(uri)
             for uri in artifact_utils.get_split_uris(examples, split)]
    return data.read_table(files, keys)

  def strings(values):
    values = np.asarray(values, dtype=object)
    return values[values != None].astype(str)  # noqa: E711 (an object array)

  # read_table gives a Python string per value: each column is converted to a str array,
  # several times smaller, and its object array dropped (pop) before the next is made.
  train = read(F.TRAIN, [F.USER_ID, F.ITEM_ID])
  train_users, train_items = (train.pop(key).astype(str) for key in (F.USER_ID, F.ITEM_ID))
  evaluation = read(F.EVAL, [F.USER_ID, F.ITEM_ID, F.RATING])
  eval_users, eval_items = (evaluation.pop(key).astype(str) for key in (F.USER_ID, F.ITEM_ID))
  rated = evaluation[F.RATING + '?']
  gains = np.where(rated, np.array([v if v is not None else 0.0 for v in evaluation[F.RATING]],
                                   dtype=np.float64), 1.0) if rated.any() else \
      np.ones(len(rated), np.float64)
  return FeedData(
      catalogue=strings(read(F.ITEMS, [F.ITEM_ID])[F.ITEM_ID]),
      users=strings(read(F.USERS, [F.USER_ID])[F.USER_ID]),
      train_users=train_users, train_items=train_items,
      eval_users=eval_users, eval_items=eval_items, eval_gains=gains)
