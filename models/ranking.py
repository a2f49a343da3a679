"""Ranking stage: a TFRS multi-task model, and the Trainer's run_fn that trains and exports it.

Two heads share the user and item encoders:
  * rating: a biased factorisation (global, user and item biases plus a dot product of the
    two sides' projections) with an MLP over both sides' ids and features, trained with MSE
    on the observed interactions ("how much would u like i if u watched it");
  * engagement: the same shape of head, trained on the observed pairs against items
    sampled for the same user (uniformly by default; a share by popularity is an option; a
    sampled item the user has in train is not counted) ("will u engage with i"): by default
    a softmax of each positive against its own negatives plus a small binary cross-entropy
    that keeps the logits' level (``engagement_loss``, ``calibration_weight``). The feed
    orders by it (with the retrieval score): a rating model ranks niche favourites of a few
    above what the user will actually pick.
With no rating column (implicit feedback) only the engagement head exists.

Early stopping watches a held-out share of the training rows, never the eval split: the
rating RMSE when there is a rating, else the engagement AUC (against fresh negatives).
"""
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs
import tensorflow_transform as tft
import tf_keras as keras
from absl import logging

from models import data, optimizers, tracing, warm_start
from models.rating_baseline import RatingBaseline
from models.feature_store import FeatureStore, build_stores, item_features
from models.history import training_callbacks
from models.request_time import NOW, covered_share, train_window, window_seconds
from models.towers import Encoder, mlp, table_penalty
from models.warmup import write_warmup
from core import features as F
from core import served
from core.configs import RankingConfig, config_from_dict

SIGNATURE = 'rank'
# rank for requests made at a given time (RankingServing.rank_at).
RANK_AT_SIGNATURE = 'rank_at'
RATING = 'rating'
# P(engage) under the training's negative sampling: an ordering score, not a calibrated
# probability; and its logit, for blending with other scores.
ENGAGEMENT = 'engagement'
ENGAGEMENT_LOGIT = 'engagement_logit'
ENGAGEMENT_LOSSES = ('binary', 'softmax')


class NegativeSampler:
  """Items to contrast a user's observed items with: their transformed features, sampled
  from a mix of the train popularity and the uniform distribution over the catalogue.

  ``seen_keys`` (sorted ``user_id_xf * item_rows + item_id_xf`` of the train pairs) flags
  accidental hits. A plain object (not tracked): nothing here is part of the export.
  """

  def __init__(self, item_features: Dict[str, tf.Tensor], item_key: str, item_rows: int,
               probabilities: np.ndarray, seen_keys: Optional[np.ndarray] = None):
    self.features = item_features
    self.item_key = item_key
    self.item_rows = item_rows
    # Draws search the cumulative distribution (float64: a million small probabilities keep
    # their resolution) instead of tf.random.categorical, which exponentiates and sums every
    # logit at each call: its cost per step grows with the catalogue
    # (benchmarks/negative_sampler.py).
    self.cdf = tf.constant(np.cumsum(np.asarray(probabilities, np.float64)), tf.float64)
    self.seen = data.SeenPairs(seen_keys if seen_keys is not None else [], item_rows)

  def sample(self, n: tf.Tensor) -> Dict[str, tf.Tensor]:
    return self.rows_features(self.sample_rows(n))

  def sample_rows(self, n: tf.Tensor) -> tf.Tensor:
    """``n`` catalogue rows drawn with replacement by their probabilities (rows with none
    are never drawn: the first row whose cumulative probability exceeds the draw)."""
    draws = tf.random.uniform(tf.reshape(n, [1]), 0.0, self.cdf[-1], dtype=tf.float64)
    rows = tf.searchsorted(self.cdf, draws, side='right', out_type=tf.int64)
    return tf.minimum(rows, tf.size(self.cdf, out_type=tf.int64) - 1)

  def rows_features(self, rows: tf.Tensor) -> Dict[str, tf.Tensor]:
    """The transformed item features of catalogue ``rows`` (bags as sparse tensors)."""
    out = {}
    for key, values in self.features.items():
      picked = tf.gather(values, rows)
      out[key] = picked.to_sparse() if isinstance(picked, tf.RaggedTensor) else picked
    return out

  def is_seen(self, user_ids: tf.Tensor, item_ids: tf.Tensor) -> tf.Tensor:
    return self.seen.contains(user_ids, item_ids)


