"""ComponentProcessRunner: every node in a process of its own, artifacts passed on, failures
named by their node (local_runner.py --component-processes)."""
import os

import pytest
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx
from tfx.orchestration import pipeline as tfx_pipeline
from tfx.orchestration.portable.mlmd import execution_lib

from pipeline.component_processes import (ComponentProcessError, ComponentProcessRunner,
                                          fail_unfinished_executions)
from pipeline.run_summary import OutputPaths, build_summary, read_run
from tests.process_components import Consume, Fail, Produce, read_record


def _pipeline(out, components):
  paths = OutputPaths(str(out))
  return tfx.dsl.Pipeline(
      pipeline_name='processes', pipeline_root=paths.pipeline_root, components=components,
      enable_cache=False,
      metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
          paths.metadata_path))


def execution_result(metadata_path, node_id):
  """The result TFX keeps with the node's only execution (ExecutionResult)."""
  config = metadata_store_pb2.ConnectionConfig()
  config.sqlite.filename_uri = metadata_path
  store = metadata_store.MetadataStore(config)
  [node] = [c for c in store.get_contexts_by_type('node') if c.name.endswith('.' + node_id)]
  [execution] = store.get_executions_by_context(node.id)
  return execution_lib.get_execution_result(execution)


def test_each_node_runs_in_its_own_process_and_passes_its_artifacts_on(tmp_path):
  produce = Produce()
  consume = Consume(source=produce.outputs['output'])
  paths = OutputPaths(str(tmp_path))
  ComponentProcessRunner(log_path=paths.log_path).run(_pipeline(tmp_path, [produce, consume]))
  nodes = read_run(paths.metadata_path)
  assert {n: v['state'] for n, v in nodes.items()} == {'Produce': 'done', 'Consume': 'done'}
  produced = read_record(nodes['Produce']['outputs']['output'][0].uri)
  consumed = read_record(nodes['Consume']['outputs']['output'][0].uri)
  assert produced['pid'] != os.getpid()
  assert consumed['pid'] not in (os.getpid(), produced['pid'])
  assert consumed['seen'] == produced  # Consume read Produce's artifact
  with open(paths.log_path) as f:
    log = f.read()
  # Each child's log records land in the run log.
  assert f'Component Produce is running (process {produced["pid"]})' in log
  assert f'Component Consume is running (process {consumed["pid"]})' in log


# Rarer paths in the full tier: each costs child processes that import TensorFlow, and the
# fast tier stays within its five minutes (docs/testing.md).
@pytest.mark.slow
def test_a_partial_run_launches_only_its_nodes_on_the_last_run_s_artifacts(tmp_path):
  def pipeline():
    produce = Produce()
    return _pipeline(tmp_path, [produce, Consume(source=produce.outputs['output'])])

  paths = OutputPaths(str(tmp_path))
  runner = ComponentProcessRunner()
  runner.run(pipeline(), run_options=tfx_pipeline.RunOptions(to_nodes=['Produce']))
  first = read_run(paths.metadata_path)
  assert list(first) == ['Produce']  # Consume was skipped: no process, no execution
  runner.run(pipeline(), run_options=tfx_pipeline.RunOptions(from_nodes=['Consume']))
  second = read_run(paths.metadata_path)
  produced = first['Produce']['outputs']['output'][0]
  consumed = read_record(second['Consume']['outputs']['output'][0].uri)
  assert second['Consume']['state'] == 'done'
  assert consumed['seen'] == read_record(produced.uri)  # the snapshot of the first run's


@pytest.mark.parametrize('how, code', [
    ('raise', 1), pytest.param('kill', -9, marks=pytest.mark.slow)])
def test_a_failed_node_stops_the_run_and_is_named(tmp_path, how, code):
  fail = Fail(how=how)
  after = Consume(source=fail.outputs['output'])
  paths = OutputPaths(str(tmp_path))
  with pytest.raises(ComponentProcessError) as raised:
    ComponentProcessRunner(log_path=paths.log_path).run(_pipeline(tmp_path, [fail, after]))
  error = raised.value
  assert (error.node_id, error.exit_code) == ('Fail', code)
  assert f'component Fail failed in its own process, exit code {code}' in str(error)
  if how == 'raise':
    assert str(error).endswith('ValueError: planted failure')
  else:
    assert 'SIGKILL' in str(error)
  nodes = read_run(paths.metadata_path)
  # A killed process never marks its execution: the runner does, with the error as its result.
  assert {n: v['state'] for n, v in nodes.items()} == {'Fail': 'FAILED'}
  result = execution_result(paths.metadata_path, 'Fail')
  if how == 'kill':
    assert 'killed by SIGKILL' in result.result_message
  summary = build_summary(paths, started=0.0, error=error)
  assert (summary['status'], summary['failed_component']) == ('failed', 'Fail')


def test_what_a_killed_run_left_running_is_marked_failed_and_nothing_else(tmp_path):
  config = metadata_store_pb2.ConnectionConfig()
  config.sqlite.filename_uri = str(tmp_path / 'metadata.sqlite')
  store = metadata_store.MetadataStore(config)
  type_id = store.put_execution_type(metadata_store_pb2.ExecutionType(name='Trainer'))
  E = metadata_store_pb2.Execution
  states = [E.NEW, E.RUNNING, E.COMPLETE, E.CACHED, E.FAILED]
  ids = store.put_executions([E(type_id=type_id, last_known_state=s) for s in states])
  assert fail_unfinished_executions(config, 'abandoned') == ids[:2]
  after = store.get_executions_by_id(ids)
  assert [e.last_known_state for e in after] == [E.FAILED, E.FAILED] + states[2:]
  assert [execution_lib.get_execution_result(e).result_message for e in after[:2]] == [
      'abandoned'] * 2
  assert execution_lib.get_execution_result(after[4]) is None  # untouched
  assert fail_unfinished_executions(config, 'again') == []


def test_a_forker_that_dies_fails_the_run_naming_the_node_and_the_exit_code(tmp_path):
  # The interpreter option runs code instead of the forker: it exits before any request.
  runner = ComponentProcessRunner(python_options=('-c', 'import sys; sys.exit(3)'))
  with pytest.raises(ComponentProcessError) as raised:
    runner.run(_pipeline(tmp_path, [Produce()]))
  assert (raised.value.node_id, raised.value.exit_code) == ('Produce', 3)
  assert 'the process that starts the components exited' in str(raised.value)
