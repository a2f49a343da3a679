"""What production serves now, as the baseline of the next run.

The serving directory (``<serving_dir>/<kind>/<numeric version>/``, written only by the one
publisher in core/publish.py) is the record of what is served: TF Serving loads the highest
complete version of each kind. A run's baselines are read from there, rather than from ML
Metadata, so that every orchestrator finds the same model and no baseline can be a model of
the other kind: each kind has its own folder.

A baseline is a copy of the served version taken at the start of the run (a later push cannot
change a run's baseline halfway, and a version removed from serving meanwhile still scores);
``None`` means nothing is served yet. Every file operation goes through TFX's fileio
(tf.io.gfile), so the serving directory may be local or ``gs://``.
"""
import os
import re
from typing import Optional

from tfx.dsl.io import fileio
from tfx.utils import io_utils
from tfx.utils import path_utils

from core import publish

# Custom properties of a served-model artifact and the exec property its driver adds.
SERVED_VERSION = 'served_version'
SERVED_PATH = 'served_path'
# Inside a served refit: the candidate it was refitted from (keep_candidate). The refit learnt
# its run's eval rows, and the next run's eval window holds some of them again when spans
# overlap in time (cumulative snapshots), so it would be judged on answers it learnt and
# refuse every new candidate; its candidate never saw them and is what the gates compare with.
# Under assets.extra, which TF Serving does not load.
CANDIDATE_DIR = os.path.join('assets.extra', 'candidate')
# The Trainer custom_config key that makes a run_fn keep its base model (the candidate) so.
REFIT_KEY = 'refit'


def latest_served(served_dir: str, ops: Optional[publish.FileOps] = None) -> Optional[str]:
  """The version (a numeric folder name) that TF Serving serves from ``served_dir``: the
  highest one with its ``saved_model.pb``. A hidden ``.incoming-*`` folder (a publication in
  progress) and a version still being copied on an object store (no ``saved_model.pb`` yet)
  are not served, so they are skipped. None when nothing is served."""
  path = publish.latest_version(served_dir, ops=ops)
  return os.path.basename(path) if path else None


def has_model(model_dir: str) -> bool:
  """True when ``model_dir`` holds a SavedModel (a served-model snapshot of "nothing served"
  is an empty artifact)."""
  return bool(model_dir) and fileio.exists(os.path.join(model_dir, publish.SAVED_MODEL_PB))


def holding_models(artifacts) -> list:
  """The Model artifacts (e.g. baselines) that hold a SavedModel in a Trainer's layout: a
  snapshot of "nothing served" is left out."""
  return [a for a in artifacts or () if has_model(path_utils.serving_model_path(a.uri))]


def keep_candidate(candidate_dir: str, serving_model_dir: str) -> None:
  """Copies the candidate a refit was trained from into the refit's export, so that the
  version pushed carries what the next run's gates compare with (gate_source)."""
  if not has_model(candidate_dir):
    raise FileNotFoundError(f'{candidate_dir}: no candidate SavedModel to keep in the refit')
  io_utils.copy_dir(candidate_dir, os.path.join(serving_model_dir, CANDIDATE_DIR))


def gate_source(version_dir: str) -> str:
  """What the gates compare the next candidates with: the candidate kept inside a served
  refit, else the served version itself."""
  candidate = os.path.join(version_dir, CANDIDATE_DIR)
  return candidate if has_model(candidate) else version_dir


def snapshot(served_dir: str, dest: str, version: Optional[str] = None,
             for_gates: bool = False) -> Optional[str]:
  """Copies the served version of ``served_dir`` into ``dest`` and returns the path copied;
  None (``dest`` left empty) when nothing is served.

  ``version``: the version to copy, as found earlier in the same run (the local driver reads
  it to key the cache); '' means it found nothing served. None: find it now.
  ``for_gates``: copy what the gates compare with (gate_source) instead of the version.
  """
  if version is None:
    version = latest_served(served_dir)
  if not version:
    return None
  source = os.path.join(served_dir, version)
  if not has_model(source):
    raise FileNotFoundError(f'served version {source} has no {publish.SAVED_MODEL_PB} '
                            f'(removed since the run started?)')
  if for_gates:
    source = gate_source(source)
    io_utils.copy_dir(source, dest)
  else:
    # Warm start reads the refit itself; its kept candidate is what the gate copy is for.
    kept = '^' + re.escape(os.path.join(source, CANDIDATE_DIR)) + '(/|$)'
    io_utils.copy_dir(source, dest, deny_regex_patterns=[kept])
  return source