def negative_probabilities(item_ids: np.ndarray, counts: np.ndarray,
                           popularity_share: float) -> np.ndarray:
  """Sampling probabilities of the catalogue rows: ``popularity_share`` of the mass by train
  count of their item id (``counts`` indexed by id; no count -> 0), the rest uniform."""
  n = len(item_ids)
  item_ids = np.asarray(item_ids, np.int64)
  counts = np.asarray(counts, np.float64)
  known = (item_ids >= 0) & (item_ids < len(counts))
  row_counts = np.where(known, counts[np.clip(item_ids, 0, max(0, len(counts) - 1))], 0.0) \
      if len(counts) else np.zeros(n)
  share = float(popularity_share) if row_counts.sum() > 0 else 0.0
  popular = row_counts / row_counts.sum() if row_counts.sum() > 0 else np.zeros(n)
  return share * popular + (1.0 - share) / n


class _Head(keras.layers.Layer):
  """Global and per-id biases + dot product of the sides' projections + an MLP of both."""

  def __init__(self, user_rows: int, item_rows: int, config: RankingConfig, init_bias: float,
               **kwargs):
    super().__init__(**kwargs)
    reg = keras.regularizers.l2(config.l2) if config.l2 else None
    self.user_proj = keras.layers.Dense(config.embedding_dim, kernel_regularizer=reg)
    self.item_proj = keras.layers.Dense(config.embedding_dim, kernel_regularizer=reg)
    penalty = table_penalty(config.embedding_l2, config.lazy_embeddings)
    self.user_bias = keras.layers.Embedding(user_rows, 1, embeddings_initializer='zeros',
                                            **penalty)
    self.item_bias = keras.layers.Embedding(item_rows, 1, embeddings_initializer='zeros',
                                            **penalty)
    self.global_bias = tf.Variable(init_bias, dtype=tf.float32, name='global_bias')
    self.deep = mlp(config.hidden_units, 1, l2=config.l2, name='deep')

  def call(self, user, item, user_ids, item_ids, training=False):
    dot = tf.reduce_sum(self.user_proj(user) * self.item_proj(item), axis=1)
    biases = (tf.reshape(self.user_bias(tf.reshape(user_ids, [-1])), [-1])
              + tf.reshape(self.item_bias(tf.reshape(item_ids, [-1])), [-1]))
    deep = tf.reshape(self.deep(tf.concat([user, item], axis=1), training=training), [-1])
    return self.global_bias + biases + dot + deep


