"""Retrieval stage: a TFRS two-tower model, and the Trainer's run_fn that trains and exports it.

Training uses in-batch softmax with a temperature and a log-popularity correction (popular
items appear as in-batch negatives more often than their share of the catalogue warrants;
the correction removes that bias). The export scores the whole catalogue with a BruteForce
index (loads in any TF Serving) or ScaNN (needs ScaNN's ops at serving time).
"""
import json
import os
from typing import Any, Dict, Optional, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs
import tensorflow_transform as tft
from absl import logging

from models import averaging, data, optimizers, sequence, warm_start
from models.feature_store import FeatureStore, build_stores, item_features
from models.history import training_callbacks
from models.index import make_index
from models.request_time import (covered_share, read_train_table, recent_window,
                                 window_seconds)
from models.towers import Tower, member_outputs, members_of, towers
from models.warmup import write_warmup
from core import features as F
from core import recent_popularity, served
from core.artifacts import embed
from core.configs import RetrievalConfig, config_from_dict

SIGNATURE = 'retrieve'
# In the Trainer's model_run: the recent window behind the served recency term, and how the
# history query was trained.
RECENCY_FILE = 'recency.json'
HISTORY_QUERY_FILE = 'history_query.json'
HISTORY_ENCODERS = ('gru', 'mean')
# The query from the user and their latest items (RetrievalServing.embed_users_with_history).
HISTORY_SIGNATURE = 'embed_users_with_history'
# The candidates for a request made at a given time (RetrievalServing.retrieve_at; its query
# is F.RETRIEVAL_AT_SIGNATURE).
RETRIEVE_AT_SIGNATURE = 'retrieve_at'


