"""RetrievalEvaluator executor: TFX glue over models/evaluation.py.

Reads the ExampleGen splits and the candidate (and the served baseline) model's artifacts,
scores them with models.evaluation, and writes metrics.json and the ModelBlessing.
"""
import json
import os
from typing import Any, Dict, List

import numpy as np
import tensorflow as tf
from absl import logging
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils
from tfx.utils import path_utils

from core import features as F
from core import served
from core.artifacts import write_blessing
from models import data
from models.evaluation import (decide_blessing, evaluate_retrieval, read_eval_rows,
                               recent_popularity, sample_users, seen_items)

METRICS_FILE = 'metrics.json'


class Executor(base_executor.BaseExecutor):
  """Loads the model(s), scores the eval split, writes metrics.json and the blessing."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    examples = input_dict['examples']
    split_files = lambda split: [io_utils.all_files_pattern(uri) for uri in
                                 artifact_utils.get_split_uris(examples, split)]
    train = data.read_table(split_files(F.TRAIN), [F.USER_ID, F.ITEM_ID, F.TIMESTAMP])
    train = {F.USER_ID: train[F.USER_ID].astype(str), F.ITEM_ID: train[F.ITEM_ID].astype(str),
             F.TIMESTAMP: train[F.TIMESTAMP].astype(np.int64)}
    eval_rows = read_eval_rows(split_files(F.EVAL))
    eval_users, eval_items = eval_rows[F.USER_ID], eval_rows[F.ITEM_ID]
    catalogue = data.read_table(split_files(F.ITEMS), [F.ITEM_ID])[F.ITEM_ID].astype(str)
    rows = sample_users(eval_users, int(exec_properties.get('max_users') or 0))
    eval_users, eval_items = eval_users[rows], eval_items[rows]
    seen = seen_items(train[F.USER_ID], train[F.ITEM_ID], among=eval_users)
    # Each row is scored as requested at its own time (models/evaluation.py).
    eval_times = eval_rows[F.TIMESTAMP][rows]
    ks = json.loads(exec_properties['top_ks'])

    def score(model_artifact):
      model = tf.saved_model.load(path_utils.serving_model_path(model_artifact.uri))
      return evaluate_retrieval(model, eval_users, eval_items, catalogue, seen, ks, eval_times)

    model_artifact = artifact_utils.get_single_instance(input_dict['model'])
    metrics = score(model_artifact)
    # The served baseline; an empty one means nothing of this kind is served yet.
    baseline_artifacts = served.holding_models(input_dict.get('baseline_model'))
    baseline = score(baseline_artifacts[0]) if baseline_artifacts else None
    recent = recent_popularity(eval_users, eval_items, catalogue, seen, train)
    gate_recent = bool(int(exec_properties.get('beat_recent_popularity') or 0))
    decision = decide_blessing(metrics, baseline, float(exec_properties['min_top_100']),
                               float(exec_properties['max_top_100_drop']),
                               recent if gate_recent else None)
    metrics['recent_popularity'] = recent
    logging.info('Retrieval metrics %s; baseline %s; %s', metrics, baseline, decision)

    evaluation = artifact_utils.get_single_instance(output_dict['evaluation'])
    io_utils.write_string_file(
        os.path.join(evaluation.uri, METRICS_FILE),
        json.dumps({'metrics': metrics, 'baseline': baseline, **decision}, indent=2))

    blessing = artifact_utils.get_single_instance(output_dict['blessing'])
    if baseline_artifacts:
      blessing.set_string_custom_property('baseline_model', baseline_artifacts[0].uri)
      blessing.set_int_custom_property('baseline_model_id', baseline_artifacts[0].id)
      if baseline_artifacts[0].has_custom_property(served.SERVED_VERSION):
        blessing.set_string_custom_property(
            'baseline_version',
            baseline_artifacts[0].get_string_custom_property(served.SERVED_VERSION))
    write_blessing(blessing, decision['blessed'], decision['reasons'], model_artifact)
