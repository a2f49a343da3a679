"""Imports point one way: core <- models, transforms <- components <- pipeline and runners.

The Transform and Trainers' cached results depend on a fingerprint of the code they run; a
change to the report, a CLI or the pipeline definition must not invalidate them.
"""
import ast
import os
import shutil

import pytest

from pipeline import pipeline as P
from tests.helpers import REPO

# Each layer and the project packages it may import.
ALLOWED = {
    'core': {'core'},
    'transforms': {'core', 'transforms'},
    'models': {'core', 'models'},
    'components': {'core', 'models', 'transforms', 'components'},
}
PROJECT = {'core', 'models', 'transforms', 'components', 'pipeline', 'benchmarks', 'tests',
           'local_runner', 'kubeflow_v2_runner'}


def _imports(path):
  with open(path, encoding='utf-8') as f:
    tree = ast.parse(f.read(), path)
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      yield from (alias.name.split('.')[0] for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
      yield node.module.split('.')[0]


@pytest.mark.parametrize('layer', sorted(ALLOWED))
def test_lower_layers_never_import_the_layers_above(layer):
  wrong = []
  for folder, _, names in os.walk(os.path.join(REPO, layer)):
    for name in names:
      if name.endswith('.py'):
        path = os.path.join(folder, name)
        wrong += [(os.path.relpath(path, REPO), module) for module in _imports(path)
                  if module in PROJECT and module not in ALLOWED[layer]]
  assert not wrong, wrong


def test_the_trainers_code_fingerprint_ignores_the_report_and_the_pipeline(tmp_path):
  for package in ('core', 'models', 'transforms', 'components', 'pipeline'):
    shutil.copytree(os.path.join(REPO, package), tmp_path / package,
                    ignore=shutil.ignore_patterns('__pycache__'))
  fingerprints = lambda: {name: P.code_fingerprint(*packages, root=str(tmp_path))
                          for name, packages in (('transform', P.TRANSFORM_CODE),
                                                 ('trainer', P.TRAINER_CODE),
                                                 ('components', P.COMPONENT_CODE))}
  before = fingerprints()
  with open(tmp_path / 'pipeline' / 'report.py', 'a') as f:
    f.write('\n# an edit to the report\n')
  with open(tmp_path / 'pipeline' / 'pipeline.py', 'a') as f:
    f.write('\n# an edit to the pipeline definition\n')
  assert fingerprints() == before
  with open(tmp_path / 'transforms' / 'ingestion.py', 'a') as f:
    f.write('\n# an edit to the ingestion, which the Transform does not run\n')
  assert fingerprints() == before
  with open(tmp_path / 'transforms' / 'preprocessing.py', 'a') as f:
    f.write('\n# an edit to preprocessing_fn\n')
  assert fingerprints()['transform'] != before['transform']
  before = fingerprints()
  with open(tmp_path / 'core' / 'features.py', 'a') as f:
    f.write('\n# an edit to the names every stage shares\n')
  after = fingerprints()
  assert all(after[name] != before[name] for name in before)
  with open(tmp_path / 'models' / 'ranking.py', 'a') as f:
    f.write('\n# an edit to a model\n')
  assert fingerprints()['transform'] == after['transform']
  assert fingerprints()['trainer'] != after['trainer']