class RankingModel(tfrs.Model):
  """Predicts the rating of (user, item) and the logit of the user engaging with the item.

  ``with_rating=False`` (implicit feedback) builds the engagement head only. Training the
  engagement head needs a ``sampler`` (NegativeSampler); predicting does not.
  """

  def __init__(self, user_spec: data.SideSpec, item_spec: data.SideSpec,
               config: RankingConfig, mean_rating: float = 3.5, with_rating: bool = True,
               sampler: Optional[NegativeSampler] = None,
               rating_range: Optional[Tuple[float, float]] = None):
    super().__init__()
    if config.engagement_loss not in ENGAGEMENT_LOSSES:
      raise ValueError(f'unknown engagement_loss {config.engagement_loss!r}; expected one of '
                       f'{ENGAGEMENT_LOSSES}')
    self.config = config
    self.with_rating = with_rating
    self.sampler = sampler
    self.user_encoder = Encoder(user_spec, config.embedding_dim, table_l2=config.embedding_l2,
                                lazy=config.lazy_embeddings, id_dropout=config.id_dropout,
                                name='user')
    self.item_encoder = Encoder(item_spec, config.embedding_dim, table_l2=config.embedding_l2,
                                lazy=config.lazy_embeddings, id_dropout=config.id_dropout,
                                name='item')
    self.user_key, self.item_key = user_spec.id_key, item_spec.id_key
    rows = (user_spec.id_rows, item_spec.id_rows)
    if with_rating:
      self.rating_head = _Head(*rows, config, mean_rating, name='rating')
      # Predictions are clipped to the ratings seen in training (outside training only: a
      # clipped prediction has no gradient).
      low, high = rating_range if rating_range else (-np.inf, np.inf)
      self.rating_min = tf.Variable(float(low), trainable=False, name='rating_min')
      self.rating_max = tf.Variable(float(high), trainable=False, name='rating_max')
      self.rating_task = tfrs.tasks.Ranking(loss=keras.losses.MeanSquaredError(),
                                            metrics=[keras.metrics.RootMeanSquaredError()])
      # Fitted apart (fit_rating_baseline) and blended in only when predicting: the rating
      # head learns alone, so the two stay different models whose errors partly cancel.
      self.rating_baseline = (RatingBaseline(*rows, mean=mean_rating, name='rating_baseline')
                              if config.baseline_weight > 0 else None)
    self.engagement_head = _Head(*rows, config, 0.0, name='engagement')
    self.engagement_task = tfrs.tasks.Ranking(
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
        metrics=[keras.metrics.AUC(from_logits=True, name='auc')])

  def call(self, features: Dict[str, tf.Tensor], training: bool = False,
           baseline_share: Optional[tf.Tensor] = None) -> Dict[str, tf.Tensor]:
    """``baseline_share`` (per row, in [0, 1]) scales the baseline's weight in the served
    rating: the request's covered share (models/request_time.py); None: all of it."""
    user = self.user_encoder(features, training=training)
    item = self.item_encoder(features, training=training)
    ids = (features[self.user_key], features[self.item_key])
    out = {}
    if self.with_rating:
      rating = self.rating_head(user, item, *ids, training=training)
      if self.rating_baseline is not None and not training:
        weight = self.config.baseline_weight
        if baseline_share is not None:
          weight *= tf.reshape(baseline_share, tf.shape(rating))
        rating = (1.0 - weight) * rating + weight * self.rating_baseline(*ids)
      out[RATING] = rating if training else tf.clip_by_value(rating, self.rating_min,
                                                             self.rating_max)
    logit = self.engagement_head(user, item, *ids, training=training)
    out[ENGAGEMENT_LOGIT] = logit
    out[ENGAGEMENT] = tf.sigmoid(logit)
    return out

  def fit_rating_baseline(self, user_ids: np.ndarray, item_ids: np.ndarray,
                          ratings: np.ndarray) -> None:
    """Fits the blended baseline on these training rows (Transform ids); after warm start,
    which would otherwise leave the served model's biases of other rows."""
    if self.with_rating and self.rating_baseline is not None:
      self.rating_baseline.fit(user_ids, item_ids, ratings, self.config.baseline_user_shrinkage,
                               self.config.baseline_item_shrinkage)

  def row_vocabularies(self):
    """The vocabulary-indexed tables (biases included), for warm start."""
    out = warm_start.encoder_row_vocabularies([self.user_encoder, self.item_encoder])
    heads = [self.engagement_head] + ([self.rating_head] if self.with_rating else [])
    tables = [(head.user_bias.embeddings, head.item_bias.embeddings) for head in heads]
    if self.with_rating and self.rating_baseline is not None:
      tables.append((self.rating_baseline.user_bias, self.rating_baseline.item_bias))
    for user_table, item_table in tables:
      out[user_table.ref()] = self.user_encoder.spec.vocabularies[self.user_key]
      out[item_table.ref()] = self.item_encoder.spec.vocabularies[self.item_key]
    return out

  def compute_loss(self, features: Dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
    user = self.user_encoder(features, training=training)
    item = self.item_encoder(features, training=training)
    user_ids = tf.reshape(features[self.user_key], [-1])
    item_ids = tf.reshape(features[self.item_key], [-1])
    loss = tf.constant(0.0)
    if self.with_rating:
      labels = tf.reshape(features[F.RATING_XF], [-1])
      rating = self.rating_head(user, item, user_ids, item_ids, training=training)
      loss += self.config.rating_weight * self.rating_task(labels=labels, predictions=rating)
    if self.sampler is None or self.config.engagement_negatives < 1:
      return loss
    n = self.config.engagement_negatives
    batch = tf.shape(user_ids)[0]
    # Encode at most ``negative_pool`` sampled items and deal them out n per positive: the
    # item encoder (bag lookups) then costs the pool's rows a step instead of batch x n. The
    # samples are independent, so dealing in turn is as random as drawing; with no pool (0),
    # or one as large as batch x n, each negative is used once.
    size = batch * n
    if self.config.negative_pool:
      size = tf.minimum(size, self.config.negative_pool)
    negatives = self.sampler.sample(size)
    picks = tf.range(batch * n) % size
    negative_items = tf.gather(self.item_encoder(negatives, training=training), picks)
    negative_ids = tf.gather(tf.reshape(negatives[self.item_key], [-1]), picks)
    negative_users = tf.repeat(user, n, axis=0)
    negative_user_ids = tf.repeat(user_ids, n)
    logits = tf.concat([
        self.engagement_head(user, item, user_ids, item_ids, training=training),
        self.engagement_head(negative_users, negative_items, negative_user_ids, negative_ids,
                             training=training)], axis=0)
    labels = tf.concat([tf.ones([batch]), tf.zeros([batch * n])], axis=0)
    hit = self.sampler.is_seen(negative_user_ids, negative_ids)
    weights = tf.concat([tf.ones([batch]), 1.0 - tf.cast(hit, tf.float32)], axis=0)
    # [n, 1]: Keras' cross-entropy averages over the last axis before weighting.
    binary = self.engagement_task(labels=labels[:, tf.newaxis], predictions=logits[:, tf.newaxis],
                                  sample_weight=weights)
    if self.config.engagement_loss == 'softmax':
      # Each positive against its own negatives (accidental hits pushed out of the softmax).
      grouped = tf.concat([logits[:batch, tf.newaxis], tf.where(
          tf.reshape(hit, [batch, n]), -1e9, tf.reshape(logits[batch:], [batch, n]))], axis=1)
      first = tf.one_hot(tf.zeros([batch], tf.int32), n + 1)
      softmax = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(first, grouped))
      return loss + self.config.engagement_weight * (
          softmax + self.config.calibration_weight * binary)
    return loss + self.config.engagement_weight * binary


