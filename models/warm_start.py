"""Warm start: a new model begins from the weights of the served model of its kind.

Each Trainer saves, inside its SavedModel (``assets.extra/warm_start/``, which TF Serving does
not read), the trainable weights of its Keras model keyed by their attribute path (stable
from one run to the next, unlike Keras variable names) and the vocabulary of every table
indexed by a vocabulary (ids, categorical features, bags). Being inside the SavedModel, the
state is pushed with it, so a served version alone is enough to warm-start from
(core/served.py); it adds about the size of the trainable weights to each pushed version.

When it starts from a base model, rows are matched by token: an id known to both runs keeps
what it learned, an id new in this span keeps its fresh initialisation, and the out-of-
vocabulary rows carry over. Weights whose shapes match are copied; any other weight (the
configuration changed) starts fresh and is listed in the report.
"""
import io
import json
import os
from typing import Any, Dict, Iterable, List, Optional, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from absl import logging

STATE_DIR = os.path.join('assets.extra', 'warm_start')
STATE_FILE = 'state.npz'
REPORT_FILE = 'warm_start.json'
_VOCAB_PREFIX = 'vocab:'


def _paths(model: tf.Module) -> List[Tuple[str, tf.Variable]]:
  """(attribute path, variable) of every trainable variable, one path each.

  Keras keeps each variable reachable through several attributes, some private; the path
  with the fewest private steps (then the shortest, then the first in order) is kept, e.g.
  ``query_tower/encoder/id_embedding/embeddings``. It depends only on the model's structure,
  so it is the same in every run.
  """
  trainable = {v.ref() for v in model.trainable_variables}
  found = {}
  for path, var in model._flatten(  # pylint: disable=protected-access
      predicate=lambda v: isinstance(v, tf.Variable), with_path=True):
    if var.ref() not in trainable:
      continue
    key = '/'.join(str(p) for p in path)
    rank = (sum(str(p).startswith('_') for p in path), len(path), key)
    if var.ref() not in found or rank < found[var.ref()][0]:
      found[var.ref()] = (rank, key, var)
  return sorted(((key, var) for _, key, var in found.values()), key=lambda kv: kv[0])


def state_dir(serving_model_dir: str) -> str:
  """Where a Trainer keeps its warm-start state: in the SavedModel, so that it is pushed."""
  return os.path.join(serving_model_dir.rstrip('/'), STATE_DIR)


def save(model: tf.Module, row_vocabularies: Dict[Any, str],
         tft_output: tft.TFTransformOutput, serving_model_dir: str) -> str:
  """Writes the model's weights and the vocabularies of its vocabulary-indexed tables."""
  arrays: Dict[str, np.ndarray] = {}
  vocab_of: Dict[str, str] = {}
  for key, var in _paths(model):
    arrays[key] = var.numpy()
    if var.ref() in row_vocabularies:
      vocab_of[key] = row_vocabularies[var.ref()]
  for name in sorted(set(vocab_of.values())):
    tokens = tft_output.vocabulary_by_name(name)
    arrays[_VOCAB_PREFIX + name] = np.array(
        [t if isinstance(t, bytes) else str(t).encode() for t in tokens], dtype=object)
  arrays['__vocab_of__'] = np.array(json.dumps(vocab_of))
  folder = state_dir(serving_model_dir)
  tf.io.gfile.makedirs(folder)
  path = os.path.join(folder, STATE_FILE)
  buffer = io.BytesIO()  # zip needs a seekable file; GFile may be a bucket object
  np.savez(buffer, **arrays)
  with tf.io.gfile.GFile(path, 'wb') as f:
    f.write(buffer.getvalue())
  return path


