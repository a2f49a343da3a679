"""What a run did, read back from ML Metadata: progress lines, metrics.json and the summary.

The local runner prints one line per component while the pipeline runs, keeps TFX's full log
in OUT/run.log, and afterwards reads the run's executions and artifacts from the metadata
store to write metrics.json and print a short summary.
"""
import contextlib
import dataclasses
import json
import logging
import os
import re
import sys
import threading
import time
from typing import Any, Dict, List, Optional

from ml_metadata.metadata_store import metadata_store
from ml_metadata import errors
from ml_metadata.proto import metadata_store_pb2

from pipeline import pipeline as P

_STATE_NAMES = {
    metadata_store_pb2.Execution.COMPLETE: 'done',
    metadata_store_pb2.Execution.CACHED: 'cached',
    metadata_store_pb2.Execution.FAILED: 'FAILED',
    metadata_store_pb2.Execution.RUNNING: 'running',
    metadata_store_pb2.Execution.CANCELED: 'canceled',
}


@dataclasses.dataclass(frozen=True)
class OutputPaths:
  """The layout of an output folder."""
  root: str

  @property
  def pipeline_root(self) -> str:
    return os.path.join(self.root, 'pipeline')

  @property
  def metadata_path(self) -> str:
    return os.path.join(self.root, 'metadata.sqlite')

  @property
  def serving_dir(self) -> str:
    return os.path.join(self.root, 'serving')

  @property
  def metrics_path(self) -> str:
    return os.path.join(self.root, 'metrics.json')

  @property
  def log_path(self) -> str:
    return os.path.join(self.root, 'run.log')


class _ProgressWatcher(threading.Thread):
  """Prints a line whenever a component of the current run changes state.

  It polls the ML Metadata store rather than the log: libraries loaded during the run
  (TensorFlow, Beam) reconfigure Python logging, so log records are not a reliable signal.
  """

  def __init__(self, metadata_path: str, started: float, stream, interval: float = 2.0,
               log_handler: Optional[logging.Handler] = None):
    super().__init__(daemon=True)
    self.metadata_path, self.started, self.stream = metadata_path, started, stream
    self.interval, self.log_handler = interval, log_handler
    self.done = threading.Event()
    self.states: Dict[str, str] = {}

  def run(self) -> None:
    while not self.done.wait(self.interval):
      self.poll()
    self.poll()

  def poll(self) -> None:
    root = logging.getLogger()
    if self.log_handler is not None and self.log_handler not in root.handlers:
      root.addHandler(self.log_handler)  # a library replaced the root's handlers
    try:
      nodes = read_run(self.metadata_path) if os.path.exists(self.metadata_path) else {}
    except Exception:  # pylint: disable=broad-except; the store may be busy: next poll
      return
    for node, info in nodes.items():
      if info['created'] < self.started or self.states.get(node) == info['state']:
        continue
      self.states[node] = info['state']
      print(f'{time.strftime("%H:%M:%S")}  {node:<28} {info["state"]}', file=self.stream,
            flush=True)


class _NotFrom(logging.Filter):
  """Drops the records of one thread (the watcher's own metadata-store connection lines)."""

  def __init__(self, thread: threading.Thread):
    super().__init__()
    self.thread = thread

  def filter(self, record: logging.LogRecord) -> bool:
    return record.thread != self.thread.ident


@contextlib.contextmanager
def progress_printer(log_path: str, metadata_path: str, stream=None):
  """Prints component progress to ``stream``; every log record goes to ``log_path``, in order.

  Two things inside a run would otherwise cut absl's INFO lines (component starts, evaluator
  reasons, pushes) out of the file. absl's verbosity flag keeps its default (WARNING) until
  someone sets it, and TensorFlow's SavedModel export reads it and sets it back, which pins
  the 'absl' logger at WARNING from the Transform's first export on; so the verbosity is set
  to INFO for the run. And a library may replace the root logger's handlers; the watcher puts
  the file handler back on each poll. Both are restored afterwards.
  """
  from absl import logging as absl_logging
  root = logging.getLogger()
  os.makedirs(os.path.dirname(log_path) or '.', exist_ok=True)
  file_handler = logging.FileHandler(log_path, mode='w')
  file_handler.setFormatter(logging.Formatter('%(asctime)s %(levelname)s %(name)s %(message)s'))
  saved = (root.level, list(root.handlers), absl_logging.get_verbosity(),
           absl_logging.get_absl_logger().level)
  root.handlers = [file_handler]
  root.setLevel(logging.INFO)
  absl_logging.set_verbosity(absl_logging.INFO)
  watcher = _ProgressWatcher(metadata_path, time.time() - 1, stream or sys.stdout,
                             log_handler=file_handler)
  file_handler.addFilter(_NotFrom(watcher))
  watcher.start()
  try:
    yield
  finally:
    watcher.done.set()
    watcher.join()
    root.handlers = saved[1]
    root.setLevel(saved[0])
    absl_logging.set_verbosity(saved[2])
    absl_logging.get_absl_logger().setLevel(saved[3])
    file_handler.close()


