"""Feature encoders and towers shared by the retrieval and ranking models.

Models are built from a SideSpec discovered in the Transform output, so the same code serves
MovieLens and any data set with other feature columns. They know nothing of TFX and are
tested on tensors.
"""
from typing import Dict, List, Sequence

import tensorflow as tf
import tf_keras as keras

from models.data import SideSpec


class Encoder(keras.layers.Layer):
  """Concatenates the id embedding, feature embeddings and scaled numbers of one side."""

  def __init__(self, spec: SideSpec, dim: int, table_l2: float = 0.0, lazy: bool = True,
               id_dropout: float = 0.0, feature_dim: int = 16, **kwargs):
    super().__init__(**kwargs)
    self.spec = spec
    self.id_dropout = id_dropout
    # A new initializer per table: one unseeded instance would give every table the same values.
    init = lambda: keras.initializers.RandomNormal(stddev=0.05)
    self.id_embedding = keras.layers.Embedding(spec.id_rows, dim, embeddings_initializer=init(),
                                               name='id', **table_penalty(table_l2, lazy))
    self.categorical = {k: keras.layers.Embedding(rows, feature_dim, embeddings_initializer=init(),
                                                  name=k)
                        for k, rows in spec.categorical.items()}
    self.bags = {k: self.add_weight(name=k, shape=[rows, feature_dim], initializer=init())
                 for k, rows in spec.bags.items()}

  @property
  def oov_id(self) -> int:
    # The vocabulary has id_rows - 2 entries; index id_rows - 2 is its OOV bucket.
    return self.spec.id_rows - 2

  def call(self, features: Dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
    ids = tf.reshape(features[self.spec.id_key], [-1])
    if training and self.id_dropout > 0:
      drop = tf.random.uniform(tf.shape(ids)) < self.id_dropout
      ids = tf.where(drop, tf.cast(self.oov_id, ids.dtype), ids)
    parts = [self.id_embedding(ids)]
    for key, layer in self.categorical.items():
      parts.append(layer(tf.reshape(features[key], [-1])))
    for key, table in self.bags.items():
      bag = features[key]
      if not isinstance(bag, tf.sparse.SparseTensor):
        bag = tf.sparse.from_dense(bag)
      bag = tf.sparse.reset_shape(bag, [tf.shape(ids, out_type=tf.int64)[0], bag.dense_shape[1]])
      pooled = tf.nn.safe_embedding_lookup_sparse(table, bag, combiner='mean')
      parts.append(tf.reshape(pooled, [-1, table.shape[1]]))
    if self.spec.numeric:
      parts.append(tf.stack([tf.reshape(tf.cast(features[k], tf.float32), [-1])
                             for k in self.spec.numeric], axis=1))
    return tf.concat(parts, axis=1)


def table_penalty(l2: float, lazy: bool) -> Dict[str, keras.regularizers.Regularizer]:
  """Keras ``Embedding`` arguments for an L2 penalty of ``l2`` on an id table.

  Lazy: on the rows a batch looks up (``l2 * |row|^2`` averaged over the batch), so a row is
  pulled towards zero in proportion to how often it is seen and the gradient stays sparse
  (models/optimizers.py). Otherwise on the whole table at every step, which makes the
  gradient of every row dense and a step's cost grow with the catalogue.
  """
  if not l2:
    return {}
  key = 'activity_regularizer' if lazy else 'embeddings_regularizer'
  return {key: keras.regularizers.l2(l2)}


def mlp(units: Sequence[int], out_dim: int, l2: float = 0.0, name: str = None) -> keras.Sequential:
  reg = keras.regularizers.l2(l2) if l2 else None
  layers = [keras.layers.Dense(u, activation='relu', kernel_regularizer=reg) for u in units]
  layers.append(keras.layers.Dense(out_dim, kernel_regularizer=reg))
  return keras.Sequential(layers, name=name)


class Tower(keras.Model):
  """Encoder + MLP, L2-normalised: one side of the two-tower retrieval model."""

  def __init__(self, spec: SideSpec, dim: int, hidden: Sequence[int], l2: float = 0.0,
               table_l2: float = 0.0, lazy: bool = True, id_dropout: float = 0.0,
               normalize: bool = True, **kwargs):
    super().__init__(**kwargs)
    self.encoder = Encoder(spec, dim, table_l2=table_l2, lazy=lazy, id_dropout=id_dropout)
    self.mlp = mlp(hidden, dim, l2=l2)
    self.normalize = normalize

  def call(self, features, training=False):
    out = self.mlp(self.encoder(features, training=training), training=training)
    return tf.math.l2_normalize(out, axis=1) if self.normalize else out


class TowerEnsemble(keras.Model):
  """``members`` towers of one side, trained side by side (each against its own partner on
  the other side, models/retrieval.py): a seed ensemble inside one model, one input pipeline
  and one training step. Called, it returns the members' outputs side by side times
  ``scale``; with 1/K on the query side the dot product of two ensembles is the mean of the
  K pair scores, on the scale of a single pair.
  """

  def __init__(self, members: Sequence[Tower], scale: float = 1.0, **kwargs):
    super().__init__(**kwargs)
    self.members = list(members)
    self.scale = scale

  @property
  def encoder(self) -> Encoder:
    """The first member's encoder: every member has the same spec and OOV row."""
    return self.members[0].encoder

  def call(self, features, training=False):
    return tf.concat(member_outputs(self, features, training=training), axis=1) * self.scale


def members_of(tower) -> List[Tower]:
  """The towers of ``tower`` (a Tower is an ensemble of one)."""
  return tower.members if isinstance(tower, TowerEnsemble) else [tower]


def member_outputs(tower, features, training=False) -> List[tf.Tensor]:
  """The output of each member of ``tower``."""
  return [m(features, training=training) for m in members_of(tower)]


def towers(make, count: int, scale: bool, name: str):
  """One Tower from ``make(name)``, or a TowerEnsemble of ``count`` (scaled by 1/count when
  ``scale``). One tower keeps its plain structure (and its warm-start paths)."""
  if count <= 1:
    return make(name)
  return TowerEnsemble([make(f'{name}_{i}') for i in range(count)],
                       scale=1.0 / count if scale else 1.0, name=name)

