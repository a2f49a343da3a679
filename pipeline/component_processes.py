"""A local DAG runner that runs every pipeline node in a process of its own.

TFX's LocalDagRunner launches every component in the runner's process, which never gives back
what a component allocated: TensorFlow and glibc keep freed heap, so at 10M interactions the
runner held 13-16 GB from the RetrievalTrainer to the end of the run (benchmarks/SCALE.md).
On Kubeflow/Vertex every component is a pod of its own; ``ComponentProcessRunner`` is the local
equivalent: it does what LocalDagRunner does, node by node in topological order, but each
node's launcher (driver, executor, publisher: TFX's own ``launcher.Launcher``) runs in a child
process, whose memory goes back to the system when it exits.

A fresh Python would pay the imports of TFX's launcher (TensorFlow, Beam, TFMA: 7 to 10 s) at
every node. The children are forked instead from one process started for the run, which has
made those imports and nothing else (no TensorFlow op, no thread of its own, no log file), so
that each child starts as a fresh process would after its imports. That process is this module
run as a script::

    python -m pipeline.component_processes --ir PIPELINE.pb --reply-fd FD [--log RUN_LOG]
        [--local-beam-dependencies]

It reads the pipeline IR the runner wrote (run id already substituted), then one request a
line on stdin (``{"node": ID, "error_file": PATH}``), forks a child that launches that node, and
answers on ``FD`` with the child's pid, then its exit code.
"""
import argparse
import contextlib
import datetime
import json
import logging
import os
import select
import signal
import subprocess
import sys
import tempfile
from typing import Any, Dict, List, Mapping, Optional, Sequence

from tfx.orchestration.portable import tfx_runner

# The folder that holds the project's packages: the child imports them (this module, the
# components' executors) from wherever the runner was started.
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# How much of a failed component's error the runner's exception repeats (the rest is in the log).
ERROR_CHARS = 4000


@contextlib.contextmanager
def local_beam_dependencies():
  """Beam workers that import TFX from this environment, without TFX's sdist of itself.

  Before every Beam component (ExampleGen, StatisticsGen, Transform, Evaluator) TFX copies
  its own installation and builds an sdist of it (``setup.py sdist``, 2 to 3 s each) for
  remote Beam workers to install, unless the Beam arguments already name a package. The local
  runner's workers are local: in-memory, or processes started from this Python.
  """
  from tfx.utils import dependency_utils
  build = dependency_utils.make_beam_dependency_flags
  dependency_utils.make_beam_dependency_flags = lambda beam_pipeline_args: beam_pipeline_args
  try:
    yield
  finally:
    dependency_utils.make_beam_dependency_flags = build


class ComponentProcessError(RuntimeError):
  """A node's process failed or was killed; ``node_id`` and ``exit_code`` say which and how."""

  def __init__(self, node_id: str, exit_code: int, error: str = ''):
    how = f'exit code {exit_code}'
    if exit_code < 0:  # subprocess's convention: killed by signal -exit_code
      try:
        how += f' (killed by {signal.Signals(-exit_code).name})'
      except ValueError:
        how += f' (killed by signal {-exit_code})'
    super().__init__(f'component {node_id} failed in its own process, {how}'
                     + (f': {error}' if error else ''))
    self.node_id, self.exit_code = node_id, exit_code