class RankingServing(tf.Module):
  """What the ranking SavedModel holds: stores, the Transform layer and the ranking model.

  The baseline blended into the rating hedges for the future beyond the end of train; a
  request dated before it gets the baseline in proportion to the share of its recent window
  that train's last window covers (models/request_time.py): ``rank_at``, and
  ``serving_default`` for examples with a ``timestamp`` (TFMA's eval rows). ``rank`` is a
  request made now.
  """

  def __init__(self, model: RankingModel, tft_layer, users: FeatureStore, items: FeatureStore,
               recent_until: Optional[int] = None, recent_window_days: Optional[int] = None):
    super().__init__()
    self.model = model
    self.tft_layer = tft_layer
    self.users = users
    self.items = items
    self._recent_until = int(recent_until or 0)
    self._recent_window = window_seconds(recent_window_days) if recent_until is not None else 0.0

  def _rank(self, user_id, item_id, request_time=None):
    raw = dict(self.users.lookup(user_id))
    raw.update(self.items.lookup(item_id))
    share = (None if request_time is None else
             covered_share(request_time, self._recent_until, self._recent_window))
    return self.model(self.tft_layer(raw), baseline_share=share)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='user_id'),
                                tf.TensorSpec([None], tf.string, name='item_id')])
  def rank(self, user_id, item_id):
    """rating (when trained with one), engagement and engagement_logit, float32 [batch]."""
    return self._rank(user_id, item_id)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='user_id'),
                                tf.TensorSpec([None], tf.string, name='item_id'),
                                tf.TensorSpec([None], tf.int64, name=F.REQUEST_TIME)])
  def rank_at(self, user_id, item_id, request_time):
    """``rank`` for requests made at ``request_time`` (Unix seconds, one per pair)."""
    return self._rank(user_id, item_id, request_time)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='examples')])
  def serve_examples(self, examples):
    """serving_default for TFMA: serialized raw examples -> one output, the predicted rating,
    or (implicit feedback) the engagement probability. An example's ``timestamp`` is its
    request time (none: now)."""
    parsed = tf.io.parse_example(examples, {
        F.USER_ID: tf.io.FixedLenFeature([], tf.string, default_value=''),
        F.ITEM_ID: tf.io.FixedLenFeature([], tf.string, default_value=''),
        F.TIMESTAMP: tf.io.FixedLenFeature([], tf.int64, default_value=NOW)})
    out = self._rank(parsed[F.USER_ID], parsed[F.ITEM_ID], parsed[F.TIMESTAMP])
    key = RATING if RATING in out else ENGAGEMENT
    return {key: out[key]}

  def signatures(self):
    return {SIGNATURE: self.rank.get_concrete_function(),
            RANK_AT_SIGNATURE: self.rank_at.get_concrete_function(),
            'serving_default': self.serve_examples.get_concrete_function()}


