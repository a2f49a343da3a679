"""What a run did, read back from ML Metadata: progress lines, metrics.json and the summary.

The local runner prints one line per component while the pipeline runs, keeps TFX's full log
in OUT/run.log, and afterwards reads the run's executions and artifacts from the metadata
store to write metrics.json and print a short summary.
"""
import contextlib
import dataclasses
import glob
import json
import logging
import os
import re
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

from ml_metadata.metadata_store import metadata_store
from ml_metadata import errors
from ml_metadata.proto import metadata_store_pb2

from core.served import SERVED_VERSION
from pipeline import pipeline as P
from pipeline.run_log import log_to_file

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
  (TensorFlow, Beam) reconfigure Python logging, so log records are not a reliable signal; and
  the store also sees the components that run in processes of their own.
  """

  def __init__(self, metadata_path: str, started: float, stream, interval: float = 2.0):
    super().__init__(daemon=True)
    self.metadata_path, self.started, self.stream = metadata_path, started, stream
    self.interval = interval
    self.done = threading.Event()
    self.states: Dict[str, str] = {}

  def run(self) -> None:
    while not self.done.wait(self.interval):
      self.poll()
    self.poll()

  def poll(self) -> None:
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
  """Prints component progress to ``stream``; every log record goes to ``log_path``, in order
  (``log_to_file``, which a component's own process uses too, with ``append``)."""
  with log_to_file(log_path) as file_handler:
    watcher = _ProgressWatcher(metadata_path, time.time() - 1, stream or sys.stdout)
    file_handler.addFilter(_NotFrom(watcher))
    watcher.start()
    try:
      yield
    finally:
      watcher.done.set()
      watcher.join()


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
  out = {k: v for k, v in result['metrics'].items()
         if k.startswith(('top_', 'eval_interactions', 'recent_popularity'))}
  out['blessed'] = bool(result['blessed'])
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


def _split(nodes) -> Optional[Dict[str, Any]]:
  """How the run's train and eval were cut (the ingestion records it on its Examples)."""
  examples = _output(nodes, P.EXAMPLE_GEN, 'examples')
  if examples is None or _prop(examples, 'split') is None:
    return None
  out: Dict[str, Any] = {'split': _prop(examples, 'split')}
  for key in ('eval_percent', 'eval_from'):
    if _prop(examples, key) is not None:
      out[key] = int(_prop(examples, key))
  if 'eval_from' in out:
    out['eval_from_utc'] = time.strftime('%Y-%m-%d %H:%M:%S',
                                         time.gmtime(out['eval_from']))
  return out


def _pushed(nodes, node: str) -> Dict[str, Any]:
  pushed = _output(nodes, node, 'pushed_model')
  if pushed is None or _prop(pushed, 'pushed') != 1:
    return {'version': None, 'path': None}
  return {'version': str(_prop(pushed, 'pushed_version')),
          'path': _prop(pushed, 'pushed_destination')}


def _pushed_version_of(metadata_path: str, model_dir: str) -> Optional[str]:
  """The version under serving/ that the model at ``model_dir`` is: the served version a
  ServedModel copied there, or the one a Pusher published from it."""
  store = _store(metadata_path)
  uri = os.path.dirname(model_dir.rstrip('/'))  # <Model artifact uri>/Format-Serving
  models = store.get_artifacts_by_uri(uri)
  if not models:
    return None
  served = [_prop(m, SERVED_VERSION) for m in models if _prop(m, SERVED_VERSION)]
  if served:
    return str(served[0])
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


def _refit(nodes) -> Optional[Dict[str, Any]]:
  """The refit's models and seconds when the run has one (None: the candidates are pushed)."""
  refits = {'retrieval': P.RETRIEVAL_REFIT, 'ranking': P.RANKING_REFIT}
  if not any(node in nodes for node in refits.values()):
    return None
  models = {kind: _output(nodes, node, 'model') for kind, node in refits.items()}
  return {'models': {kind: m.uri if m is not None else None for kind, m in models.items()},
          'seconds': round(sum(nodes[n]['seconds'] for n in
                               (P.REFIT_TRANSFORM, *refits.values()) if n in nodes), 1)}


def build_summary(paths: OutputPaths, started: Optional[float] = None,
                  error: Optional[BaseException] = None, span: Optional[int] = None,
                  nodes: Optional[Dict[str, Dict[str, Any]]] = None,
                  problems: Optional[List[str]] = None) -> Dict[str, Any]:
  """The run summary (metrics.json's content) of the latest run in the store.

  Args:
    started: when the run started (for its wall time); None when summarising afterwards,
      in which case a FAILED component marks the run failed.
    error: the exception the run ended with, if any.
    span: the span the run read, if any.
    nodes: ``read_run``'s result, when the caller already has it.
    problems: when given, a part that cannot be read is left empty and the reason appended
      here (the report shows what it can); otherwise the error propagates.
  """
  if nodes is None:
    nodes = read_run(paths.metadata_path) if os.path.exists(paths.metadata_path) else {}

  def read(what: str, reader, default):
    if problems is None:
      return reader()
    try:
      return reader()
    except Exception as e:  # pylint: disable=broad-except; recorded, shown by the report
      problems.append(f'could not read the {what}: {e}')
      return default

  retrieval = read('retrieval evaluation', lambda: _retrieval_metrics(nodes), {})
  ranking = read('ranking evaluation', lambda: _ranking_metrics(nodes), {})
  pushes = {'retrieval': _pushed(nodes, P.RETRIEVAL_PUSHER),
            'ranking': _pushed(nodes, P.RANKING_PUSHER),
            'feed': _pushed(nodes, P.FEED_PUSHER)}
  feed = read('feed evaluation', lambda: _feed_metrics(nodes), {})
  segments = _output(nodes, P.USER_SEGMENTER, 'segments')
  states = {v['state'] for v in nodes.values()}
  failed = error is not None or (started is None and 'FAILED' in states)
  summary: Dict[str, Any] = {
      'status': 'failed' if failed else 'succeeded' if nodes or started else 'unknown',
      'run_id': next(iter(nodes.values()))['run_id'] if nodes else None,
      'span': span,
      'warm_start': (read('warm start reports', lambda: _warm_start(nodes, paths.metadata_path),
                          {}) if nodes else {}),
      'retrieval': retrieval,
      'ranking': ranking,
      'feed': feed,
      'eval_interactions': retrieval.get('eval_interactions'),
      'split': _split(nodes),
      # The pushed models' training: None = the gated candidates themselves.
      'refit': _refit(nodes),
      'pushed': {k: v['version'] for k, v in pushes.items()},
      'pushed_paths': {k: v['path'] for k, v in pushes.items()},
      'segments': ({'count': _prop(segments, 'num_segments'),
                    'path': _prop(segments, 'pushed_destination') or segments.uri}
                   if segments is not None else None),
      'components': {n: {'state': v['state'], 'seconds': round(v['seconds'], 1)}
                     for n, v in nodes.items()},
      'wall_seconds': round(time.time() - started, 1) if started is not None else None,
  }
  if failed:
    stopped = [n for n, v in nodes.items() if v['state'] in ('FAILED', 'running')]
    # A component process killed before it recorded an execution is named by its error.
    summary['failed_component'] = (stopped[0] if stopped
                                   else getattr(error, 'node_id', None))
    if error is not None:
      summary['error'] = error_message(error)
  return summary


def summarize(paths: OutputPaths, started: float, error: Optional[BaseException],
              span: Optional[int] = None) -> Dict[str, Any]:
  """The run's metrics.json content (also written to disk); ``span``: the span read, if any."""
  summary = build_summary(paths, started, error, span)
  with open(paths.metrics_path, 'w') as f:
    json.dump(summary, f, indent=2)
  return summary


def load_summary(paths: OutputPaths) -> Tuple[Dict[str, Any], Dict[str, Dict[str, Any]],
                                              List[str]]:
  """(summary, nodes, problems) of the latest run in an output folder, for the report.

  The summary is metrics.json when it belongs to the latest run in the store (it alone knows
  a failed run's error and the wall time), else ``build_summary`` of the store; ``problems``
  says what could not be read.
  """
  problems: List[str] = []
  nodes: Dict[str, Dict[str, Any]] = {}
  if os.path.exists(paths.metadata_path):
    try:
      nodes = read_run(paths.metadata_path)
    except Exception as e:  # pylint: disable=broad-except; the report shows what it can
      problems.append(f'could not read the metadata store: {e}')
  saved = None
  if os.path.exists(paths.metrics_path):
    with open(paths.metrics_path) as f:
      saved = json.load(f)
  run_id = next(iter(nodes.values()))['run_id'] if nodes else None
  if saved is not None and (not nodes or saved.get('run_id') in (None, run_id)):
    return saved, nodes, problems
  if saved is None and nodes:
    problems.append('no metrics.json: the figures were computed from the metadata store')
  elif saved is not None:
    problems.append(f'metrics.json is from run {saved.get("run_id")}, not from the latest '
                    f'run {run_id}; the figures were computed from the metadata store')
  return build_summary(paths, nodes=nodes, problems=problems), nodes, problems


# --- the detail behind the summary, for the report --------------------------------------------

def _first_output(nodes, artifact_type: str, key: Optional[str] = None,
                  prefer_node: Optional[str] = None) -> Tuple[Optional[str], Any]:
  """(node id, artifact) of the first output of a type (and key), preferring a node."""
  for node in sorted(nodes, key=lambda n: n != prefer_node):
    for k, artifacts in nodes[node]['outputs'].items():
      for artifact in artifacts:
        if artifact.type == artifact_type and (key is None or k == key):
          return node, artifact
  return None, None


def split_dirs(uri: str) -> Dict[str, str]:
  """{split: folder} of an artifact with Split-* folders, train and eval first."""
  from core import features as F
  found = {os.path.basename(d)[len('Split-'):]: d
           for d in sorted(glob.glob(os.path.join(uri, 'Split-*')))}
  order = {s: i for i, s in enumerate(F.SPLITS)}
  return dict(sorted(found.items(), key=lambda kv: (order.get(kv[0], 99), kv[0])))


def load_statistics(uri: str) -> Dict[str, Any]:
  """{split: DatasetFeatureStatisticsList} of a StatisticsGen artifact."""
  import tensorflow_data_validation as tfdv
  out = {}
  for split, folder in split_dirs(uri).items():
    binary = os.path.join(folder, 'FeatureStats.pb')
    if os.path.exists(binary):
      stats = tfdv.load_stats_binary(binary)
    else:
      records = glob.glob(os.path.join(folder, 'stats_tfrecord*'))
      if not records:
        continue
      stats = tfdv.load_statistics(records[0])
    if stats.datasets:
      out[split] = stats
  return out


def load_anomalies(uri: str) -> List[Dict[str, str]]:
  """One {split, feature, anomaly, detail} per anomaly of an ExampleValidator artifact."""
  from tensorflow_metadata.proto.v0 import anomalies_pb2
  rows = []
  for split, folder in split_dirs(uri).items():
    path = os.path.join(folder, 'SchemaDiff.pb')
    if not os.path.exists(path):
      continue
    anomalies = anomalies_pb2.Anomalies()
    with open(path, 'rb') as f:
      anomalies.ParseFromString(f.read())
    for feature, info in sorted(anomalies.anomaly_info.items()):
      rows.append({'split': split, 'feature': feature,
                   'anomaly': ('; '.join(r.short_description for r in info.reason)
                               or info.short_description),
                   'detail': info.description})
    if anomalies.HasField('dataset_anomaly_info'):
      info = anomalies.dataset_anomaly_info
      rows.append({'split': split, 'feature': '(dataset)', 'anomaly': info.short_description,
                   'detail': info.description})
  return rows


def _tfma_overall(result) -> Dict[str, float]:
  out = {}
  for slice_key, metrics in result.slicing_metrics:
    if slice_key == ():
      by_output = next(iter(metrics.values()), {})
      for name, value in next(iter(by_output.values()), {}).items():
        number = value.get('doubleValue')
        if number is None and 'boundedValue' in value:
          number = value['boundedValue'].get('value')
        if number is not None:
          out[name] = float(number)
  return out


def ranking_evaluation(uri: str) -> Dict[str, Any]:
  """{'candidate': metrics, 'baseline': metrics or {}, 'failures': [reason]} of TFMA's result."""
  import tensorflow_model_analysis as tfma
  first = tfma.load_eval_result(uri)
  specs = list(first.config.model_specs) if first.config else []
  baseline = next((s.name for s in specs if s.is_baseline), None)
  out: Dict[str, Any] = {'candidate': _tfma_overall(first), 'baseline': {}}
  if baseline is not None:
    candidate = next((s.name for s in specs if not s.is_baseline), '')
    out['candidate'] = _tfma_overall(tfma.load_eval_result(uri, model_name=candidate))
    out['baseline'] = _tfma_overall(tfma.load_eval_result(uri, model_name=baseline))
  out['failures'] = _ranking_failures(tfma, tfma.load_validation_result(uri))
  return out


def _bounds(threshold) -> str:
  limits = []
  if threshold.HasField('upper_bound'):
    limits.append(f'<= {threshold.upper_bound.value:.4f}')
  if threshold.HasField('lower_bound'):
    limits.append(f'>= {threshold.lower_bound.value:.4f}')
  return ' and '.join(limits)


def _ranking_failures(tfma, validation) -> List[str]:
  """TFMA's validation failures in words ('RMSE changed by +0.0524 against the blessed...')."""
  reasons = []
  for per_slice in validation.metric_validations_per_slice:
    for failure in per_slice.failures:
      key, threshold = failure.metric_key, failure.metric_threshold
      value = failure.metric_value.double_value.value
      name = key.name.replace('root_mean_squared_error', 'RMSE')
      if key.is_diff and threshold.HasField('change_threshold'):
        change = threshold.change_threshold
        allowed = []
        if change.HasField('absolute'):
          allowed.append(f'{change.absolute.value:+.4f}')
        if change.HasField('relative'):
          allowed.append(f'{change.relative.value:+.1%} relative')
        direction = tfma.MetricDirection.Name(change.direction).lower().replace('_', ' ')
        reasons.append(f'{name} changed by {value:+.4f} against the blessed model; allowed: '
                       f'{" / ".join(allowed) or "no change"} ({direction})')
      elif threshold.HasField('value_threshold'):
        reasons.append(f'{name} is {value:.4f}; it must be {_bounds(threshold.value_threshold)}')
      else:
        reasons.append(f'{name} = {value:.4f} failed its threshold')
  if not validation.validation_ok and not reasons:
    reasons.append(' '.join(str(validation).split())[:300])
  return reasons


def _json_in(artifact, name: str) -> Optional[Dict[str, Any]]:
  path = artifact is not None and os.path.join(artifact.uri, name)
  if not path or not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def read_segments(summary: Dict[str, Any]) -> Optional[Dict[str, Any]]:
  """The segments.json the UserSegmenter pushed (what each segment is), or None."""
  folder = (summary.get('segments') or {}).get('path')
  path = folder and os.path.join(folder, 'segments.json')
  if not path or not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def read_details(paths: OutputPaths, nodes: Dict[str, Dict[str, Any]],
                 summary: Dict[str, Any], problems: List[str]) -> Dict[str, Any]:
  """What the report shows beside the summary, read from the run's artifacts.

  Keys: 'states' {node: state}, 'examples', 'statistics' and 'anomalies' ({'node', 'uri',
  ...} or None), 'trainers' [{'node', 'uri', 'history'}], 'retrieval_evaluation' (the
  evaluator's metrics.json), 'ranking_evaluation' (``ranking_evaluation``), 'feed_evaluation'
  (feed_metrics.json), 'segments' (``read_segments``) and 'timings' [{'node', 'state',
  'seconds'}] in run order. A part that cannot be read is None, with the reason in
  ``problems``.
  """
  def read(what: str, reader):
    try:
      return reader()
    except Exception as e:  # pylint: disable=broad-except; one part, not the whole report
      problems.append(f'could not read the {what}: {e}')
      return None

  details: Dict[str, Any] = {
      'states': {n: v['state'] for n, v in (summary.get('components') or {}).items()}}
  details['states'].update({n: v['state'] for n, v in nodes.items()})
  node, examples = _first_output(nodes, 'Examples', prefer_node=P.EXAMPLE_GEN)
  details['examples'] = {'node': node, 'uri': examples.uri} if examples is not None else None
  node, statistics = _first_output(nodes, 'ExampleStatistics', 'statistics', 'StatisticsGen')
  details['statistics'] = statistics and read('statistics', lambda: {
      'node': node, 'uri': statistics.uri, 'splits': load_statistics(statistics.uri)})
  node, anomalies = _first_output(nodes, 'ExampleAnomalies', 'anomalies', 'ExampleValidator')
  details['anomalies'] = anomalies and read('anomalies', lambda: {
      'node': node, 'uri': anomalies.uri, 'splits': list(split_dirs(anomalies.uri)),
      'rows': load_anomalies(anomalies.uri)})
  details['trainers'] = [
      {'node': trainer, 'uri': _output(nodes, trainer, 'model_run').uri,
       'history': read(f'{trainer} history',
                       lambda t=trainer: _json_in(_output(nodes, t, 'model_run'),
                                                  'history.json'))}
      for trainer in (P.RETRIEVAL_TRAINER, P.RANKING_TRAINER)
      if _output(nodes, trainer, 'model_run') is not None]
  details['retrieval_evaluation'] = read('retrieval evaluation', lambda: _json_in(
      _output(nodes, P.RETRIEVAL_EVALUATOR, 'evaluation'), 'metrics.json'))
  evaluation = _output(nodes, P.RANKING_EVALUATOR, 'evaluation')
  details['ranking_evaluation'] = evaluation and read(
      'ranking evaluation (TFMA)', lambda: ranking_evaluation(evaluation.uri))
  details['feed_evaluation'] = read('feed evaluation', lambda: _json_in(
      _output(nodes, P.FEED_BUILDER, 'evaluation'), 'feed_metrics.json'))
  details['segments'] = read('segments', lambda: read_segments(summary))
  components = summary.get('components') or {}
  order = list(nodes) + [n for n in components if n not in nodes]
  details['timings'] = []
  for n in order:
    info = components.get(n) or {'state': nodes[n]['state'],
                                 'seconds': round(nodes[n]['seconds'], 1)}
    details['timings'].append({'node': n, 'state': info.get('state', 'unknown'),
                               'seconds': float(info.get('seconds') or 0.0)})
  return details


def error_message(error: BaseException) -> str:
  """The user-facing part of an exception (Beam wraps the original message in context)."""
  text = str(error).strip()
  match = re.search(r"(InputDataError|DataAnomalyError|LayoutError|ValueError): (.*?)"
                    r"(?: \[while running '[^']*'\])?$", text, re.S)
  return (match.group(2) if match else text).strip()


def recent_popularity_lines(retrieval: Dict[str, Any]) -> List[str]:
  """top_100_unseen of returning and new users beside the recent-popularity list's."""
  recent = retrieval.get('recent_popularity')
  if not recent or 'top_100_unseen_returning' not in retrieval:
    return []
  window = recent.get('window_days')
  lines = [f"top_100_unseen by user: model / recent-popularity list "
           f"({f'last {window} days' if window else 'all of train'})"]
  for group in ('', '_returning', '_new'):
    rows = retrieval.get(f'eval_interactions{group}')
    lines.append(f"  {group.strip('_') or 'all'}: {retrieval[f'top_100_unseen{group}']:.3f} / "
                 f"{recent[f'top_100_unseen{group}']:.3f}  ({rows} eval interactions)")
  return lines


def warm_start_lines(summary: Dict[str, Any]) -> List[str]:
  """One line per trainer: the version it warm-started from, or that it started from scratch."""
  return [f'{kind} trainer: warm start from version {warm["from_version"]} '
          f'({warm["rows_kept"]} embedding rows kept, {warm["rows_new"]} new)' if warm
          else f'{kind} trainer: trained from scratch (nothing served yet, or --no-warm-start)'
          for kind, warm in (summary.get('warm_start') or {}).items()]


def refit_lines(summary: Dict[str, Any]) -> List[str]:
  """What the pushed models learnt: the refit on train + eval, or the candidates alone."""
  refit = summary.get('refit')
  if refit:
    return [f"refit: the models to push learnt train + eval, starting from the judged ones "
            f"({refit['seconds']:.0f} s)"]
  return ['refit: off (--no-refit): the models to push are the judged ones'] if (
      summary.get('components') and 'refit' in summary) else []


def format_summary(summary: Dict[str, Any], paths: OutputPaths) -> str:
  span = f" on span {summary['span']}" if summary.get('span') is not None else ''
  lines = ['', f"Run {summary['status']}{span} in {summary['wall_seconds']:.0f} s"]
  if summary.get('error'):
    lines.append(f"  failed in {summary.get('failed_component') or 'the pipeline'}: "
                 f"{summary['error']}")
  r, k = summary['retrieval'], summary['ranking']
  split = summary.get('split')
  if split:
    lines.append('  evaluated on ' + (
        f"the interactions from {split['eval_from_utc']} UTC on (split by time)"
        if split['split'] == 'time' else
        f"a {split['eval_percent']}% hash hold-out (a random split)"
        if split['split'] == 'hash' else 'the eval folder given'))
  if r:
    order = sorted((m for m in r if m.startswith('top_') and m.count('_') <= 2),
                   key=lambda m: ('unseen' in m, int(m.split('_')[1])))
    lines.append('  retrieval: ' + '  '.join(f'{m} {r[m]:.3f}' for m in order)
                 + f"  blessed={r['blessed']}")
    lines += [f'  {line}' for line in recent_popularity_lines(r)]
  if k:
    measure = (f"auc {k['auc']:.3f}" if 'auc' in k and 'rmse' not in k
               else f"rmse {k.get('rmse', float('nan')):.3f}")
    lines.append(f"  ranking:   {measure}  blessed={k['blessed']}")
  lines += [f'  {line}' for line in warm_start_lines(summary)]
  lines += [f'  {line}' for line in refit_lines(summary)]
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