class ComponentProcessRunner(tfx_runner.IrBasedRunner):
  """LocalDagRunner's behaviour, with every node launched in a child process of its own.

  Args:
    log_path: the run log each child appends its log records to (``pipeline.run_log.log_to_file``);
      None leaves the child's logging as Python and absl set it up (stderr).
    local_beam_dependencies: whether the children apply ``local_beam_dependencies``.
    python_options: interpreter options for each child, e.g. ``('-W', 'ignore::FutureWarning')``.
    env: environment variables for the children, on top of this process's environment, which
      they inherit (TF_USE_LEGACY_KERAS must be in one of the two before TensorFlow loads).
  """

  def __init__(self, log_path: Optional[str] = None, local_beam_dependencies: bool = False,
               python_options: Sequence[str] = (), env: Optional[Mapping[str, str]] = None):
    self.log_path = log_path
    self.local_beam_dependencies = local_beam_dependencies
    self.python_options = list(python_options)
    self.env = dict(env or {})

  def run_with_ir(self, pipeline, run_options=None, **kwargs) -> None:
    """Runs the pipeline IR node by node, each in its own process, as LocalDagRunner does.

    Raises:
      ComponentProcessError: a node's process exited non-zero or was killed; the nodes after
        it are not run.
    """
    from absl import logging as absl_logging
    from tfx.dsl.compiler import constants
    from tfx.orchestration import metadata
    from tfx.orchestration.local import runner_utils
    from tfx.orchestration.portable import partial_run_utils
    from tfx.orchestration.portable import runtime_parameter_utils
    if kwargs:
      raise ValueError(f'ComponentProcessRunner takes no extra arguments: {sorted(kwargs)}')
    runtime_parameter_utils.substitute_runtime_parameter(pipeline, {
        constants.PIPELINE_RUN_ID_PARAMETER_NAME: datetime.datetime.now().isoformat()})
    deployment_config = runner_utils.extract_local_deployment_config(pipeline)
    connection_config = getattr(
        deployment_config.metadata_connection_config,
        deployment_config.metadata_connection_config.WhichOneof('connection_config'))
    if run_options:
      absl_logging.info('Using run_options:\n %s', run_options)
      partial_run = run_options.partial_run
      partial_run_utils.mark_pipeline(
          pipeline, from_nodes=partial_run.from_nodes or None,
          to_nodes=partial_run.to_nodes or None,
          snapshot_settings=partial_run.snapshot_settings)
    with tempfile.TemporaryDirectory(prefix='component-processes-') as folder:
      ir_path = os.path.join(folder, 'pipeline.pb')
      with open(ir_path, 'wb') as f:
        f.write(pipeline.SerializeToString())
      with _Forker(self.command(ir_path), self._env(), self.log_path) as forker:
        for node in pipeline.nodes:
          pipeline_node = node.pipeline_node
          node_id = pipeline_node.node_info.id
          if pipeline_node.execution_options.HasField('skip'):
            absl_logging.info('Skipping component %s.', node_id)
            continue
          if pipeline_node.execution_options.run.perform_snapshot:
            with metadata.Metadata(connection_config) as mlmd_handle:
              partial_run_utils.snapshot(mlmd_handle, pipeline)
          absl_logging.info('Component %s is running in its own process.', node_id)
          error_path = os.path.join(folder, f'{node_id}.error')
          try:
            code = forker.run(node_id, error_path)
          except BaseException as e:  # interrupted, or the forker died
            fail_unfinished_executions(connection_config, str(e) or type(e).__name__,
                                       pipeline_node)
            raise
          if code != 0:
            error = ''
            if os.path.exists(error_path):
              with open(error_path, errors='replace') as f:
                error = f.read().strip()[:ERROR_CHARS]
            failure = ComponentProcessError(node_id, code, error)
            fail_unfinished_executions(connection_config, str(failure), pipeline_node)
            raise failure
          absl_logging.info('Component %s is finished.', node_id)

  def command(self, ir_path: str) -> List[str]:
    """The command line of the process the children are forked from."""
    cmd = [sys.executable, *self.python_options, '-m', __name__, '--ir', ir_path]
    if self.log_path:
      cmd += ['--log', self.log_path]
    if self.local_beam_dependencies:
      cmd.append('--local-beam-dependencies')
    return cmd

  def _env(self) -> Dict[str, str]:
    env = dict(os.environ, **self.env)
    env['PYTHONPATH'] = os.pathsep.join([REPO] + [p for p in env.get('PYTHONPATH', '').split(
        os.pathsep) if p])
    return env