class TwoTowerModel(tfrs.Model):
  """Query tower (user id and features) and candidate tower (item id and features)."""

  def __init__(self, user_spec: data.SideSpec, item_spec: data.SideSpec,
               config: RetrievalConfig, item_log_prob: Optional[np.ndarray] = None,
               catalogue: Optional[Dict[str, tf.Tensor]] = None,
               seen: Optional[data.SeenPairs] = None):
    super().__init__()
    # With ``seen`` (the train pairs), a user's other train items are no negatives for them.
    self.seen = seen
    self.user_key = user_spec.id_key
    self.temperature = config.temperature
    self.popularity_weight = config.popularity_weight
    # Mixed negative sampling: catalogue items drawn uniformly join the in-batch negatives,
    # so that items too rare to appear in batches are pushed down too.
    self.extra_negatives = config.extra_negatives if catalogue is not None else 0
    self.catalogue = catalogue
    self.batch_size = config.batch_size
    # ``ensemble`` pairs of towers, each pair trained on its own loss over the same batches.
    self.query_tower = towers(
        lambda name: Tower(user_spec, config.embedding_dim, config.hidden_units, l2=config.l2,
                           table_l2=config.embedding_l2, lazy=config.lazy_embeddings,
                           id_dropout=config.id_dropout, name=name),
        config.ensemble, scale=True, name='query')
    self.candidate_tower = towers(
        lambda name: Tower(item_spec, config.embedding_dim, config.hidden_units, l2=config.l2,
                           table_l2=config.embedding_l2, lazy=config.lazy_embeddings,
                           id_dropout=config.id_dropout, name=name),
        config.ensemble, scale=False, name='candidate')
    self.item_key = item_spec.id_key
    self.item_log_prob = (tf.constant(item_log_prob, tf.float32)
                          if item_log_prob is not None else None)
    self.task = tfrs.tasks.Retrieval(temperature=config.temperature,
                                     remove_accidental_hits=True)

  def compute_loss(self, features: Dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
    queries = member_outputs(self.query_tower, features, training=training)
    candidates = member_outputs(self.candidate_tower, features, training=training)
    item_ids = tf.reshape(features[self.item_key], [-1])
    if self.extra_negatives:
      rows = tf.random.uniform([self.extra_negatives], 0,
                               tf.shape(self.catalogue[self.item_key])[0], dtype=tf.int32)
      extra = {k: _gather_rows(v, rows) for k, v in self.catalogue.items()}
      candidates = [tf.concat([c, e], 0) for c, e in
                    zip(candidates, member_outputs(self.candidate_tower, extra, training))]
      item_ids = tf.concat([item_ids, tf.reshape(extra[self.item_key], [-1])], 0)
    sampling = None
    if self.item_log_prob is not None:
      # Probability of each candidate under the mixture the negatives come from: by
      # popularity in the batch, uniform in the extra ones (Yang et al. 2020). TFRS clips it
      # to at most 1, so it must be a probability, not an expected count.
      batch = float(self.batch_size)
      sampling = (batch * tf.exp(tf.gather(self.item_log_prob, item_ids))
                  + self.extra_negatives / tf.cast(tf.size(self.item_log_prob), tf.float32)
                  ) / (batch + self.extra_negatives)
      if self.popularity_weight != 1.0:
        sampling = sampling ** self.popularity_weight
    return tf.add_n([self._pair_loss(q, c, item_ids, sampling, features)
                     for q, c in zip(queries, candidates)])

  def _pair_loss(self, queries, candidates, item_ids, sampling, features) -> tf.Tensor:
    """In-batch softmax loss of one pair of towers."""
    if self.seen is None:
      return self.task(queries, candidates, candidate_sampling_probability=sampling,
                       candidate_ids=item_ids, compute_metrics=False)
    # TFRS's Retrieval loss (summed softmax cross-entropy, positives on the diagonal), with
    # every (user, item) pair of the train split masked out of the negatives.
    scores = tf.matmul(queries, candidates, transpose_b=True) / self.temperature
    if sampling is not None:
      scores -= tf.math.log(tf.clip_by_value(sampling, 1e-6, 1.0))[tf.newaxis, :]
    labels = tf.eye(tf.shape(scores)[0], tf.shape(scores)[1])
    user_ids = tf.reshape(features[self.user_key], [-1])
    positives = item_ids[:tf.shape(scores)[0]]
    hits = (self.seen.contains(user_ids[:, tf.newaxis], item_ids[tf.newaxis, :])
            | tf.equal(positives[:, tf.newaxis], item_ids[tf.newaxis, :]))
    scores = tf.where(hits & tf.equal(labels, 0.0), tf.constant(-1e9, scores.dtype), scores)
    return tf.reduce_sum(tf.nn.softmax_cross_entropy_with_logits(labels, scores))

  def row_vocabularies(self):
    """The vocabulary-indexed tables, for warm start."""
    return warm_start.encoder_row_vocabularies(
        [t.encoder for tower in (self.query_tower, self.candidate_tower)
         for t in members_of(tower)])


def _gather_rows(values: tf.Tensor, rows: tf.Tensor) -> tf.Tensor:
  picked = tf.gather(values, rows)
  return picked.to_sparse() if isinstance(picked, tf.RaggedTensor) else picked


def item_log_probabilities(tft_output: tft.TFTransformOutput) -> np.ndarray:
  """log P(item) in training, indexed like the item id vocabulary (OOV rows: the rarest)."""
  vocab = tft_output.vocabulary_by_name(F.vocabulary_name(F.ITEM_ID))
  counts_path = tft_output.vocabulary_file_by_name(F.ITEM_COUNT_VOCAB)
  counts = {}
  with tf.io.gfile.GFile(counts_path) as f:
    for line in f:
      count, _, token = line.rstrip('\n').partition(' ')
      counts[token] = float(count)
  total = sum(counts.values())
  probs = np.array([counts.get(t.decode() if isinstance(t, bytes) else t, 1.0)
                    for t in vocab] + [1.0, 1.0], dtype=np.float64) / total
  return np.log(probs).astype(np.float32)


class RetrievalServing(tf.Module):
  """What the retrieval SavedModel holds: stores, Transform layer, towers and the index.

  The vectors it indexes and returns (``embed_users``, ``embed_items``) carry two extra
  columns, so that the index scores what is described here and stays a plain dot product:
  * cold start: on the item side log P(item) in training divided by S, the largest |log P|
    (so that the column stays within [-1, 0], like the unit-norm towers, and does not
    dominate ScaNN's partitioning); on the query side ``cold_start_weight`` x S for a user
    the id vocabulary does not know, 0 for the others. A new user, served from features
    only, gets ``cold_start_weight`` x log P(item): it falls back on popularity where the id
    says nothing (docs/quality.md has its effect).
  * recency: on the item side ``recency_shift`` = log P_recent(item) - log P(item) divided by
    its largest magnitude R; on the query side ``recency_weight`` x R for a known user and
    ``cold_start_weight`` x R for a new one. The towers learnt popularity as it was over
    the whole of train; the shift moves it to what is popular lately, the feed's future. A
    new user's popularity term becomes ``cold_start_weight`` x log P_recent(item).
  * ``recent_popularity_weight`` w adds w x log P_recent(item) to every user's scores, on
    the same two columns (w x S on the first for every user, w x R more on the second): the
    feed's future favours what is popular lately more than the towers and the shift alone
    say (docs/quality.md, "Popularity lately on top").
  * request time (``embed_users_at``, ``retrieve_at``): both columns describe the window
    [until - W, until) that ends where training ends. A request made at time t looks at its
    own window [t - W, t), of which that one covers max(0, 1 - (until - t) / W); a known
    user's two columns are scaled by it, so a request from the past (a replay, a backfill,
    a random hold-out) is scored by the towers, which learnt that period, rather than by
    today's popularity. From ``until`` on the factor is 1: the latest popularity is the best
    evidence about the future. New users keep their columns (popularity is all they have).
    ``embed_users`` and ``retrieve`` are requests made now.
  """

  def __init__(self, model: TwoTowerModel, tft_layer, users: FeatureStore,
               items: FeatureStore, k: int, index: str, audience_k: int = 1000,
               item_log_prob: Optional[np.ndarray] = None, cold_start_weight: float = 0.0,
               recency_shift: Optional[np.ndarray] = None, recency_weight: float = 0.0,
               history_weight: float = 0.0, history_length: int = 1,
               recent_popularity_weight: float = 0.0, recent_until: Optional[int] = None,
               recent_window_days: Optional[int] = None,
               history_encoder: Optional[sequence.HistoryEncoder] = None):
    super().__init__()
    # None: the history query is the mean of the history's item vectors.
    self.history_encoder = history_encoder
    # Python values, traced into the signatures as constants. Without a window the recency
    # term spans all of train, so every request gets all of it (request_weight 1).
    self._recent_until = int(recent_until or 0)
    self._recent_window = window_seconds(recent_window_days) if recent_until is not None else 0.0
    self.history_weight = tf.constant(float(history_weight), tf.float32)
    self.history_length = int(history_length)
    self.tft_layer = tft_layer
    self.query_tower = model.query_tower
    self.candidate_tower = model.candidate_tower
    self.user_key = model.query_tower.encoder.spec.id_key
    self.item_key = model.item_key
    self.user_oov = model.query_tower.encoder.oov_id
    rows = model.candidate_tower.encoder.spec.id_rows
    log_prob = (np.asarray(item_log_prob, np.float32) if item_log_prob is not None
                else np.zeros([rows], np.float32))
    scale = float(max(1.0, np.max(np.abs(log_prob)))) if len(log_prob) else 1.0
    self.item_prior = tf.constant(log_prob / scale, tf.float32)
    # w x log P_recent = w x log P + w x (log P_recent - log P): the same two columns.
    boost = float(recent_popularity_weight) if recency_shift is not None else 0.0
    # The log P column's query value, [known user, new user].
    self.prior_weights = tf.constant([boost * scale, (float(cold_start_weight) + boost) * scale],
                                     tf.float32)
    shift = (np.asarray(recency_shift, np.float32) if recency_shift is not None
             else np.zeros([rows], np.float32))
    shift_scale = float(max(1.0, np.max(np.abs(shift)))) if len(shift) else 1.0
    self.item_recency = tf.constant(shift / shift_scale, tf.float32)
    self.recency_weights = tf.constant(
        [(float(recency_weight) + boost) * shift_scale,
         (float(cold_start_weight) + boost) * shift_scale]
        if recency_shift is not None else [0.0, 0.0], tf.float32)
    self.users = users
    self.items = items
    self.k = k
    self.display_key = next((F.item_feature(c) for c in F.DISPLAY_COLUMNS
                             if F.item_feature(c) in items.columns), F.ITEM_ID)
    item_ids = items.ids.numpy()
    embeddings = self._batched(self.embed_items, item_ids)
    self.index = make_index(index, k, len(item_ids))
    self.index.index(tf.constant(embeddings), tf.constant(item_ids))
    # The reverse direction, for ad audiences: every known user, scored against an item by
    # the towers alone (the cold-start column would only shift new users).
    user_ids = users.ids.numpy()
    self.audience_k = min(audience_k, len(user_ids))
    self.user_index = tfrs.layers.factorized_top_k.BruteForce(k=self.audience_k)
    self.user_index.index(tf.constant(self._batched(self._user_towers, user_ids)),
                          tf.constant(user_ids))

  @staticmethod
  def _batched(embed, ids: np.ndarray, batch: int = 8192) -> np.ndarray:
    parts = [embed(tf.constant(ids[i:i + batch]))['embeddings'].numpy()
             for i in range(0, max(len(ids), 1), batch)]
    return np.concatenate(parts)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='user_id')])
  def _user_towers(self, user_id):
    return {'embeddings': self.query_tower(self.tft_layer(self.users.lookup(user_id)))}

  def _embed_users(self, user_id, times=None):
    features = self.tft_layer(self.users.lookup(user_id))
    ids = tf.reshape(features[self.user_key], [-1])
    is_cold = tf.cast(ids >= self.user_oov, tf.int32)
    priors = tf.stack([tf.gather(self.prior_weights, is_cold),
                       tf.gather(self.recency_weights, is_cold)], 1)
    if times is not None:
      covered = self.request_weight(times)
      priors *= tf.where(is_cold > 0, tf.ones_like(covered), covered)[:, tf.newaxis]
    return {'embeddings': tf.concat([self.query_tower(features), priors], 1)}

  def request_weight(self, times):
    """Share of a request's recent window that the served recency columns describe."""
    return covered_share(times, self._recent_until, self._recent_window)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='user_id')])
  def embed_users(self, user_id):
    return self._embed_users(user_id)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='user_id'),
                                tf.TensorSpec([None], tf.int64, name=F.REQUEST_TIME)])
  def embed_users_at(self, user_id, request_time):
    """``embed_users`` for requests made at ``request_time`` (Unix seconds, one per user):
    the popularity-lately columns in proportion to how much of the request's recent window
    training saw (class docstring)."""
    return self._embed_users(user_id, request_time)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='user_id'),
                                tf.TensorSpec([None, None], tf.string, name='history_item_ids')])
  def embed_users_with_history(self, user_id, history_item_ids):
    """``embed_users`` moved towards what each user did since the model was trained.

    ``history_item_ids``: a row per user, the user's latest items, most recent first, padded
    with ''. The first ``history_length`` entries that the catalogue knows go through the
    item tower; the history encoder (models/sequence.py, trained to point at the next item)
    or, without one, their mean turns them into a query, added times ``history_weight`` to
    the user's tower (the prior columns stay as they are). A new user's second click is no
    longer cold, and a returning user's feed follows what they do now, both without
    retraining. Rows with no known item get ``embed_users`` unchanged.
    """
    users = self.embed_users(user_id)['embeddings']
    history = history_item_ids[:, :self.history_length]
    flat = tf.reshape(history, [-1])
    known = tf.cast(self.items.contains(flat), tf.float32)
    towers = self.candidate_tower(self.tft_layer(self.items.lookup(flat))) * known[:, tf.newaxis]
    shape = tf.shape(history)
    towers = tf.reshape(towers, tf.concat([shape, tf.shape(towers)[-1:]], 0))
    known = tf.reshape(known, shape)
    if self.history_encoder is not None:
      query = self.history_encoder(towers, mask=known > 0)
    else:
      query = tf.math.divide_no_nan(tf.reduce_sum(towers, 1),
                                    tf.reduce_sum(known, 1, keepdims=True))
    priors = tf.zeros([tf.shape(query)[0], F.RETRIEVAL_PRIOR_COLUMNS], tf.float32)
    return {'embeddings': users + self.history_weight * tf.concat([query, priors], 1)}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='item_id')])
  def embed_items(self, item_id):
    features = self.tft_layer(self.items.lookup(item_id))
    rows = tf.reshape(features[self.item_key], [-1])
    prior = tf.gather(self.item_prior, rows)
    recency = tf.gather(self.item_recency, rows)
    return {'embeddings': tf.concat([self.candidate_tower(features), prior[:, tf.newaxis],
                                     recency[:, tf.newaxis]], 1)}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='user_id')])
  def retrieve(self, user_id):
    scores, item_ids = self.index(self.embed_users(user_id)['embeddings'], k=self.k)
    return {'item_ids': item_ids, 'scores': scores}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='user_id'),
                                tf.TensorSpec([None], tf.int64, name=F.REQUEST_TIME)])
  def retrieve_at(self, user_id, request_time):
    """``retrieve`` for requests made at ``request_time`` (``embed_users_at``)."""
    query = self._embed_users(user_id, request_time)['embeddings']
    scores, item_ids = self.index(query, k=self.k)
    return {'item_ids': item_ids, 'scores': scores}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='item_id')])
  def audience(self, item_id):
    """The users most likely to engage with each item (an ad, a product), best first."""
    towers = self.candidate_tower(self.tft_layer(self.items.lookup(item_id)))
    scores, user_ids = self.user_index(towers, k=self.audience_k)
    return {'user_ids': user_ids, 'scores': scores}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='item_id')])
  def display(self, item_id):
    """A human-readable label per item (its title, if the catalogue has one)."""
    return {'text': self.items.text(item_id, self.display_key)}

  def signatures(self) -> Dict[str, Any]:
    retrieve = self.retrieve.get_concrete_function()
    # serving_default: what a client that names no signature gets, the candidates.
    return {
        SIGNATURE: retrieve,
        'serving_default': retrieve,
        'display': self.display.get_concrete_function(),
        'audience': self.audience.get_concrete_function(),
        'embed_users': self.embed_users.get_concrete_function(),
        F.RETRIEVAL_AT_SIGNATURE: self.embed_users_at.get_concrete_function(),
        RETRIEVE_AT_SIGNATURE: self.retrieve_at.get_concrete_function(),
        HISTORY_SIGNATURE: self.embed_users_with_history.get_concrete_function(),
        'embed_items': self.embed_items.get_concrete_function(),
    }


