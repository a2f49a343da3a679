"""UserSegmenter executor: the TFX glue of models/segments.py.

Reads the Examples and Model artifacts, segments the users with the library (embed_users,
choose_k, cluster, describe_segments), writes segments.csv/json into the output artifact
and publishes them when the model is blessed and, if a Pusher is wired in, pushed.
"""
import json
import os
from typing import Any, Dict, List, Tuple

import tensorflow as tf
from absl import logging
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils
from tfx.utils import path_utils

from core import features as F
from models import data
from models import segments as S


def _was_pushed(pushed_model: Any) -> bool:
  return (pushed_model.has_custom_property('pushed')
          and pushed_model.get_int_custom_property('pushed') == 1)


def _blessed(blessings: List[Any], model_uri: str) -> Tuple[bool, str]:
  """Whether to publish: no blessing given, or a positive one of this very model."""
  if not blessings:
    return True, 'no blessing given'
  blessing = blessings[0]
  if blessing.get_int_custom_property('blessed') != 1:
    return False, 'the model is not blessed'
  current = blessing.get_string_custom_property('current_model')
  if current and current.rstrip('/') != model_uri.rstrip('/'):
    return False, f'the blessing is of another model ({current})'
  return True, 'blessed'


class Executor(base_executor.BaseExecutor):
  """Embeds the users, clusters them, writes segments.csv/json and publishes if blessed."""

  def Do(self, input_dict: Dict[str, List[Any]], output_dict: Dict[str, List[Any]],
         exec_properties: Dict[str, Any]) -> None:
    examples = input_dict['examples']
    files = lambda split: [io_utils.all_files_pattern(uri) for uri in
                           artifact_utils.get_split_uris(examples, split)]
    users = S.read_side(files(F.USERS), F.USER_ID, F.USER_PREFIX)
    items = S.read_side(files(F.ITEMS), F.ITEM_ID, F.ITEM_PREFIX)
    train = data.read_table(files(F.TRAIN), [F.USER_ID, F.ITEM_ID])
    user_ids = users[F.USER_ID].astype(str)

    model_artifact = artifact_utils.get_single_instance(input_dict['model'])
    model = tf.saved_model.load(path_utils.serving_model_path(model_artifact.uri))
    embeddings = S.embed_users(model, user_ids)

    seed = int(exec_properties.get('seed') or 0)
    requested = int(exec_properties.get('num_segments') or 0)
    if requested > 0:
      k, silhouettes = requested, {}
    else:
      k, silhouettes = S.choose_k(embeddings, seed)
    labels = S.cluster(embeddings, k, seed)
    k = int(labels.max()) + 1 if len(labels) else 0
    segments = S.describe_segments(user_ids, labels, users, items,
                                   train[F.USER_ID].astype(str), train[F.ITEM_ID].astype(str))
    S.name_items(segments, model.signatures.get('display'))
    pushed_models = input_dict.get('pushed_model') or []
    retrieval_version = (pushed_models[0].get_string_custom_property('pushed_version')
                         if pushed_models and _was_pushed(pushed_models[0]) else None)
    summary = {
        'model': model_artifact.uri,
        'retrieval_version': retrieval_version,
        'num_segments': k,
        'chosen_by': 'given' if requested > 0 else 'silhouette',
        'silhouette': {str(key): round(v, 4) for key, v in silhouettes.items()},
        'users': int(len(user_ids)),
        'train_interactions': int(len(train[F.USER_ID])),
        'segments': segments,
    }
    texts = {S.SEGMENTS_CSV: S.segments_csv(user_ids, labels),
             S.SEGMENTS_JSON: json.dumps(summary, indent=2)}
    output = artifact_utils.get_single_instance(output_dict['segments'])
    for name, text in texts.items():
      io_utils.write_string_file(os.path.join(output.uri, name), text)
    output.set_int_custom_property('num_segments', k)
    output.set_string_custom_property('model', model_artifact.uri)

    push_dir = exec_properties.get('push_dir') or ''
    ok, why = _blessed(input_dict.get('blessing') or [], model_artifact.uri)
    if ok and pushed_models and retrieval_version is None:
      ok, why = False, 'the retrieval model was not pushed'
    pushed = ''
    if push_dir and ok:
      pushed = S.publish(push_dir, texts)
    output.set_int_custom_property('pushed', int(bool(pushed)))
    output.set_string_custom_property('pushed_destination', pushed)
    logging.info('UserSegmenter: %d users in %d segments (silhouette %s); published: %s (%s)',
                 len(user_ids), k, summary['silhouette'], pushed or 'no', why)
