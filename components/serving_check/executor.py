"""ServingCheck executor: call the candidate SavedModel like a server would, then bless or not.

The model is loaded in a fresh Python process (``python -m components.serving_check.probe``)
that imports TensorFlow only, so a model that needs ops, Python objects or files it did not
bring along fails here and not in TF Serving. The probe sends sample requests (a known user,
a user known only from the users split, an unknown id, a batch of 1 and one of
``batch_size``; for ranking also known and unknown item ids), checks every answer and prints
a JSON report. The blessing is 1 only if every check passed and every upstream blessing
wired in is blessed; the report is kept as ``serving_check.json`` beside BLESSED /
NOT_BLESSED in the blessing artifact, and the reasons go to the log and to the blessing's
``reasons`` property.
"""
import json
import os
import subprocess
import sys
import tempfile
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from absl import logging
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils
from tfx.utils import path_utils

from core import features as F
from core.artifacts import (BLESSED_FILE, NOT_BLESSED_FILE, is_blessed,  # noqa: F401
                            upstream_reasons, write_blessing)

KINDS = ('retrieval', 'ranking', 'feed')
PROBE_MODULE = 'components.serving_check.probe'
REPORT_FILE = 'serving_check.json'
UNKNOWN_USER = '__serving_check_unknown_user__'
UNKNOWN_ITEM = '__serving_check_unknown_item__'
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# --- Requests --------------------------------------------------------------------------------

def _cycle(values: Sequence[str], n: int) -> List[str]:
  values = list(values)
  return [values[i % len(values)] for i in range(n)] if values else []


def probe_spec(kind: str, train_users: np.ndarray, train_items: np.ndarray,
               catalogue: np.ndarray, users: np.ndarray, batch_size: int = 256) -> Dict[str, Any]:
  """The probe's requests and what it needs to judge the answers (plain JSON data).

  Requests: ``known_user`` (the most active train user), ``new_user`` (in the users split
  with no train interaction, when there is one), ``unknown_user`` (an id in no split),
  ``batch_<batch_size>`` (train users in turn, then the new and the unknown user). For
  ranking, each user is paired with a catalogue item, plus ``unknown_item``.
  """
  if kind not in KINDS:
    raise ValueError(f'unknown kind {kind!r}; expected one of {KINDS}')
  train_users = np.asarray(train_users).astype(str)
  train_items = np.asarray(train_items).astype(str)
  catalogue = np.asarray(catalogue).astype(str)
  if not len(catalogue):
    raise ValueError('the items split is empty: nothing to check ids against')
  if not len(train_users):
    raise ValueError('the train split is empty: no known user to probe')
  known, counts = np.unique(train_users, return_counts=True)
  most_active = str(known[np.argmax(counts)])
  train_set = set(known.tolist())
  new_users = sorted(set(np.asarray(users).astype(str).tolist()) - train_set)
  unknown = UNKNOWN_USER
  while unknown in train_set or unknown in new_users:
    unknown += '_'
  unknown_item = UNKNOWN_ITEM
  catalogue_set = set(catalogue.tolist())
  while unknown_item in catalogue_set:
    unknown_item += '_'

  batch_users = _cycle(known.tolist(), max(0, batch_size - 2))
  batch_users += ([new_users[0]] if new_users else []) + [unknown]
  batch_users = _cycle(batch_users, batch_size)
  cases = [('known_user', [most_active]), ('unknown_user', [unknown]),
           (f'batch_{batch_size}', batch_users)]
  if new_users:
    cases.insert(1, ('new_user', [new_users[0]]))

  requests = []
  first_item = str(catalogue[0])
  for name, request_users in cases:
    request: Dict[str, Any] = {'name': name, 'user_id': request_users}
    if kind == 'ranking':
      request['item_id'] = ([first_item] if len(request_users) == 1
                            else _cycle(catalogue.tolist(), len(request_users)))
    requests.append(request)
  if kind == 'ranking':
    requests.append({'name': 'unknown_item', 'user_id': [most_active], 'item_id': [unknown_item]})
  if kind == 'retrieval':
    items = _cycle(catalogue.tolist(), min(batch_size, len(catalogue))) + [unknown_item]
    requests.append({'name': 'embed_items', 'item_id': items})

  probed = {u for r in requests for u in r.get('user_id', ())}
  seen: Dict[str, List[str]] = {}
  if kind == 'feed':
    for u, i in zip(train_users, train_items):
      if u in probed:
        seen.setdefault(u, []).append(i)
  return {'kind': kind, 'catalogue': catalogue.tolist(), 'requests': requests,
          'seen': {u: sorted(set(v)) for u, v in seen.items()}}


# --- The probe process -----------------------------------------------------------------------