def acquire_run_lock(output_dir: str):
  """An open lock file held for the run, or None when another process holds it.

  Two runs on one output folder would share the metadata store and the serving folder; the
  second one refuses instead. The lock dies with its process, so a killed run never leaves a
  stale lock behind.
  """
  import fcntl
  os.makedirs(output_dir, exist_ok=True)
  handle = open(os.path.join(output_dir, '.run.lock'), 'a+')
  try:
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError:
    handle.close()
    return None
  return handle


def _store(metadata_path: str) -> metadata_store.MetadataStore:
  config = metadata_store_pb2.ConnectionConfig()
  config.sqlite.filename_uri = metadata_path
  config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
  return metadata_store.MetadataStore(config)


def read_run(metadata_path: str, run_id: Optional[str] = None) -> Dict[str, Dict[str, Any]]:
  """{node id: {'state', 'seconds', 'outputs': {key: [artifact]}}} of a run (default: latest)."""
  store = _store(metadata_path)
  runs = store.get_contexts_by_type('pipeline_run')
  if not runs:
    return {}
  run = (next(r for r in runs if r.name == run_id) if run_id
         else max(runs, key=lambda r: r.create_time_since_epoch))
  nodes: Dict[str, Dict[str, Any]] = {}
  executions = store.get_executions_by_context(run.id)
  events = store.get_events_by_execution_ids([e.id for e in executions])
  artifacts = {a.id: a for a in store.get_artifacts_by_id(list({e.artifact_id for e in events}))}
  for execution in sorted(executions, key=lambda e: e.id):
    node = next((c.name.split('.', 1)[1] for c in store.get_contexts_by_execution(execution.id)
                 if c.type == 'node'), str(execution.id))
    outputs: Dict[str, List[Any]] = {}
    for event in events:
      if event.execution_id == execution.id and event.type == metadata_store_pb2.Event.OUTPUT:
        key = event.path.steps[0].key if event.path.steps else ''
        outputs.setdefault(key, []).append(artifacts[event.artifact_id])
    nodes[node] = {
        'state': _STATE_NAMES.get(execution.last_known_state, 'unknown'),
        'seconds': (execution.last_update_time_since_epoch
                    - execution.create_time_since_epoch) / 1000.0,
        'outputs': outputs,
        'run_id': run.name,
        'created': execution.create_time_since_epoch / 1000.0,
    }
  return nodes


def _prop(artifact, name: str):
  value = artifact.custom_properties.get(name)
  if value is None:
    return None
  kind = value.WhichOneof('value')
  return getattr(value, kind) if kind else None


def _output(nodes, node: str, key: str):
  found = nodes.get(node, {}).get('outputs', {}).get(key) or []
  return found[0] if found else None


def _retrieval_metrics(nodes) -> Dict[str, Any]:
  evaluation = _output(nodes, P.RETRIEVAL_EVALUATOR, 'evaluation')
  if evaluation is None:
    return {}
  with open(os.path.join(evaluation.uri, 'metrics.json')) as f:
    result = json.load(f)
  out = {k: v for k, v in result['metrics'].items() if k.startswith('top_')}
  out['blessed'] = bool(result['blessed'])
  out['eval_interactions'] = result['metrics']['eval_interactions']
  if result.get('baseline'):
    out['baseline_top_100'] = result['baseline']['top_100']
  if result.get('reasons'):
    out['why_not_blessed'] = result['reasons']
  return out


def _ranking_metrics(nodes) -> Dict[str, Any]:
  evaluation = _output(nodes, P.RANKING_EVALUATOR, 'evaluation')
  if evaluation is None:
    return {}
  import tensorflow_model_analysis as tfma  # heavy; only when there is something to read
  result = tfma.load_eval_result(evaluation.uri)
  out: Dict[str, Any] = {}
  for slice_key, metrics in result.slicing_metrics:
    if slice_key == ():
      for name, value in metrics[''][''].items():
        if name == 'root_mean_squared_error':
          out['rmse'] = value['doubleValue']
        elif name == 'auc':
          out['auc'] = value['doubleValue']
        elif name == 'example_count':
          out['eval_examples'] = int(value['doubleValue'])
  validation = tfma.load_validation_result(evaluation.uri)
  blessing = _output(nodes, P.RANKING_EVALUATOR, 'blessing')
  out['blessed'] = bool(blessing is not None and _prop(blessing, 'blessed') == 1)
  if not validation.validation_ok:
    out['why_not_blessed'] = [str(f).replace('\n', ' ') for f in
                              validation.metric_validations_per_slice][:3]
  return out


