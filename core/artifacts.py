"""Artifact helpers every component shares: blessings, and embedding ids in batches.

A ModelBlessing here is TFX's convention (the 'blessed' custom property, a BLESSED or
NOT_BLESSED file in its folder), so TFX's Pusher reads ours.
"""
import os
from typing import Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf
from tfx import types
from tfx.utils import io_utils

BLESSED_FILE = 'BLESSED'
NOT_BLESSED_FILE = 'NOT_BLESSED'


def is_blessed(blessing: types.Artifact) -> bool:
  """The 'blessed' custom property (TFX's convention), else the BLESSED file in its folder."""
  if blessing.has_custom_property('blessed'):
    return int(blessing.get_int_custom_property('blessed')) == 1
  return bool(blessing.uri) and os.path.exists(os.path.join(blessing.uri, BLESSED_FILE))


def upstream_reasons(blessings: Dict[str, Sequence[types.Artifact]]) -> List[str]:
  """Why the upstream blessings wired in (name -> artifacts, possibly empty) block a blessing."""
  reasons = []
  for name, artifacts in blessings.items():
    for artifact in artifacts or ():
      if not is_blessed(artifact):
        detail = artifact.get_string_custom_property('reasons') \
            if artifact.has_custom_property('reasons') else ''
        reasons.append(f'upstream {name} (artifact {artifact.id}, {artifact.uri}) is not '
                       f'blessed' + (f': {detail}' if detail else ''))
  return reasons


def write_blessing(blessing: types.Artifact, blessed: bool, reasons: Sequence[str],
                   model: Optional[types.Artifact] = None) -> None:
  """BLESSED/NOT_BLESSED file plus 'blessed', 'reasons', 'current_model(_id)' properties."""
  io_utils.write_string_file(
      os.path.join(blessing.uri, BLESSED_FILE if blessed else NOT_BLESSED_FILE), '')
  blessing.set_int_custom_property('blessed', int(bool(blessed)))
  if not blessed:
    blessing.set_string_custom_property('reasons', '; '.join(reasons) or 'not blessed')
  if model is not None:
    blessing.set_string_custom_property('current_model', model.uri)
    if model.id:  # an output model has no id until it is published
      blessing.set_int_custom_property('current_model_id', model.id)


def embed(fn, ids: np.ndarray, batch: int = 4096) -> np.ndarray:
  """[len(ids), d] float32: a one-input embedding signature called on ``batch`` ids at a
  time (a whole catalogue at once would hold every intermediate tensor in memory)."""
  parts = [fn(tf.constant(np.asarray(ids)[i:i + batch]))['embeddings'].numpy()
           for i in range(0, len(ids), batch)]
  return np.concatenate(parts).astype(np.float32) if parts else np.zeros([0, 0], np.float32)
