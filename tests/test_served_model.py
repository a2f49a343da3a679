"""The baselines: what production serves of each kind, read from the serving directory.

Executor and driver on tmp_path (nothing served, the highest of two versions, a publication
in progress), the empty baseline left out by both evaluators' executors, and the local cache
keyed on the served version (a one-node pipeline run three times).
"""
import os

import pytest
from tfx import v1 as tfx
from tfx.components.evaluator import executor as tfx_evaluator
from tfx.orchestration import metadata
from tfx.orchestration.portable import data_types
from tfx.types import standard_artifacts

from components.served_model import driver as served_driver
from components.served_model import evaluator_executor
from components.served_model import executor as served_executor
from components.served_model.component import ServedModel
from core import served
from models import warm_start

STATE = os.path.join(warm_start.STATE_DIR, warm_start.STATE_FILE)


def _version(base, name, complete=True):
  """A pushed version as the publisher leaves it: the SavedModel with its warm-start state."""
  folder = os.path.join(str(base), name)
  os.makedirs(os.path.join(folder, 'variables'))
  os.makedirs(os.path.join(folder, warm_start.STATE_DIR))
  names = ['variables/variables.index', STATE] + (['saved_model.pb'] if complete else [])
  for rel in names:
    with open(os.path.join(folder, rel), 'w') as f:
      f.write(f'{name}:{rel}')
  return folder


def _run(served_dir, out, version=None, gate_out=None):
  """The executor's ``model`` (and ``gate_model`` when ``gate_out`` is given)."""
  model = standard_artifacts.Model()
  model.uri = str(out)
  outputs = {'model': [model]}
  if gate_out is not None:
    gate = standard_artifacts.Model()
    gate.uri = str(gate_out)
    outputs['gate_model'] = [gate]
  props = {'served_dir': str(served_dir)}
  if version is not None:
    props[served.SERVED_VERSION] = version
  served_executor.Executor().Do({}, outputs, props)
  return model if gate_out is None else (model, outputs['gate_model'][0])


def _read(path):
  with open(path) as f:
    return f.read()


def test_nothing_served_gives_an_empty_baseline(tmp_path):
  for served_dir in (tmp_path / 'missing', tmp_path / 'empty'):
    os.makedirs(tmp_path / 'empty', exist_ok=True)
    out = tmp_path / 'out' / served_dir.name
    model = _run(served_dir, out)
    assert model.get_string_custom_property(served.SERVED_VERSION) == ''
    assert not served.holding_models([model])
    assert not os.path.exists(out / 'Format-Serving' / 'saved_model.pb')


def test_the_highest_version_is_copied_with_its_warm_start_state(tmp_path):
  base = tmp_path / 'serving' / 'retrieval'
  _version(base, '1700000000')
  _version(base, '1700000100')
  _version(base, '999')  # lower as a number, though higher as a string
  model = _run(base, tmp_path / 'out')
  assert model.get_string_custom_property(served.SERVED_VERSION) == '1700000100'
  assert model.get_string_custom_property(served.SERVED_PATH) == str(base / '1700000100')
  copy = tmp_path / 'out' / 'Format-Serving'
  assert _read(copy / 'saved_model.pb') == '1700000100:saved_model.pb'
  # What the trainers warm-start from: the state travels inside the pushed SavedModel.
  assert _read(copy / STATE) == f'1700000100:{STATE}'
  assert warm_start.state_dir(str(copy)) == str(copy / warm_start.STATE_DIR)
  assert served.holding_models([model]) == [model]


def test_the_gates_compare_with_the_candidate_kept_in_a_served_refit(tmp_path):
  base = tmp_path / 'serving' / 'ranking'
  refit = _version(base, '1700000100')
  candidate = _version(tmp_path / 'trainer', 'candidate')
  served.keep_candidate(candidate, refit)
  model, gate = _run(base, tmp_path / 'model', gate_out=tmp_path / 'gate')
  # The trainers start from the refit (it learnt the most); the gates see its candidate.
  assert _read(tmp_path / 'model' / 'Format-Serving' / 'saved_model.pb') == \
      '1700000100:saved_model.pb'
  assert _read(tmp_path / 'gate' / 'Format-Serving' / 'saved_model.pb') == \
      'candidate:saved_model.pb'
  # The candidate is copied once, for the gates, not again inside the warm-start copy.
  assert not os.path.exists(tmp_path / 'model' / 'Format-Serving' / served.CANDIDATE_DIR)
  assert os.path.exists(tmp_path / 'model' / 'Format-Serving' / STATE)
  assert gate.get_string_custom_property(served.SERVED_VERSION) == '1700000100'
  assert gate.get_string_custom_property(served.SERVED_PATH) == os.path.join(
      refit, served.CANDIDATE_DIR)
  # A served version that is no refit is its own gate baseline.
  _version(base, '1700000200')
  _, gate = _run(base, tmp_path / 'model2', gate_out=tmp_path / 'gate2')
  assert _read(tmp_path / 'gate2' / 'Format-Serving' / 'saved_model.pb') == \
      '1700000200:saved_model.pb'
  assert gate.get_string_custom_property(served.SERVED_PATH) == str(base / '1700000200')
  # Nothing served: both empty.
  model, gate = _run(tmp_path / 'none', tmp_path / 'model3', gate_out=tmp_path / 'gate3')
  assert not served.holding_models([model, gate])
  with pytest.raises(FileNotFoundError, match='no candidate'):
    served.keep_candidate(str(tmp_path / 'missing'), refit)