def _feed_metrics(nodes) -> Dict[str, Any]:
  evaluation = _output(nodes, P.FEED_BUILDER, 'evaluation')
  path = evaluation and os.path.join(evaluation.uri, 'feed_metrics.json')
  if not path or not os.path.exists(path):
    return {}
  with open(path) as f:
    metrics = json.load(f)
  return {k: metrics[k] for k in ('hit_rate_at_10', 'ndcg_at_10') if k in metrics}


def _pushed(nodes, node: str) -> Dict[str, Any]:
  pushed = _output(nodes, node, 'pushed_model')
  if pushed is None or _prop(pushed, 'pushed') != 1:
    return {'version': None, 'path': None}
  return {'version': str(_prop(pushed, 'pushed_version')),
          'path': _prop(pushed, 'pushed_destination')}


def _pushed_version_of(metadata_path: str, model_dir: str) -> Optional[str]:
  """The version under serving/ that a Pusher published from the model at ``model_dir``."""
  store = _store(metadata_path)
  uri = os.path.dirname(model_dir.rstrip('/'))  # <Model artifact uri>/Format-Serving
  models = store.get_artifacts_by_uri(uri)
  if not models:
    return None
  consumers = {e.execution_id for e in store.get_events_by_artifact_ids([m.id for m in models])
               if e.type == metadata_store_pb2.Event.INPUT}
  outputs = [e.artifact_id for e in store.get_events_by_execution_ids(list(consumers))
             if e.type == metadata_store_pb2.Event.OUTPUT]
  for artifact in store.get_artifacts_by_id(outputs):
    if _prop(artifact, 'pushed') == 1 and _prop(artifact, 'pushed_version') is not None:
      return str(_prop(artifact, 'pushed_version'))
  return None


def _warm_start(nodes, metadata_path: str) -> Dict[str, Any]:
  """{kind: {'from_version', 'base_model', 'rows_kept', 'rows_new', 'fresh_weights'}}, or
  None for a trainer that started from scratch."""
  out: Dict[str, Any] = {}
  for kind, node in (('retrieval', P.RETRIEVAL_TRAINER), ('ranking', P.RANKING_TRAINER)):
    run = _output(nodes, node, 'model_run')
    path = run and os.path.join(run.uri, 'warm_start.json')
    if not path or not os.path.exists(path):
      continue
    with open(path) as f:
      report = json.load(f)
    if not report.get('base_model'):
      out[kind] = None
      continue
    out[kind] = {
        'from_version': _pushed_version_of(metadata_path, report['base_model']),
        'base_model': report['base_model'],
        # Embedding rows of ids and feature values matched by token, and those new this run.
        'rows_kept': sum(report.get('rows_kept', {}).values()),
        'rows_new': sum(report.get('rows_new', {}).values()),
        'fresh_weights': report.get('fresh', []),
    }
  return out


def summarize(paths: OutputPaths, started: float, error: Optional[BaseException],
              span: Optional[int] = None) -> Dict[str, Any]:
  """The run's metrics.json content (also written to disk); ``span``: the span read, if any."""
  nodes = read_run(paths.metadata_path) if os.path.exists(paths.metadata_path) else {}
  retrieval, ranking = _retrieval_metrics(nodes), _ranking_metrics(nodes)
  pushes = {'retrieval': _pushed(nodes, P.RETRIEVAL_PUSHER),
            'ranking': _pushed(nodes, P.RANKING_PUSHER),
            'feed': _pushed(nodes, P.FEED_PUSHER)}
  feed = _feed_metrics(nodes)
  segments = _output(nodes, P.USER_SEGMENTER, 'segments')
  summary: Dict[str, Any] = {
      'status': 'failed' if error else 'succeeded',
      'run_id': next(iter(nodes.values()))['run_id'] if nodes else None,
      'span': span,
      'warm_start': _warm_start(nodes, paths.metadata_path) if nodes else {},
      'retrieval': retrieval,
      'ranking': ranking,
      'feed': feed,
      'eval_interactions': retrieval.get('eval_interactions'),
      'pushed': {k: v['version'] for k, v in pushes.items()},
      'pushed_paths': {k: v['path'] for k, v in pushes.items()},
      'segments': ({'count': _prop(segments, 'num_segments'),
                    'path': _prop(segments, 'pushed_destination') or segments.uri}
                   if segments is not None else None),
      'components': {n: {'state': v['state'], 'seconds': round(v['seconds'], 1)}
                     for n, v in nodes.items()},
      'wall_seconds': round(time.time() - started, 1),
  }
  if error is not None:
    failed = [n for n, v in nodes.items() if v['state'] in ('FAILED', 'running')]
    summary['failed_component'] = failed[0] if failed else None
    summary['error'] = error_message(error)
  with open(paths.metrics_path, 'w') as f:
    json.dump(summary, f, indent=2)
  return summary


