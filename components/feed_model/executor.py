"""FeedModelBuilder executor: builds the candidate feed and the feed to push, then scores
the candidate.

The feed model itself, its metrics and its exclusions are models/feed.py; this reads the
artifacts, calls it and writes the outputs.
"""
import ctypes
import gc
import json
import os
from typing import Any, Dict, List, Optional

import tensorflow as tf
from absl import logging
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils
from tfx.utils import path_utils

from core.artifacts import embed, upstream_reasons, write_blessing
from models.feed import (FEED_DEFAULTS, METRICS_FILE, build_feed, evaluate_feed,
                         read_feed_data, save_feed, served_exclusions)


def _load(retrieval: types.Artifact, ranking: types.Artifact, catalogue):
  """The two stages' SavedModels and the catalogue's embeddings under the retrieval one
  (computed once per retrieval model, shared by the feeds built from it)."""
  loaded = (tf.saved_model.load(path_utils.serving_model_path(retrieval.uri)),
            tf.saved_model.load(path_utils.serving_model_path(ranking.uri)))
  return loaded, embed(loaded[0].signatures['embed_items'], catalogue)


def _release() -> None:
  """Frees what was dropped of loaded SavedModels and feed modules: their objects refer to
  each other, so reference counting alone leaves their variables and tables in memory beside
  the next ones until a collection. Then gives the freed heap back to the system: glibc keeps
  it, and the large arrays allocated next are mapped afresh beside it rather than reusing it."""
  gc.collect()
  try:
    ctypes.CDLL('libc.so.6').malloc_trim(0)
  except (OSError, AttributeError):  # not glibc: nothing to trim
    pass


def _export_candidate(loaded, feed_data, settings: Dict[str, Any], export_dir: str
                      ) -> Dict[str, Any]:
  """The candidate leaves out the train split only: scored on eval, as a model must be."""
  module, info = build_feed(*loaded, feed_data, **settings)
  save_feed(module, export_dir, feed_data, settings['index'])
  return info


def _export_served(loaded, feed_data, settings: Dict[str, Any], export_dir: str,
                   served_dir: Optional[str]) -> Dict[str, Any]:
  """What is pushed leaves out everything known now: every split, earlier spans."""
  pairs, carried = served_exclusions(feed_data, served_dir)
  module, info = build_feed(*loaded, feed_data, exclude=pairs, **settings)
  del pairs  # in the module now, as keys
  save_feed(module, export_dir, feed_data, settings['index'])
  return dict(info, **carried)


class Executor(base_executor.BaseExecutor):
  """Builds the candidate feed; once both stages are blessed, builds the feed that is pushed,
  which differs from the candidate in what it leaves out and, after a refit, in its two
  models; then scores the candidate."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    retrieval = artifact_utils.get_single_instance(input_dict['retrieval_model'])
    ranking = artifact_utils.get_single_instance(input_dict['ranking_model'])
    feed_data = read_feed_data(input_dict['examples'])
    _release()  # what reading made: a Python string per value
    model = artifact_utils.get_single_instance(output_dict['model'])
    candidate = artifact_utils.get_single_instance(output_dict['candidate'])
    settings = dict(
        k=int(exec_properties.get('k') or 10),
        candidates=int(exec_properties.get('candidates') or 100),
        index=exec_properties.get('index') or 'brute_force',
        margin_cap=int(exec_properties.get('margin_cap') or 1000),
        order_by=exec_properties.get('order_by') or FEED_DEFAULTS.order_by,
        retrieval_weight=float(exec_properties.get('retrieval_weight')
                               if exec_properties.get('retrieval_weight') is not None
                               else FEED_DEFAULTS.retrieval_weight))
    loaded, settings['item_embeddings'] = _load(retrieval, ranking, feed_data.catalogue)
    # The feed to push is built from the pushed models when they are others (a refit).
    pushed = (artifact_utils.get_single_instance(input_dict.get('pushed_retrieval_model') or
                                                 [retrieval]),
              artifact_utils.get_single_instance(input_dict.get('pushed_ranking_model') or
                                                 [ranking]))
    for artifact, sources in ((candidate, (retrieval, ranking)), (model, pushed)):
      for key, source in zip(('retrieval_model', 'ranking_model'), sources):
        artifact.set_string_custom_property(key, source.uri)
        if source.id:
          artifact.set_int_custom_property(key + '_id', source.id)

    candidate_dir = path_utils.serving_model_path(candidate.uri)
    info = _export_candidate(loaded, feed_data, settings, candidate_dir)
    _release()
    reasons = upstream_reasons({
        'retrieval_blessing': input_dict.get('retrieval_blessing') or [],
        'ranking_blessing': input_dict.get('ranking_blessing') or []})
    served = None
    if not reasons:
      if pushed[0] is not retrieval or pushed[1] is not ranking:
        loaded = settings['item_embeddings'] = None
        _release()  # the judged models go before their refit is loaded
        loaded, settings['item_embeddings'] = _load(*pushed, feed_data.catalogue)
      served = _export_served(loaded, feed_data, settings,
                              path_utils.serving_model_path(model.uri),
                              exec_properties.get('served_dir') or None)
      logging.info('Feed to push exported: %s', served)
    # The candidate is scored from its export, loaded once the models and feeds built here
    # are gone: the export holds copies of their variables.
    del loaded, settings
    _release()
    metrics = evaluate_feed(candidate_dir, feed_data,
                            max_users=int(exec_properties.get('max_eval_users') or 0))
    metrics.update(info)
    if served is not None:
      metrics['served'] = served
    logging.info('Feed metrics (candidate): %s', metrics)
    evaluation = artifact_utils.get_single_instance(output_dict['evaluation'])
    io_utils.write_string_file(os.path.join(evaluation.uri, METRICS_FILE),
                               json.dumps(metrics, indent=2))
    blessing = artifact_utils.get_single_instance(output_dict['blessing'])
    write_blessing(blessing, not reasons, reasons, model)
    if reasons:
      logging.warning('Feed model NOT blessed, nothing to push: %s', '; '.join(reasons))