def cold_start_weight(config: RetrievalConfig) -> float:
  """Weight of log P(item) for users the id vocabulary does not know (RetrievalServing)."""
  return config.new_user_popularity_weight if config.popularity_correction else 0.0


def item_recency_shift(tft_output: tft.TFTransformOutput, table: Dict[str, np.ndarray],
                       config: RetrievalConfig) -> Tuple[np.ndarray, Dict[str, Any]]:
  """log P_recent(item) - log P(item), indexed like the item id vocabulary (OOV rows: 0).

  P_recent counts the train interactions (``table``: request_time.read_train_table) of the
  recent window that best predicts the latest train rows from the earlier ones
  (request_time.recent_window, the window of the recent-popularity list); P counts all of
  train. Both are smoothed by one interaction per item, so that an item nobody touched
  lately is pushed down, not removed. Returns the shift and a description (the window) for
  the training report.
  """
  vocab = [t.decode() if isinstance(t, bytes) else t
           for t in tft_output.vocabulary_by_name(F.vocabulary_name(F.ITEM_ID))]
  row = {item: i for i, item in enumerate(vocab)}
  items = np.array([row.get(i, -1) for i in table[F.ITEM_ID]], dtype=np.int64)
  known = items >= 0
  times = table[F.TIMESTAMP][known]
  items = items[known]
  n = len(vocab)
  until, window = recent_window(table[F.USER_ID][known], items, times, n)
  recent = recent_popularity.counts(items, times, n, until, window) + 1.0
  overall = np.bincount(items, minlength=n).astype(np.float64) + 1.0
  shift = np.log(recent / recent.sum()) - np.log(overall / overall.sum())
  return (np.concatenate([shift, np.zeros(2)]).astype(np.float32),
          {'window_days': window, 'until': until, 'recency_weight': config.recency_weight,
           'recent_popularity_weight': config.recent_popularity_weight})


