"""Ranking stage: a TFRS rating model, and the Trainer's run_fn that trains and exports it.

The model is a biased factorisation (global, user and item biases plus a dot product of the
two sides' projections) with an MLP over both sides' ids and features; the biases capture
what plain MLPs learn slowly. Early stopping watches a held-out share of the training rows,
never the eval split.
"""
from typing import Dict, Optional

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs
import tensorflow_transform as tft
import tf_keras as keras
from absl import logging

from models import data, warm_start
from models.feature_store import FeatureStore, build_stores
from models.towers import Encoder, mlp
from models.warmup import write_warmup_requests
from pipeline import features as F
from pipeline.configs import RankingConfig, config_from_dict

SIGNATURE = 'rank'
OUTPUT = 'rating'


class RatingModel(tfrs.Model):
  """Predicts the rating of (user, item) from both sides' ids and features."""

  def __init__(self, user_spec: data.SideSpec, item_spec: data.SideSpec,
               config: RankingConfig, mean_rating: float = 3.5):
    super().__init__()
    reg = keras.regularizers.l2(config.l2) if config.l2 else None
    self.user_encoder = Encoder(user_spec, config.embedding_dim, l2=config.l2,
                                id_dropout=config.id_dropout, name='user')
    self.item_encoder = Encoder(item_spec, config.embedding_dim, l2=config.l2,
                                id_dropout=config.id_dropout, name='item')
    self.user_proj = keras.layers.Dense(config.embedding_dim, kernel_regularizer=reg)
    self.item_proj = keras.layers.Dense(config.embedding_dim, kernel_regularizer=reg)
    self.user_bias = keras.layers.Embedding(user_spec.id_rows, 1, embeddings_initializer='zeros',
                                            embeddings_regularizer=reg)
    self.item_bias = keras.layers.Embedding(item_spec.id_rows, 1, embeddings_initializer='zeros',
                                            embeddings_regularizer=reg)
    self.global_bias = tf.Variable(mean_rating, dtype=tf.float32, name='global_bias')
    self.head = mlp(config.hidden_units, 1, l2=config.l2, name='head')
    self.user_key, self.item_key = user_spec.id_key, item_spec.id_key
    self.task = tfrs.tasks.Ranking(loss=keras.losses.MeanSquaredError(),
                                   metrics=[keras.metrics.RootMeanSquaredError()])

  def call(self, features: Dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
    user = self.user_encoder(features, training=training)
    item = self.item_encoder(features, training=training)
    dot = tf.reduce_sum(self.user_proj(user) * self.item_proj(item), axis=1)
    biases = (tf.reshape(self.user_bias(tf.reshape(features[self.user_key], [-1])), [-1])
              + tf.reshape(self.item_bias(tf.reshape(features[self.item_key], [-1])), [-1]))
    deep = tf.reshape(self.head(tf.concat([user, item], axis=1), training=training), [-1])
    return self.global_bias + biases + dot + deep

  def row_vocabularies(self):
    """The vocabulary-indexed tables (biases included), for warm start."""
    out = warm_start.encoder_row_vocabularies([self.user_encoder, self.item_encoder])
    out[self.user_bias.embeddings.ref()] = self.user_encoder.spec.vocabularies[self.user_key]
    out[self.item_bias.embeddings.ref()] = self.item_encoder.spec.vocabularies[self.item_key]
    return out

  def compute_loss(self, features: Dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
    labels = tf.reshape(features[F.RATING_XF], [-1])
    return self.task(labels=labels, predictions=self(features, training=training))


class RankingServing(tf.Module):
  """What the ranking SavedModel holds: stores, the Transform layer and the rating model."""

  def __init__(self, model: RatingModel, tft_layer, users: FeatureStore, items: FeatureStore):
    super().__init__()
    self.model = model
    self.tft_layer = tft_layer
    self.users = users
    self.items = items

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='user_id'),
                                tf.TensorSpec([None], tf.string, name='item_id')])
  def rank(self, user_id, item_id):
    raw = dict(self.users.lookup(user_id))
    raw.update(self.items.lookup(item_id))
    return {OUTPUT: self.model(self.tft_layer(raw))}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='examples')])
  def serve_examples(self, examples):
    """serving_default for TFMA: serialized raw examples -> predicted rating."""
    parsed = tf.io.parse_example(examples, {
        F.USER_ID: tf.io.FixedLenFeature([], tf.string, default_value=''),
        F.ITEM_ID: tf.io.FixedLenFeature([], tf.string, default_value='')})
    return self.rank(parsed[F.USER_ID], parsed[F.ITEM_ID])

  def signatures(self):
    return {SIGNATURE: self.rank.get_concrete_function(),
            'serving_default': self.serve_examples.get_concrete_function()}