def remap_rows(new: np.ndarray, old: np.ndarray, new_tokens: List[bytes],
               old_tokens: List[bytes]) -> Tuple[np.ndarray, int, int]:
  """Rows of ``old`` moved to the positions of the same tokens in ``new``.

  Rows past the vocabulary (out-of-vocabulary and spare rows) are aligned from the end.
  Returns (rows, kept, fresh): how many vocabulary rows came from ``old`` and how many are new.
  """
  out = new.copy()
  index = {t: i for i, t in enumerate(old_tokens)}
  kept = 0
  for i, token in enumerate(new_tokens):
    j = index.get(token)
    if j is not None and i < len(out) and j < len(old):
      out[i] = old[j]
      kept += 1
  tail_new, tail_old = len(out) - len(new_tokens), len(old) - len(old_tokens)
  for t in range(1, min(tail_new, tail_old) + 1):
    out[-t] = old[-t]
  return out, kept, len(new_tokens) - kept


def restore(model: tf.Module, row_vocabularies: Dict[Any, str],
            tft_output: tft.TFTransformOutput, base_model: str) -> Optional[Dict[str, Any]]:
  """Loads the base model's state into ``model`` (already built); returns a report.

  Returns None when the base model has no warm-start state (e.g. trained before warm start
  existed); the caller then trains from scratch.
  """
  if not tf.io.gfile.exists(base_model):
    logging.info('No base model at %s (nothing served yet); training from scratch', base_model)
    return None
  path = os.path.join(state_dir(base_model), STATE_FILE)
  if not tf.io.gfile.exists(path):
    logging.warning('No warm-start state at %s; training from scratch', path)
    return None
  with tf.io.gfile.GFile(path, 'rb') as f:
    loaded = np.load(io.BytesIO(f.read()), allow_pickle=True)
    saved = {k: loaded[k] for k in loaded.files}
  old_vocab_of = json.loads(str(saved.pop('__vocab_of__')))
  report: Dict[str, Any] = {'base_model': base_model, 'copied': 0, 'remapped': 0,
                            'fresh': [], 'rows_kept': {}, 'rows_new': {}}
  vocab_cache: Dict[str, List[bytes]] = {}

  def new_tokens(name: str) -> List[bytes]:
    if name not in vocab_cache:
      vocab_cache[name] = [t if isinstance(t, bytes) else str(t).encode()
                           for t in tft_output.vocabulary_by_name(name)]
    return vocab_cache[name]

  for key, var in _paths(model):
    old = saved.get(key)
    vocab = row_vocabularies.get(var.ref())
    if old is None:
      report['fresh'].append(key)
    elif vocab and old_vocab_of.get(key) == vocab and old.shape[1:] == tuple(var.shape[1:]):
      rows, kept, fresh = remap_rows(var.numpy(), old, new_tokens(vocab),
                                     list(saved[_VOCAB_PREFIX + vocab]))
      var.assign(rows)
      report['remapped'] += 1
      report['rows_kept'][key], report['rows_new'][key] = kept, fresh
    elif old.shape == tuple(var.shape):
      var.assign(old)
      report['copied'] += 1
    else:
      report['fresh'].append(key)
  logging.info('Warm start from %s: %d copied, %d remapped, fresh: %s', base_model,
               report['copied'], report['remapped'], report['fresh'])
  return report


def write_report(model_run_dir: str, report: Optional[Dict[str, Any]]) -> None:
  """Keeps what the warm start did in the ModelRun artifact (the run summary reads it)."""
  tf.io.gfile.makedirs(model_run_dir)
  with tf.io.gfile.GFile(os.path.join(model_run_dir, REPORT_FILE), 'w') as f:
    json.dump(report or {'base_model': None}, f)


def encoder_row_vocabularies(encoders: Iterable[Any]) -> Dict[Any, str]:
  """{variable ref: vocabulary name} of the vocabulary-indexed tables of ``Encoder``s."""
  out = {}
  for encoder in encoders:
    spec = encoder.spec
    out[encoder.id_embedding.embeddings.ref()] = spec.vocabularies[spec.id_key]
    for key, layer in encoder.categorical.items():
      if key in spec.vocabularies:
        out[layer.embeddings.ref()] = spec.vocabularies[key]
    for key, table in encoder.bags.items():
      if key in spec.vocabularies:
        out[table.ref()] = spec.vocabularies[key]
  return out