class _Forker:
  """The runner's end of the process the children are forked from (``serve``)."""

  # How long a child may take to stop when the run is interrupted, before it is killed.
  STOP_SECONDS = 30

  def __init__(self, cmd: List[str], env: Mapping[str, str], log_path: Optional[str]):
    self.cmd, self.env, self.log_path = cmd, env, log_path
    self._stack = contextlib.ExitStack()

  def __enter__(self):
    # With a run log, the forker's stderr, and so each child's, goes there too (TensorFlow's
    # C++ start-up lines, anything written past Python logging); stdout stays the runner's.
    stderr = self._stack.enter_context(open(self.log_path, 'ab')) if self.log_path else None
    read_fd, write_fd = os.pipe()
    try:
      self.proc = subprocess.Popen(self.cmd + ['--reply-fd', str(write_fd)], env=self.env,
                                   stdin=subprocess.PIPE, stderr=stderr, pass_fds=(write_fd,),
                                   text=True)
    finally:
      os.close(write_fd)
    self.replies = self._stack.enter_context(os.fdopen(read_fd))
    return self

  def __exit__(self, *exc):
    try:
      self.proc.stdin.close()  # the forker exits at the end of its input
      self.proc.wait(timeout=self.STOP_SECONDS)
    except subprocess.TimeoutExpired:
      self.proc.kill()
      self.proc.wait()
    finally:
      self._stack.close()

  def _reply(self, node_id: str) -> Dict[str, Any]:
    line = self.replies.readline()
    if not line:  # the forker died: its own exit code says how
      raise ComponentProcessError(node_id, self.proc.wait(), 'the process that starts the '
                                  'components exited' + (f'; see {self.log_path}'
                                                         if self.log_path else ''))
    return json.loads(line)

  def run(self, node_id: str, error_path: str) -> int:
    """Forks the child that launches ``node_id``; its exit code (-N: killed by signal N)."""
    try:
      self.proc.stdin.write(json.dumps({'node': node_id, 'error_file': error_path}) + '\n')
      self.proc.stdin.flush()
    except BrokenPipeError:
      pass  # the forker is gone: _reply says how
    pid = self._reply(node_id)['pid']
    try:
      return self._reply(node_id)['exit_code']
    except BaseException:  # interrupted: the component does not outlive its run
      with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        if not select.select([self.replies], [], [], self.STOP_SECONDS)[0]:
          os.kill(pid, signal.SIGKILL)
      raise


def fail_unfinished_executions(connection_config, message: str,
                               pipeline_node=None) -> List[int]:
  """Marks executions still NEW or RUNNING as FAILED, with ``message`` as their result; their ids.

  A component that raises is marked FAILED by TFX's launcher itself; one whose process was
  killed (a signal, the out-of-memory killer, an interrupted run, a killed runner) never gets
  there, and ML Metadata would say it is running forever, to the run summary, the progress
  lines and any tool that reads the store. Whoever outlives it says it instead: the runner for
  its child (``pipeline_node``: that node's executions in this run), or the next run on the
  same store, holding its lock, for what a killed run left (None: every execution in the
  store). A failure to say it is logged, never raised: the caller's own error comes first.
  """
  from absl import logging as absl_logging
  from ml_metadata import errors as mlmd_errors
  from tfx.orchestration import metadata
  from tfx.orchestration.portable import execution_publish_utils
  from tfx.orchestration.portable.mlmd import execution_lib
  from tfx.proto.orchestration import execution_result_pb2
  try:
    with metadata.Metadata(connection_config) as mlmd_handle:
      store = mlmd_handle.store
      if pipeline_node is None:
        executions = store.get_executions()
      else:
        contexts = [store.get_context_by_type_and_name(
            spec.type.name, spec.name.field_value.string_value)
                    for spec in pipeline_node.contexts.contexts]
        if None in contexts:  # the node never registered an execution in this run
          return []
        executions = execution_lib.get_executions_associated_with_all_contexts(
            mlmd_handle, contexts)
      unfinished = [e for e in executions if execution_lib.is_execution_active(e)]
      result = execution_result_pb2.ExecutorOutput(
          execution_result=execution_result_pb2.ExecutionResult(code=1, result_message=message))
      for execution in unfinished:
        try:
          contexts = store.get_contexts_by_execution(execution.id)
        except mlmd_errors.NotFoundError:  # MLMD's answer for an execution without contexts
          contexts = []
        execution_publish_utils.publish_failed_execution(mlmd_handle, contexts, execution.id,
                                                         result)
      return [e.id for e in unfinished]
  except Exception:  # pylint: disable=broad-except
    absl_logging.exception('Could not mark unfinished executions as failed')
    return []


def _die_with_parent() -> None:
  """This process is killed when its parent dies (Linux): the forker with the runner, a child
  with the forker, as an in-process component would be with the runner: an orphan would go on
  writing artifacts and metadata beside the next run."""
  if not sys.platform.startswith('linux'):
    return
  import ctypes
  parent = os.getppid()
  pr_set_pdeathsig = 1
  ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
  if os.getppid() != parent:  # the parent died before the request was made
    os._exit(1)