def train(fn_args, tft_output: tft.TFTransformOutput, config: RetrievalConfig,
          base_model: Optional[str] = None, items: Optional[FeatureStore] = None):
  """Fits the two-tower model on the train split; returns (model, history, warm-start report).

  With ``base_model`` (the served retrieval model) training starts from its weights.
  """
  optimizers.without_add_rewrites()
  user_spec = data.side_spec(tft_output, F.USER_ID, F.USER_PREFIX)
  item_spec = data.side_spec(tft_output, F.ITEM_ID, F.ITEM_PREFIX)
  keys = user_spec.keys + item_spec.keys
  batches = data.transformed_batches(fn_args.train_files, tft_output, keys)
  train_ds = data.rebatched(batches, config.batch_size, shuffle=True, seed=config.seed)
  log_prob = item_log_probabilities(tft_output) if config.popularity_correction else None
  catalogue = None
  if config.extra_negatives:
    if items is None:
      _, items = build_stores(fn_args.train_files, tft_output)
    catalogue = item_features(items, tft_output.transform_features_layer(), item_spec)
  seen = None
  if config.mask_seen:
    pair_users, pair_items = data.id_pairs(batches, user_spec.id_key, item_spec.id_key)
    seen = data.SeenPairs(pair_users * item_spec.id_rows + pair_items, item_spec.id_rows)
  tf.random.set_seed(config.seed)
  model = TwoTowerModel(user_spec, item_spec, config, log_prob, catalogue, seen)
  report = None
  if base_model:
    model.compute_loss(next(iter(train_ds)))  # creates the variables
    report = warm_start.restore(model, model.row_vocabularies(), tft_output, base_model)
  model.compile(optimizer=optimizers.adam(config.learning_rate, config.lazy_embeddings))
  callbacks = ([averaging.WeightAveraging(config.weight_averaging)]
               if config.weight_averaging else []) + training_callbacks(fn_args)
  history = model.fit(train_ds, epochs=config.epochs, callbacks=callbacks, verbose=2)
  return model, {k: [float(v) for v in vals] for k, vals in history.history.items()}, report