def _split_train_validation(rows: tf.data.Dataset, share: float):
  """Every 1/share-th row is held out for early stopping (never the eval split)."""
  every = max(2, int(round(1 / share))) if share > 0 else 0
  if not every:
    return rows, None
  enumerated = rows.enumerate()
  keep = lambda want: lambda i, x: tf.equal(i % every, 0) == want
  strip = lambda i, x: x
  return (enumerated.filter(keep(False)).map(strip),
          enumerated.filter(keep(True)).map(strip))


def train(fn_args, tft_output: tft.TFTransformOutput, config: RankingConfig,
          base_model: Optional[str] = None):
  """Fits the rating model; returns (model, history, warm-start report).

  With ``base_model`` (the latest blessed ranking model) training starts from its weights.
  """
  user_spec = data.side_spec(tft_output, F.USER_ID, F.USER_PREFIX)
  item_spec = data.side_spec(tft_output, F.ITEM_ID, F.ITEM_PREFIX)
  keys = user_spec.keys + item_spec.keys + [F.RATING_XF]
  rows = data.transformed_rows(fn_args.data_accessor, fn_args.train_files, tft_output, keys)
  train_rows, valid_rows = _split_train_validation(rows, config.validation_share)
  train_ds = (train_rows.shuffle(data.SHUFFLE_ROWS, seed=42, reshuffle_each_iteration=True)
              .batch(config.batch_size).prefetch(tf.data.AUTOTUNE))
  valid_ds = valid_rows.batch(4096) if valid_rows is not None else None
  total, count = train_rows.reduce(
      (0.0, 0.0), lambda acc, x: (acc[0] + tf.reshape(x[F.RATING_XF], []), acc[1] + 1.0))
  mean = float(total) / max(1.0, float(count))
  tf.random.set_seed(42)
  model = RatingModel(user_spec, item_spec, config, mean_rating=mean)
  report = None
  if base_model:
    model(next(iter(train_ds)))  # creates the variables
    report = warm_start.restore(model, model.row_vocabularies(), tft_output, base_model)
  model.compile(optimizer=keras.optimizers.Adam(config.learning_rate))
  callbacks = []
  if valid_ds is not None:
    callbacks.append(keras.callbacks.EarlyStopping(
        monitor='val_root_mean_squared_error', patience=config.patience,
        restore_best_weights=True))
  history = model.fit(train_ds, validation_data=valid_ds, epochs=config.epochs,
                      callbacks=callbacks, verbose=2)
  return model, {k: [float(v) for v in vals] for k, vals in history.history.items()}, report


def run_fn(fn_args) -> None:
  """TFX Trainer entry point (referenced as 'models.ranking.run_fn')."""
  custom = fn_args.custom_config or {}
  config = config_from_dict(RankingConfig, custom.get('ranking', {}))
  tft_output = tft.TFTransformOutput(fn_args.transform_output)
  if F.RATING_XF not in tft_output.transformed_feature_spec():
    raise ValueError('the interactions have no rating column: implicit feedback ranking is '
                     'not implemented yet')
  model, history, report = train(fn_args, tft_output, config, base_model=fn_args.base_model)
  warm_start.save(model, model.row_vocabularies(), tft_output, fn_args.serving_model_dir)
  warm_start.write_report(fn_args.model_run_dir, report)
  users, items = build_stores(fn_args.train_files, tft_output)
  serving = RankingServing(model, tft_output.transform_features_layer(), users, items)
  tf.saved_model.save(serving, fn_args.serving_model_dir, signatures=serving.signatures())
  sample = min(8, len(users.ids.numpy()), len(items.ids.numpy()))
  write_warmup_requests(fn_args.serving_model_dir, SIGNATURE,
                        {'user_id': users.ids.numpy()[:sample].astype(bytes),
                         'item_id': items.ids.numpy()[:sample].astype(bytes)})
  data.write_history(fn_args.model_run_dir, history)
  logging.info('Ranking model exported to %s', fn_args.serving_model_dir)