def serialized_examples(user_ids: Sequence[bytes], item_ids: Sequence[bytes]) -> np.ndarray:
  """serving_default's input: one serialized tf.Example per (user, item) pair."""
  def example(user, item):
    feature = {F.USER_ID: tf.train.Feature(bytes_list=tf.train.BytesList(value=[user])),
               F.ITEM_ID: tf.train.Feature(bytes_list=tf.train.BytesList(value=[item]))}
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()
  return np.array([example(u, i) for u, i in zip(user_ids, item_ids)], dtype=object)


def _validation_every(share: float) -> int:
  """Every n-th training row is held out for early stopping (0: none held out)."""
  return max(2, int(round(1 / share))) if share > 0 else 0


def train(fn_args, tft_output: tft.TFTransformOutput, config: RankingConfig,
          items: Optional[FeatureStore] = None, with_rating: Optional[bool] = None,
          base_model: Optional[str] = None):
  """Fits the ranking model; returns (model, history dict, warm-start report).

  ``with_rating`` defaults to whether the Transform output has a rating; ``items`` (the
  catalogue store negatives are sampled from) is read from the items split when not given.
  With ``base_model`` (the served ranking model) training starts from its weights.
  """
  optimizers.without_add_rewrites()
  if with_rating is None:
    with_rating = F.RATING_XF in tft_output.transformed_feature_spec()
  user_spec = data.side_spec(tft_output, F.USER_ID, F.USER_PREFIX)
  item_spec = data.side_spec(tft_output, F.ITEM_ID, F.ITEM_PREFIX)
  keys = user_spec.keys + item_spec.keys + ([F.RATING_XF] if with_rating else [])
  batches = data.transformed_batches(fn_args.train_files, tft_output, keys)
  every = _validation_every(config.validation_share)
  train_batches, valid_ds = batches, None
  if every:
    train_batches = data.every_nth_row(batches, every, held_out=False)
    valid_ds = data.rebatched(data.every_nth_row(batches, every, held_out=True), 4096,
                              shuffle=False)
  train_ds = data.rebatched(train_batches, config.batch_size, shuffle=True, seed=config.seed)
  mean, rating_range, rated = 0.0, None, None
  if with_rating:
    rated = data.columns(train_batches, [user_spec.id_key, item_spec.id_key, F.RATING_XF])
    ratings = rated[F.RATING_XF]
    if ratings.size:
      mean = float(ratings.mean())
      rating_range = (float(ratings.min()), float(ratings.max()))

  if items is None:
    _, items = build_stores(fn_args.train_files, tft_output)
  catalogue = item_features(items, tft_output.transform_features_layer(), item_spec)
  user_ids, item_ids = data.id_pairs(batches, user_spec.id_key, item_spec.id_key)
  counts = np.bincount(item_ids, minlength=item_spec.id_rows)
  counts[item_spec.id_rows - 2:] = 0  # the OOV rows stand for many items
  sampler = NegativeSampler(
      catalogue, item_spec.id_key, item_spec.id_rows,
      negative_probabilities(tf.reshape(catalogue[item_spec.id_key], [-1]).numpy(), counts,
                             config.negative_popularity_share),
      seen_keys=user_ids * item_spec.id_rows + item_ids)

  tf.random.set_seed(config.seed)
  model = RankingModel(user_spec, item_spec, config, mean_rating=mean, with_rating=with_rating,
                       sampler=sampler, rating_range=rating_range)
  report = None
  if base_model:
    model(next(iter(train_ds)))  # creates the variables
    report = warm_start.restore(model, model.row_vocabularies(), tft_output, base_model)
  if rated is not None:
    model.fit_rating_baseline(rated[user_spec.id_key].astype(np.int64),
                              rated[item_spec.id_key].astype(np.int64), rated[F.RATING_XF])
  model.compile(optimizer=optimizers.adam(config.learning_rate, config.lazy_embeddings))
  callbacks = training_callbacks(fn_args)
  if valid_ds is not None:
    monitor = ('val_root_mean_squared_error', 'min') if with_rating else ('val_auc', 'max')
    callbacks.append(keras.callbacks.EarlyStopping(
        monitor=monitor[0], mode=monitor[1], patience=config.patience,
        restore_best_weights=True))
  history = model.fit(train_ds, validation_data=valid_ds, epochs=config.epochs,
                      callbacks=callbacks, verbose=2)
  return model, {k: [float(v) for v in vals] for k, vals in history.history.items()}, report