def history_query(model: TwoTowerModel, tft_output: tft.TFTransformOutput,
                  items: FeatureStore, table: Dict[str, np.ndarray], config: RetrievalConfig
                  ) -> Tuple[Optional[sequence.HistoryEncoder], Dict[str, Any]]:
  """The history encoder of ``config`` trained on the train split's (``table``) (latest
  items, next item) pairs over the trained item tower, and its description (None for
  'mean')."""
  if config.history_encoder not in HISTORY_ENCODERS:
    raise ValueError(f'history_encoder {config.history_encoder!r}: expected one of '
                     f'{HISTORY_ENCODERS}')
  if config.history_encoder == 'mean':
    return None, {'encoder': 'mean'}
  ids = items.ids.numpy()
  row = {item.decode() if isinstance(item, bytes) else item: i for i, item in enumerate(ids)}
  rows = np.array([row.get(i, -1) for i in table[F.ITEM_ID]], np.int64)
  known = rows >= 0
  history, target = sequence.next_item_examples(
      table[F.USER_ID][known], rows[known], table[F.TIMESTAMP][known], config.history_length)
  tft_layer = tft_output.transform_features_layer()
  vectors = embed(lambda batch: {'embeddings': model.candidate_tower(
      tft_layer(items.lookup(batch)))}, ids, batch=8192)
  encoder, report = sequence.fit(vectors, history, target, config.history_units,
                                 config.history_epochs, max_examples=config.history_max_examples,
                                 seed=config.seed)
  return encoder, dict(report, encoder=config.history_encoder)


