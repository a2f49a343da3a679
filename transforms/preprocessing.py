"""preprocessing_fn: vocabularies, scaling and multi-value splitting, discovered from the data.

The features are not listed anywhere: every raw key prefixed ``user__`` or ``item__`` (see
core/features.py) is a feature of that side, text keys are categorical (``|`` separates
values), numeric keys are scaled. The outputs are dense ids and numbers, and sparse bags of
token ids for categorical columns, so the models can embed them without knowing the data set.

Vocabularies of user and item ids are computed on the training interactions: an id that never
appears in training maps to the out-of-vocabulary row, and such a user or item is served from
its features (cold start).
"""
from typing import Any, Dict, Optional

import tensorflow as tf
import tensorflow_transform as tft
from tensorflow_transform import schema_inference

from core import features as F
from core.configs import TransformConfig

# The Transform's settings and their defaults are TransformConfig's (core/configs.py).
DEFAULT_CONFIG = TransformConfig().to_dict()


def _dense(x: tf.Tensor, default: Any) -> tf.Tensor:
  """A [batch] dense tensor from a [batch, 0..1] sparse or [batch, 1] dense input."""
  if isinstance(x, tf.sparse.SparseTensor):
    x = tf.sparse.to_dense(
        tf.sparse.reset_shape(x, [x.dense_shape[0], 1]), default_value=default)
  return tf.reshape(x, [-1])


def _tokens(text: tf.Tensor) -> tf.sparse.SparseTensor:
  """Splits ``a|b`` values into a sparse [batch, n] bag of non-empty tokens."""
  parts = tf.strings.strip(tf.strings.split(text, sep=F.MULTI_VALUE_SEPARATOR))
  parts = tf.ragged.boolean_mask(parts, tf.strings.length(parts) > 0)
  return parts.to_sparse()


def preprocessing_fn(inputs: Dict[str, Any],
                     custom_config: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
  """tf.Transform entry point (TFX passes the pipeline's custom_config)."""
  config = dict(DEFAULT_CONFIG, **(custom_config or {}))
  outputs: Dict[str, Any] = {}

  for key in (F.USER_ID, F.ITEM_ID):
    ids = _dense(inputs[key], default='')
    outputs[F.transformed_name(key)] = tft.compute_and_apply_vocabulary(
        ids, num_oov_buckets=1, vocab_filename=F.vocabulary_name(key))
  # Item counts in training: the popularity correction of the retrieval loss needs them.
  tft.vocabulary(_dense(inputs[F.ITEM_ID], default=''), vocab_filename=F.ITEM_COUNT_VOCAB,
                 store_frequency=True)

  if F.RATING in inputs:
    outputs[F.RATING_XF] = tf.cast(_dense(inputs[F.RATING], default=0.0), tf.float32)

  for key in sorted(inputs):
    if not (F.is_user_feature(key) or F.is_item_feature(key)):
      continue
    value = inputs[key]
    if value.dtype == tf.string:
      outputs[F.transformed_name(key)] = tft.compute_and_apply_vocabulary(
          _tokens(_dense(value, default='')), num_oov_buckets=1,
          top_k=int(config['vocab_top_k']), vocab_filename=F.vocabulary_name(key))
    else:
      value = tf.cast(value, tf.float32)
      # Missing numbers become the mean (z-score 0) and a bucket of their own.
      outputs[F.transformed_name(key)] = _dense(tft.scale_to_z_score(value), default=0.0)
      buckets = int(config['numeric_buckets'])
      bucketized = tft.bucketize(value, num_buckets=buckets)
      bucket = _dense(bucketized, default=tf.constant(buckets, tf.int64))
      # Record the domain (buckets plus "missing") so the trainers can size the embedding.
      schema_inference.set_tensor_schema_override(
          bucket, tf.constant(0, tf.int64), tf.constant(buckets, tf.int64))
      outputs[F.transformed_name(key + '_bucket')] = bucket
  return outputs