def parse_report(stdout: str) -> Optional[Dict[str, Any]]:
  """The probe's report: the last stdout line that is a JSON object with 'checks'."""
  for line in reversed(stdout.strip().splitlines()):
    line = line.strip()
    if line.startswith('{'):
      try:
        report = json.loads(line)
      except ValueError:
        continue
      if isinstance(report, dict) and 'checks' in report:
        return report
  return None


def _failed(name: str, detail: str) -> Dict[str, Any]:
  return {'passed': False, 'checks': [{'name': name, 'passed': False, 'detail': detail}]}


def run_probe(model_dir: str, spec: Dict[str, Any], timeout_seconds: int = 600,
              load_scann: bool = False) -> Dict[str, Any]:
  """Runs the probe on ``model_dir`` in a fresh process; its report, or a failed one."""
  with tempfile.TemporaryDirectory(prefix='serving_check_') as tmp:
    spec_path = os.path.join(tmp, 'spec.json')
    with open(spec_path, 'w') as f:
      json.dump(spec, f)
    env = dict(os.environ, TF_USE_LEGACY_KERAS='1', TF_CPP_MIN_LOG_LEVEL='2')
    env['PYTHONPATH'] = os.pathsep.join(
        [REPO_ROOT] + ([env['PYTHONPATH']] if env.get('PYTHONPATH') else []))
    cmd = [sys.executable, '-m', PROBE_MODULE, '--model_dir', model_dir, '--spec', spec_path]
    if load_scann:
      cmd.append('--load_scann')
    try:
      proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_seconds,
                            env=env, check=False)
    except subprocess.TimeoutExpired:
      return _failed('probe', f'no answer within {timeout_seconds} s')
  report = parse_report(proc.stdout)
  if report is None:
    tail = (proc.stderr or proc.stdout or '').strip().splitlines()[-15:]
    return _failed('probe', f'the probe process exited with code {proc.returncode} and no '
                            'report: ' + ' | '.join(tail))
  return report


def failed_checks(report: Dict[str, Any]) -> List[str]:
  return [f"{c['name']}: {c.get('detail', '')}" for c in report.get('checks', [])
          if not c.get('passed')]


def _read(examples: Sequence[types.Artifact], split: str, keys: List[str]):
  from models import data
  files = [io_utils.all_files_pattern(uri)
           for uri in artifact_utils.get_split_uris(examples, split)]
  return data.read_table(files, keys)


class Executor(base_executor.BaseExecutor):
  """Probes the model in a fresh process; blesses it if all checks and upstreams pass."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    kind = exec_properties['kind']
    if kind not in KINDS:
      raise ValueError(f'unknown kind {kind!r}; expected one of {KINDS}')
    model = artifact_utils.get_single_instance(input_dict['model'])
    model_dir = path_utils.serving_model_path(model.uri)
    reasons = upstream_reasons({'model_blessing': input_dict.get('model_blessing') or [],
                                'extra_blessing': input_dict.get('extra_blessing') or []})
    if reasons:
      # A model that cannot be pushed is not probed (the feed to push is not even built).
      report = {'kind': kind, 'passed': False, 'checks': []}
    else:
      examples = input_dict['examples']
      train = _read(examples, F.TRAIN, [F.USER_ID, F.ITEM_ID])
      users, items = train[F.USER_ID].astype(str), train[F.ITEM_ID].astype(str)
      if kind == 'feed':  # the pushed feed leaves out every split, not only train
        evaluation = _read(examples, F.EVAL, [F.USER_ID, F.ITEM_ID])
        users = np.concatenate([users, evaluation[F.USER_ID].astype(str)])
        items = np.concatenate([items, evaluation[F.ITEM_ID].astype(str)])
      catalogue = _read(examples, F.ITEMS, [F.ITEM_ID])[F.ITEM_ID].astype(str)
      split_users = _read(examples, F.USERS, [F.USER_ID])[F.USER_ID]
      split_users = split_users[split_users != None].astype(str)  # noqa: E711 (object array)
      spec = probe_spec(kind, users, items, catalogue, split_users,
                        batch_size=int(exec_properties.get('batch_size') or 256))
      report = run_probe(model_dir, spec,
                         timeout_seconds=int(exec_properties.get('timeout_seconds') or 600),
                         load_scann=bool(exec_properties.get('load_scann') or 0))
      reasons = failed_checks(report)
    blessed = not reasons
    blessing = artifact_utils.get_single_instance(output_dict['blessing'])
    report = dict(report, blessed=blessed, reasons=reasons, model_dir=model_dir)
    io_utils.write_string_file(os.path.join(blessing.uri, REPORT_FILE),
                               json.dumps(report, indent=2))
    write_blessing(blessing, blessed, reasons, model)
    if blessed:
      logging.info('ServingCheck(%s): %s passed %d checks; blessed', kind, model_dir,
                   len(report.get('checks', [])))
    else:
      logging.warning('ServingCheck(%s): %s NOT blessed:\n  %s', kind, model_dir,
                      '\n  '.join(reasons))