def serving_model(model: TwoTowerModel, tft_output: tft.TFTransformOutput, users: FeatureStore,
                  items: FeatureStore, config: RetrievalConfig, train_files,
                  index: Optional[str] = None) -> Tuple['RetrievalServing', Dict[str, Any]]:
  """What the Trainer exports (and benchmarks/sweep.py scores): the trained towers with the
  popularity priors and the history query of ``config``; returns it and a description
  ({'recency': the recency term's, 'history_query': the encoder's})."""
  table = read_train_table(train_files)  # read once for both
  shift, recency = (item_recency_shift(tft_output, table, config)
                    if (config.recency_weight or cold_start_weight(config)
                        or config.recent_popularity_weight) else (None, {}))
  encoder, history = history_query(model, tft_output, items, table, config)
  serving = RetrievalServing(model, tft_output.transform_features_layer(), users, items,
                             k=config.top_k, index=index or config.index,
                             audience_k=config.audience_k,
                             item_log_prob=item_log_probabilities(tft_output),
                             cold_start_weight=cold_start_weight(config),
                             recency_shift=shift, recency_weight=config.recency_weight,
                             history_weight=config.history_weight,
                             history_length=config.history_length,
                             recent_popularity_weight=config.recent_popularity_weight,
                             recent_until=recency.get('until'),
                             recent_window_days=recency.get('window_days'),
                             history_encoder=encoder)
  return serving, {'recency': recency, 'history_query': history}