def launch_node(ir_path: str, node_id: str) -> None:
  """Launches one node of a pipeline IR in this process, as LocalDagRunner does."""
  from absl import logging as absl_logging
  from tfx.orchestration import metadata
  from tfx.orchestration.local import runner_utils
  from tfx.orchestration.portable import launcher
  from tfx.proto.orchestration import pipeline_pb2
  from tfx.utils import telemetry_utils
  pipeline = pipeline_pb2.Pipeline()
  with open(ir_path, 'rb') as f:
    pipeline.ParseFromString(f.read())
  nodes = {n.pipeline_node.node_info.id: n.pipeline_node for n in pipeline.nodes}
  if node_id not in nodes:
    raise ValueError(f'the pipeline has no node {node_id!r}; its nodes: {", ".join(nodes)}')
  deployment_config = runner_utils.extract_local_deployment_config(pipeline)
  connection_config = getattr(
      deployment_config.metadata_connection_config,
      deployment_config.metadata_connection_config.WhichOneof('connection_config'))
  component_launcher = launcher.Launcher(
      pipeline_node=nodes[node_id],
      mlmd_connection=metadata.Metadata(connection_config),
      pipeline_info=pipeline.pipeline_info,
      pipeline_runtime_spec=pipeline.runtime_spec,
      executor_spec=runner_utils.extract_executor_spec(deployment_config, node_id),
      custom_driver_spec=runner_utils.extract_custom_driver_spec(deployment_config, node_id))
  absl_logging.info('Component %s is running (process %d).', node_id, os.getpid())
  with telemetry_utils.scoped_labels({telemetry_utils.LABEL_TFX_RUNNER: 'local'}):
    component_launcher.launch()


def _launch(ir_path: str, node_id: str, log_path: Optional[str],
            beam_dependencies: bool, error_path: Optional[str]) -> int:
  """A child's work: launches one node with its logging set up; its exit code."""
  with contextlib.ExitStack() as stack:
    if log_path:
      from pipeline.run_log import log_to_file
      stack.enter_context(log_to_file(log_path, append=True))
      # TensorFlow gives its logger a stderr handler of its own when it is imported before the
      # root logger has a handler (the forker's imports): its records reach the run log
      # through the root's handler instead, as in the runner's process.
      logging.getLogger('tensorflow').handlers = []
    if beam_dependencies:
      stack.enter_context(local_beam_dependencies())
    try:
      launch_node(ir_path, node_id)
    except Exception as e:  # pylint: disable=broad-except; reported to the runner, then exit 1
      logging.exception('Component %s failed', node_id)
      if error_path:
        with open(error_path, 'w') as f:
          f.write(f'{type(e).__name__}: {e}')
      return 1
  return 0


def serve(ir_path: str, reply_fd: int, log_path: Optional[str] = None,
          beam_dependencies: bool = False) -> int:
  """The process the children are forked from: one request a line on stdin, one child each."""
  _die_with_parent()
  # What every node's launch imports, once, before any child is forked.
  from tfx.orchestration import metadata  # noqa: F401 pylint: disable=unused-import
  from tfx.orchestration.local import runner_utils  # noqa: F401 pylint: disable=unused-import
  from tfx.orchestration.portable import launcher  # noqa: F401 pylint: disable=unused-import
  with os.fdopen(reply_fd, 'w', buffering=1) as replies:
    for line in sys.stdin:
      request = json.loads(line)
      sys.stdout.flush()
      sys.stderr.flush()
      pid = os.fork()
      if pid == 0:  # the child: nothing of the forker's protocol, then the node
        replies.close()
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        _die_with_parent()
        code = 1
        try:
          code = _launch(ir_path, request['node'], log_path, beam_dependencies,
                         request.get('error_file'))
        finally:
          logging.shutdown()
          sys.stdout.flush()
          sys.stderr.flush()
          # Skip interpreter teardown: TensorFlow's function finalizers print spurious
          # "Exception ignored" tracebacks at shutdown. Everything was written and closed.
          os._exit(code)
      replies.write(json.dumps({'pid': pid}) + '\n')
      _, status = os.waitpid(pid, 0)
      replies.write(json.dumps({'exit_code': os.waitstatus_to_exitcode(status)}) + '\n')
  return 0


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description='Forks one child a requested node (the process '
                                   'ComponentProcessRunner starts for a run).')
  parser.add_argument('--ir', required=True, help='the pipeline IR (binary proto)')
  parser.add_argument('--reply-fd', type=int, required=True,
                      help="the file descriptor that takes each child's pid and exit code")
  parser.add_argument('--log', help='append every log record to this file (the run log)')
  parser.add_argument('--local-beam-dependencies', action='store_true',
                      help='Beam workers import TFX from this environment (no TFX sdist)')
  args = parser.parse_args(argv)
  return serve(args.ir, args.reply_fd, args.log, args.local_beam_dependencies)


if __name__ == '__main__':
  sys.exit(main())