def test_a_publication_in_progress_is_not_served(tmp_path):
  base = tmp_path / 'serving' / 'ranking'
  _version(base, '1700000000')
  _version(base, '.incoming-1700000500-abcd1234')  # whole but not yet renamed (local disk)
  _version(base, '1700000600', complete=False)  # being copied on an object store
  assert served.latest_served(str(base)) == '1700000000'
  model = _run(base, tmp_path / 'out')
  assert model.get_string_custom_property(served.SERVED_VERSION) == '1700000000'
  assert _read(tmp_path / 'out' / 'Format-Serving' / 'saved_model.pb') == \
      '1700000000:saved_model.pb'


def test_the_driver_reading_decides_what_is_copied(tmp_path):
  """A push between the driver (which keys the cache) and the executor does not change the
  run's baseline; '' from the driver (nothing served then) stays no baseline."""
  base = tmp_path / 'serving' / 'retrieval'
  _version(base, '100')
  info = data_types.ExecutionInfo(exec_properties={'served_dir': str(base)})
  result = served_driver.Driver(metadata_handle=None).run(info)
  assert result.exec_properties[served.SERVED_VERSION].string_value == '100'
  _version(base, '200')
  assert _run(base, tmp_path / 'a', '100').get_string_custom_property(
      served.SERVED_VERSION) == '100'
  assert _run(base, tmp_path / 'b', '').get_string_custom_property(served.SERVED_VERSION) == ''
  empty = tmp_path / 'nothing'
  info = data_types.ExecutionInfo(exec_properties={'served_dir': str(empty)})
  assert served_driver.Driver(None).run(info).exec_properties[
      served.SERVED_VERSION].string_value == ''


def test_the_evaluator_leaves_out_an_empty_baseline(tmp_path, monkeypatch):
  seen = []
  monkeypatch.setattr(tfx_evaluator.Executor, 'Do',
                      lambda self, inputs, outputs, props: seen.append(inputs))
  empty = _run(tmp_path / 'none', tmp_path / 'empty')
  _version(tmp_path / 'serving', '5')
  full = _run(tmp_path / 'serving', tmp_path / 'full')
  candidate = standard_artifacts.Model()
  for baseline, expected in (([empty], None), ([full], [full]), ([], None)):
    evaluator_executor.Executor().Do({'model': [candidate], 'baseline_model': baseline}, {}, {})
    assert seen[-1].get('baseline_model') == expected
    assert seen[-1]['model'] == [candidate]


def _one_node_pipeline(root, served_dir):
  return tfx.dsl.Pipeline(
      pipeline_name='served', pipeline_root=str(root / 'root'),
      components=[ServedModel(served_dir=str(served_dir)).with_id('ServedRetrievalModel')],
      enable_cache=True,
      metadata_connection_config=metadata.sqlite_metadata_connection_config(
          str(root / 'metadata.sqlite')))


def _latest_output(root):
  from pipeline.run_summary import read_run
  return read_run(str(root / 'metadata.sqlite'))['ServedRetrievalModel']['outputs']['model'][0]


def test_the_local_cache_is_kept_only_while_the_served_version_is(tmp_path):
  """With caching on, a run reuses the snapshot while the same version is served and takes
  a new one once a version is pushed (the driver puts the version in the cache key)."""
  base = tmp_path / 'serving' / 'retrieval'
  runner = tfx.orchestration.LocalDagRunner()
  runner.run(_one_node_pipeline(tmp_path, base))
  first = _latest_output(tmp_path)
  assert first.custom_properties[served.SERVED_VERSION].string_value == ''
  runner.run(_one_node_pipeline(tmp_path, base))
  assert _latest_output(tmp_path).id == first.id  # cached: still nothing served
  _version(base, '1700000000')
  runner.run(_one_node_pipeline(tmp_path, base))
  pushed = _latest_output(tmp_path)
  assert pushed.id != first.id
  assert pushed.custom_properties[served.SERVED_VERSION].string_value == '1700000000'
  assert os.path.exists(os.path.join(pushed.uri, 'Format-Serving', 'saved_model.pb'))
  runner.run(_one_node_pipeline(tmp_path, base))
  assert _latest_output(tmp_path).id == pushed.id


@pytest.mark.parametrize('kind', ['retrieval', 'ranking'])
def test_the_pipeline_reads_each_kind_from_its_own_folder(kind, tmp_path):
  from core.configs import InputLayout
  from pipeline import pipeline as P
  layout = InputLayout(train='interactions.csv', eval='interactions.csv', items='items.csv',
                       users='users.csv')
  pipeline = P.create_pipeline(pipeline_name='p', pipeline_root=str(tmp_path / 'root'),
                               data_dir=str(tmp_path), layout=layout,
                               serving_dir=str(tmp_path / 'serving'))
  nodes = {n.id: n for n in pipeline.components}
  node = nodes[P.SERVED_RETRIEVAL if kind == 'retrieval' else P.SERVED_RANKING]
  assert node.exec_properties['served_dir'] == str(tmp_path / 'serving' / kind)
  trainer, evaluator = ((P.RETRIEVAL_TRAINER, P.RETRIEVAL_EVALUATOR) if kind == 'retrieval'
                        else (P.RANKING_TRAINER, P.RANKING_EVALUATOR))
  assert nodes[trainer].inputs['base_model'].producer_component_id == node.id
  assert nodes[evaluator].inputs['baseline_model'].producer_component_id == node.id
  assert nodes[trainer].inputs['base_model'].output_key == 'model'
  assert nodes[evaluator].inputs['baseline_model'].output_key == 'gate_model'