def run_fn(fn_args) -> None:
  """TFX Trainer entry point (referenced as 'models.retrieval.run_fn')."""
  custom = fn_args.custom_config or {}
  config = config_from_dict(RetrievalConfig, custom.get('retrieval', {}))
  tft_output = tft.TFTransformOutput(fn_args.transform_output)
  users, items = build_stores(fn_args.train_files, tft_output)
  model, history, report = train(fn_args, tft_output, config, base_model=fn_args.base_model,
                                 items=items)
  warm_start.save(model, model.row_vocabularies(), tft_output, fn_args.serving_model_dir)
  warm_start.write_report(fn_args.model_run_dir, report)
  serving, described = serving_model(model, tft_output, users, items, config,
                                     fn_args.train_files)
  recency = described['recency']
  options = (tf.saved_model.SaveOptions(namespace_whitelist=['Scann'])
             if config.index == 'scann' else None)
  tf.saved_model.save(serving, fn_args.serving_model_dir, signatures=serving.signatures(),
                      options=options)
  user_ids = {'user_id': users.ids.numpy()[:8].astype(bytes)}
  item_ids = {'item_id': items.ids.numpy()[:8].astype(bytes)}
  user_times = dict(user_ids, **{F.REQUEST_TIME: np.full(len(user_ids['user_id']),
                                                         recency.get('until', 0), np.int64)})
  write_warmup(fn_args.serving_model_dir, {
      SIGNATURE: user_ids, 'serving_default': user_ids, 'embed_users': user_ids,
      F.RETRIEVAL_AT_SIGNATURE: user_times, RETRIEVE_AT_SIGNATURE: user_times,
      HISTORY_SIGNATURE: dict(user_ids, history_item_ids=np.stack([item_ids['item_id']] * 8)),
      'audience': item_ids, 'embed_items': item_ids, 'display': item_ids})
  if custom.get(served.REFIT_KEY) and fn_args.base_model:
    # A refit: the next run's gates compare with the candidate, which never saw this eval.
    served.keep_candidate(fn_args.base_model, fn_args.serving_model_dir)
  data.write_history(fn_args.model_run_dir, history)
  tf.io.gfile.makedirs(fn_args.model_run_dir)
  for name, value in ((RECENCY_FILE, recency), (HISTORY_QUERY_FILE, described['history_query'])):
    with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, name), 'w') as f:
      f.write(json.dumps(value))
  logging.info('Retrieval model exported to %s (recency: %s)', fn_args.serving_model_dir,
               recency)