def run_fn(fn_args) -> None:
  """TFX Trainer entry point (referenced as 'models.ranking.run_fn')."""
  custom = fn_args.custom_config or {}
  config = config_from_dict(RankingConfig, custom.get('ranking', {}))
  tft_output = tft.TFTransformOutput(fn_args.transform_output)
  users, items = build_stores(fn_args.train_files, tft_output)
  model, history, report = train(fn_args, tft_output, config, items=items,
                                 base_model=fn_args.base_model)
  warm_start.save(model, model.row_vocabularies(), tft_output, fn_args.serving_model_dir)
  warm_start.write_report(fn_args.model_run_dir, report)
  until, window = train_window(fn_args.train_files)
  serving = RankingServing(model, tft_output.transform_features_layer(), users, items,
                           recent_until=until, recent_window_days=window)
  tracing.save(serving, fn_args.serving_model_dir, signatures=serving.signatures())
  sample = min(8, len(users.ids.numpy()), len(items.ids.numpy()))
  user_ids = users.ids.numpy()[:sample].astype(bytes)
  item_ids = items.ids.numpy()[:sample].astype(bytes)
  write_warmup(fn_args.serving_model_dir, {
      SIGNATURE: {'user_id': user_ids, 'item_id': item_ids},
      RANK_AT_SIGNATURE: {'user_id': user_ids, 'item_id': item_ids,
                          F.REQUEST_TIME: np.full(sample, until, np.int64)},
      'serving_default': {'examples': serialized_examples(user_ids, item_ids)}})
  if custom.get(served.REFIT_KEY) and fn_args.base_model:
    # A refit: the next run's gates compare with the candidate, which never saw this eval.
    served.keep_candidate(fn_args.base_model, fn_args.serving_model_dir)
  data.write_history(fn_args.model_run_dir, history)
  logging.info('Ranking model exported to %s', fn_args.serving_model_dir)
