"""EngagementEvalExamples executor: eval interactions plus sampled non-interactions, labelled.

Implicit feedback (views, likes; no rating) has only positives, and an AUC needs negatives.
For every eval interaction (user, item) this writes the interaction with ``engaged`` = 1 and
``negatives`` pairs (user, random catalogue item) with ``engaged`` = 0, so that TFMA's
Evaluator can score the ranking model's engagement output with AUC. Items are sampled
uniformly from the catalogue (the items split), never the positive item itself; a sampled
item the user engaged with elsewhere is rare at catalogue scale and only makes the AUC
slightly pessimistic. Sampling is seeded per interaction, so a re-run writes the same rows.
"""
import os
import zlib
from typing import Any, Dict, Iterable, List

import apache_beam as beam
import numpy as np
import tensorflow as tf
from tfx import types
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils

from core import features as F

OUTPUT_SPLIT = F.EVAL
FILE_PREFIX = 'data_tfrecord'


def _example(user: bytes, item: bytes, engaged: int) -> bytes:
  return tf.train.Example(features=tf.train.Features(feature={
      F.USER_ID: tf.train.Feature(bytes_list=tf.train.BytesList(value=[user])),
      F.ITEM_ID: tf.train.Feature(bytes_list=tf.train.BytesList(value=[item])),
      F.ENGAGED: tf.train.Feature(int64_list=tf.train.Int64List(value=[engaged])),
  })).SerializeToString()


def _ids(record: bytes) -> tuple:
  feature = tf.train.Example.FromString(record).features.feature
  return (feature[F.USER_ID].bytes_list.value[0], feature[F.ITEM_ID].bytes_list.value[0])


def labelled_pairs(pair: tuple, catalogue: List[bytes], negatives: int,
                   seed: int) -> Iterable[bytes]:
  """The positive (user, item) and ``negatives`` sampled items for the same user."""
  user, item = pair
  yield _example(user, item, 1)
  others = len(catalogue) - (1 if item in catalogue else 0)
  if others < 1:
    return
  rng = np.random.default_rng([seed, zlib.crc32(user), zlib.crc32(item)])
  drawn = 0
  while drawn < negatives:
    candidate = catalogue[int(rng.integers(len(catalogue)))]
    if candidate != item:
      yield _example(user, candidate, 0)
      drawn += 1


def _item_id(record: bytes) -> bytes:
  return tf.train.Example.FromString(record).features.feature[F.ITEM_ID].bytes_list.value[0]


def _catalogue(item_ids: Iterable[bytes]) -> List[bytes]:
  ids = sorted(set(item_ids))
  if not ids:
    raise ValueError('the items split is empty: no catalogue to sample negatives from')
  return ids


class Executor(base_beam_executor.BaseBeamExecutor):
  """Writes the labelled eval split (positives and sampled negatives)."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    examples = artifact_utils.get_single_instance(input_dict['examples'])
    output = artifact_utils.get_single_instance(output_dict['labelled_examples'])
    negatives = int(exec_properties['negatives'])
    seed = int(exec_properties.get('seed') or 0)
    split_uri = lambda split: os.path.join(
        artifact_utils.get_split_uri([examples], split), '*')
    out_dir = os.path.join(output.uri, f'Split-{OUTPUT_SPLIT}')
    tf.io.gfile.makedirs(out_dir)
    output.split_names = artifact_utils.encode_split_names([OUTPUT_SPLIT])
    with self._make_beam_pipeline() as pipeline:
      catalogue = (pipeline
                   | 'ReadItems' >> beam.io.ReadFromTFRecord(
                       split_uri(F.ITEMS), compression_type=beam.io.filesystem.CompressionTypes.GZIP)
                   | 'ItemIds' >> beam.Map(_item_id)
                   | 'Catalogue' >> beam.combiners.ToList()
                   | 'Ids' >> beam.Map(_catalogue))
      _ = (pipeline
           | 'ReadEval' >> beam.io.ReadFromTFRecord(
               split_uri(F.EVAL), compression_type=beam.io.filesystem.CompressionTypes.GZIP)
           | 'Pairs' >> beam.Map(_ids)
           | 'Label' >> beam.FlatMap(labelled_pairs, beam.pvalue.AsSingleton(catalogue),
                                     negatives, seed)
           | 'Write' >> beam.io.WriteToTFRecord(
               os.path.join(out_dir, FILE_PREFIX), file_name_suffix='.gz',
               compression_type=beam.io.filesystem.CompressionTypes.GZIP))