def error_message(error: BaseException) -> str:
  """The user-facing part of an exception (Beam wraps the original message in context)."""
  text = str(error).strip()
  match = re.search(r"(InputDataError|DataAnomalyError|LayoutError|ValueError): (.*?)"
                    r"(?: \[while running '[^']*'\])?$", text, re.S)
  return (match.group(2) if match else text).strip()


def format_summary(summary: Dict[str, Any], paths: OutputPaths) -> str:
  span = f" on span {summary['span']}" if summary.get('span') is not None else ''
  lines = ['', f"Run {summary['status']}{span} in {summary['wall_seconds']:.0f} s"]
  if summary.get('error'):
    lines.append(f"  failed in {summary.get('failed_component') or 'the pipeline'}: "
                 f"{summary['error']}")
  r, k = summary['retrieval'], summary['ranking']
  if r:
    order = sorted((m for m in r if m.startswith('top_')),
                   key=lambda m: ('unseen' in m, int(m.split('_')[1])))
    lines.append('  retrieval: ' + '  '.join(f'{m} {r[m]:.3f}' for m in order)
                 + f"  blessed={r['blessed']}")
  if k:
    measure = (f"auc {k['auc']:.3f}" if 'auc' in k and 'rmse' not in k
               else f"rmse {k.get('rmse', float('nan')):.3f}")
    lines.append(f"  ranking:   {measure}  blessed={k['blessed']}")
  for kind, warm in (summary.get('warm_start') or {}).items():
    lines.append(f'  {kind} trainer: warm start from version {warm["from_version"]} '
                 f'({warm["rows_kept"]} embedding rows kept, {warm["rows_new"]} new)' if warm
                 else f'  {kind} trainer: trained from scratch (no blessed model yet)')
  if summary.get('feed'):
    f = summary['feed']
    lines.append(f"  feed:      hit_rate_at_10 {f.get('hit_rate_at_10', float('nan')):.3f}  "
                 f"ndcg_at_10 {f.get('ndcg_at_10', float('nan')):.3f}")
  for kind, path in summary['pushed_paths'].items():
    lines.append(f'  pushed {kind}: {path}' if path else f'  pushed {kind}: nothing')
  if summary.get('segments'):
    lines.append(f"  segments: {summary['segments']['count']} in {summary['segments']['path']}")
  lines.append(f'  metrics: {paths.metrics_path}   log: {paths.log_path}')
  return '\n'.join(lines)


def already_trained(metadata_path: str, data_dir: str, layout) -> Optional[str]:
  """The run id of a finished run whose Trainers used exactly this input, else None.

  The input is identified as ExampleGen's driver identifies it: the span and the fingerprint
  of its files (names, sizes, modification times). A scheduled run uses this to do nothing
  when no new data arrived, instead of warm-starting another round on the same span.
  """
  if not os.path.exists(metadata_path):
    return None
  from components.interaction_example_gen.component import input_config, span_range
  from components.interaction_example_gen.driver import SharedTablesInputProcessor
  processor = SharedTablesInputProcessor(
      data_dir, input_config(layout.train, layout.eval, layout.items, layout.users).splits,
      span_range(layout.span))
  span, version = processor.resolve_span_and_version()
  fingerprint = processor.get_input_fingerprint(span, version)
  store = _store(metadata_path)
  examples = [a for a in store.get_artifacts_by_type('Examples')
              if _prop(a, 'input_fingerprint') == fingerprint
              and ('span' not in a.properties or a.properties['span'].int_value == span)]
  if not examples:
    return None
  consumers = {e.execution_id for e in store.get_events_by_artifact_ids([a.id for a in examples])
               if e.type == metadata_store_pb2.Event.INPUT}
  try:
    trainer_type = store.get_execution_type('tfx.components.trainer.component.Trainer').id
    pusher_type = store.get_execution_type('tfx.components.pusher.component.Pusher').id
    run_type = store.get_context_type('pipeline_run').id
  except errors.NotFoundError:  # no run ever got as far as training and pushing
    return None
  done = (metadata_store_pb2.Execution.COMPLETE, metadata_store_pb2.Execution.CACHED)
  for execution in store.get_executions_by_id(list(consumers)):
    if execution.type_id != trainer_type or execution.last_known_state not in done:
      continue
    for run in store.get_contexts_by_execution(execution.id):
      if run.type_id != run_type:
        continue
      # The run went through to its Pushers (a run killed after training did not).
      executions = store.get_executions_by_context(run.id)
      pushers = [e for e in executions if e.type_id == pusher_type]
      if (len(pushers) >= len(P.PUSHERS)
          and all(e.last_known_state in done for e in executions)):
        return run.name
  return None
