"""An HTML report of a run, for a person: data, training, evaluation, pushes, timing.

    python -m pipeline.report --output-dir OUT

writes OUT/report/index.html (self-contained: CSS inline, figures as base64 PNGs) from the ML
Metadata store and the artifacts of the latest run, plus OUT/metrics.json when it belongs to
that run (it alone knows a failed run's error). The headline figures are metrics.json's own
values, or are computed by the same run_summary helpers from the same artifacts when it is
missing, so the report and metrics.json always agree. TFDV's interactive statistics view needs
Facets from the web, so it goes to a separate, linked page (OUT/report/statistics.html).
"""
import argparse
import base64
import datetime
import glob
import html
import io
import json
import logging
import os
import sys
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

# Before TensorFlow is first imported (through TFDV / TFMA / MLMD helpers below).
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from pipeline import features as F  # noqa: E402
from pipeline import run_summary  # noqa: E402

REPORT_DIR = 'report'
INDEX = 'index.html'
STATISTICS_PAGE = 'statistics.html'

# Section ids and headings, in page order (the tests look for these headings).
SECTIONS = (('data', 'Data'), ('training', 'Training'), ('evaluation', 'Evaluation'),
            ('pushed', 'Pushed models'), ('segments', 'Segments'), ('timing', 'Timing'))

_STATE_COLOURS = {'done': '#3b6fb6', 'cached': '#9aa5b1', 'FAILED': '#c62828',
                  'running': '#e0a100', 'canceled': '#e0a100'}
_LOSS_KEYS = ('loss', 'total_loss', 'regularization_loss')


# --- formatting -----------------------------------------------------------------------------

def format_metric(value: Any) -> str:
  """How the report prints a retrieval rate or an RMSE (as the console summary does)."""
  if value is None or isinstance(value, (bool, int)):
    return _number(value)
  try:
    return f'{float(value):.3f}'
  except (TypeError, ValueError):
    return str(value)


def _number(value: Any) -> str:
  """A compact general-purpose number (feature statistics, generic tables)."""
  if value is None:
    return '—'
  if isinstance(value, bool):
    return 'yes' if value else 'no'
  if isinstance(value, int):
    return f'{value:,}'
  if isinstance(value, float):
    if value != value:  # NaN
      return '—'
    if value == int(value) and abs(value) < 1e15:
      return f'{int(value):,}'
    if abs(value) >= 1000:
      return f'{value:,.0f}' if abs(value) < 1e12 else f'{value:.4g}'
    return f'{value:.4g}'
  return str(value)


def _seconds(value: Optional[float]) -> str:
  if value is None:
    return '—'
  if value >= 90:
    return f'{value / 60:.1f} min'
  return f'{value:.1f} s'


def _e(text: Any) -> str:
  return html.escape(str(text), quote=True)


def _badge(ok: Optional[bool], yes: str = 'blessed', no: str = 'not blessed') -> str:
  if ok is None:
    return '<span class="badge muted">not evaluated</span>'
  return (f'<span class="badge ok">{_e(yes)}</span>' if ok
          else f'<span class="badge bad">{_e(no)}</span>')


def _note(text: str, kind: str = 'muted') -> str:
  return f'<p class="note {kind}">{text}</p>'


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], cls: str = '') -> str:
  """A table from already-escaped cell HTML."""
  head = ''.join(f'<th>{h}</th>' for h in header)
  body = ''.join('<tr>' + ''.join(f'<td>{c}</td>' for c in row) + '</tr>' for row in rows)
  return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _keyed(key: str, text: str) -> str:
  """A value the tests (and anyone scraping the page) can find by data-key."""
  return f'<span data-key="{_e(key)}">{_e(text)}</span>'


def render_value(value: Any, depth: int = 0) -> str:
  """Any JSON value as HTML: dicts as key/value tables, lists of dicts as tables."""
  if isinstance(value, dict):
    if not value:
      return '<span class="muted">(empty)</span>'
    rows = [(f'<code>{_e(k)}</code>', render_value(v, depth + 1)) for k, v in value.items()]
    return _table(['', ''], rows, cls='kv nested' if depth else 'kv')
  if isinstance(value, list):
    if value and all(isinstance(v, dict) for v in value):
      columns = list(dict.fromkeys(k for v in value for k in v))
      rows = [[render_value(v.get(c), depth + 1) for c in columns] for v in value[:50]]
      more = f'<p class="note muted">… {len(value) - 50} more</p>' if len(value) > 50 else ''
      return _table([_e(c) for c in columns], rows) + more
    return _e(', '.join(_number(v) for v in value[:50])) + (' …' if len(value) > 50 else '')
  if isinstance(value, float):
    return _e(format_metric(value))
  return _e(_number(value))


def status_banner(summary: Dict[str, Any]) -> str:
  """The run's status line, and for a failed run its error in a red alert box."""
  status = summary.get('status') or 'unknown'
  wall = summary.get('wall_seconds')
  parts = [f'<span class="badge {"ok" if status == "succeeded" else "bad"}">{_e(status)}</span>']
  if wall:
    parts.append(f'<span>wall time {_e(_seconds(wall))}</span>')
  if summary.get('run_id'):
    parts.append(f'<span class="muted">run {_e(summary["run_id"])}</span>')
  if summary.get('span') is not None:
    parts.append(f'<span>span {_e(summary["span"])}</span>')
  for kind, warm in (summary.get('warm_start') or {}).items():
    parts.append(f'<span>{_e(kind)}: warm start from version {_e(warm["from_version"])}</span>'
                 if warm else f'<span class="muted">{_e(kind)}: trained from scratch</span>')
  out = '<div class="status">' + ' '.join(parts) + '</div>'
  if status == 'failed' or summary.get('error'):
    where = summary.get('failed_component') or 'the pipeline'
    error = summary.get('error') or 'no error message was recorded'
    out += ('<div class="alert" role="alert"><strong>The run failed in '
            f'{_e(where)}.</strong><pre class="error">{_e(error)}</pre>'
            '<p>The sections below show what the completed components produced; '
            'the full log is in <code>run.log</code>.</p></div>')
  return out


# --- figures --------------------------------------------------------------------------------

def _figure(width: float, height: float):
  from matplotlib.figure import Figure  # Agg canvas below: no display, no global backend
  fig = Figure(figsize=(width, height), dpi=110)
  return fig


def _png(fig, alt: str) -> str:
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  FigureCanvasAgg(fig)
  fig.tight_layout()
  buffer = io.BytesIO()
  fig.savefig(buffer, format='png')
  data = base64.b64encode(buffer.getvalue()).decode('ascii')
  return f'<img class="figure" alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _style(ax) -> None:
  ax.grid(True, color='#e5e8ec', linewidth=0.8)
  ax.set_axisbelow(True)
  for side in ('top', 'right'):
    ax.spines[side].set_visible(False)
  ax.tick_params(labelsize=9)


def history_figure(name: str, history: Dict[str, List[float]]) -> Optional[str]:
  """Loss and the main metric per epoch, train and validation where present."""
  loss = next((k for k in _LOSS_KEYS if history.get(k)), None)
  metric = next((k for k in history if not k.startswith('val_') and k not in _LOSS_KEYS
                 and history[k]), None)
  panels = [k for k in (loss, metric) if k]
  if not panels:
    return None
  fig = _figure(5.2 * len(panels), 3.3)
  for i, key in enumerate(panels):
    ax = fig.add_subplot(1, len(panels), i + 1)
    for series, label, colour in ((key, 'train', '#3b6fb6'), ('val_' + key, 'validation',
                                                                '#e07b00')):
      values = history.get(series)
      if values:
        epochs = list(range(1, len(values) + 1))
        ax.plot(epochs, values, marker='o', markersize=3, linewidth=1.6, label=label,
                color=colour)
    ax.set_title(f'{name}: {key.replace("_", " ")}', fontsize=10)
    ax.set_xlabel('epoch', fontsize=9)
    ax.xaxis.get_major_locator().set_params(integer=True)
    _style(ax)
    ax.legend(fontsize=8, frameon=False)
  return _png(fig, f'{name} training curves')


def comparison_figure(title: str, names: Sequence[str], current: Sequence[float],
                      baseline: Optional[Sequence[Optional[float]]]) -> str:
  """This run's metrics as bars, beside the blessed baseline's when there is one."""
  import numpy as np
  fig = _figure(min(7.5, 2.0 + 1.1 * len(names) * (2 if baseline else 1)), 3.0)
  ax = fig.add_subplot(1, 1, 1)
  x = np.arange(len(names))
  width = 0.38 if baseline else 0.6
  bars = ax.bar(x - (width / 2 if baseline else 0), current, width, label='this run',
                color='#3b6fb6')
  ax.bar_label(bars, labels=[format_metric(v) for v in current], fontsize=8, padding=2)
  if baseline:
    values = [v if v is not None else 0.0 for v in baseline]
    bars = ax.bar(x + width / 2, values, width, label='blessed baseline', color='#9aa5b1')
    ax.bar_label(bars, labels=[format_metric(v) for v in baseline], fontsize=8, padding=2)
  ax.set_xticks(x, [n.replace('_', ' ') for n in names], fontsize=9)
  top = max([*current, *([v for v in baseline or [] if v is not None])] or [1.0])
  ax.set_ylim(0, top * 1.18 if top > 0 else 1.0)
  ax.set_title(title, fontsize=10)
  _style(ax)
  ax.legend(fontsize=8, frameon=False, loc='upper left')
  return _png(fig, title)


def timing_figure(rows: Sequence[Tuple[str, str, float]]) -> str:
  """Horizontal bars of wall time per component, first component at the top."""
  fig = _figure(5.4, 0.3 * len(rows) + 1.1)
  ax = fig.add_subplot(1, 1, 1)
  names = [r[0] for r in rows][::-1]
  seconds = [r[2] for r in rows][::-1]
  colours = [_STATE_COLOURS.get(r[1], '#3b6fb6') for r in rows][::-1]
  bars = ax.barh(names, seconds, color=colours, height=0.65)
  states = [r[1] for r in rows][::-1]
  ax.bar_label(bars, labels=[f'{s:.1f}' if s >= 0.05 else ('cached' if st == 'cached' else '')
                             for s, st in zip(seconds, states)],
               fontsize=8, padding=3, color='#3e4c59')
  ax.set_xlabel('seconds', fontsize=9)
  ax.set_xlim(0, max(seconds + [1.0]) * 1.18)
  ax.tick_params(axis='y', labelsize=9)
  _style(ax)
  ax.grid(False, axis='y')
  states = list(dict.fromkeys(r[1] for r in rows))
  if len(states) > 1 and any(r[2] >= 0.05 for r in rows if r[1] != 'done'):
    from matplotlib.patches import Patch
    ax.legend(handles=[Patch(color=_STATE_COLOURS.get(s, '#3b6fb6'), label=s) for s in states],
              fontsize=8, frameon=False, loc='lower right')
  return _png(fig, 'wall time per component')


# --- reading the run ------------------------------------------------------------------------

def _id(constant: str, default: str) -> str:
  """A component id from pipeline.py, with a default for stores written by older code."""
  return getattr(run_summary.P, constant, default)


class Run:
  """What the report shows: metrics.json's summary, the run's nodes and their artifacts."""

  def __init__(self, output_dir: str):
    self.paths = run_summary.OutputPaths(os.path.abspath(output_dir))
    self.nodes: Dict[str, Dict[str, Any]] = {}
    self.problems: List[str] = []
    if os.path.exists(self.paths.metadata_path):
      try:
        self.nodes = run_summary.read_run(self.paths.metadata_path)
      except Exception as e:  # pylint: disable=broad-except; the report shows what it can
        self.problems.append(f'could not read the metadata store: {e}')
    saved = None
    if os.path.exists(self.paths.metrics_path):
      with open(self.paths.metrics_path) as f:
        saved = json.load(f)
    run_id = next(iter(self.nodes.values()))['run_id'] if self.nodes else None
    if saved is not None and (not self.nodes or saved.get('run_id') in (None, run_id)):
      self.summary = saved
    else:
      if saved is None and self.nodes:
        self.problems.append('no metrics.json: the figures were computed from the store')
      if saved is not None:
        self.problems.append(f'metrics.json is from run {saved.get("run_id")}, not from the '
                             f'latest run {run_id}; figures were recomputed from the store')
      self.summary = self._summary_from_store()

  def _summary_from_store(self) -> Dict[str, Any]:
    """metrics.json's content, computed by run_summary's own helpers (nothing is written)."""
    nodes = self.nodes
    states = {v['state'] for v in nodes.values()}
    summary: Dict[str, Any] = {
        'status': ('failed' if 'FAILED' in states else 'incomplete' if 'running' in states
                   else 'succeeded' if nodes else 'unknown'),
        'run_id': next(iter(nodes.values()))['run_id'] if nodes else None,
        'components': {n: {'state': v['state'], 'seconds': round(v['seconds'], 1)}
                       for n, v in nodes.items()},
    }
    for key, read in (('retrieval', run_summary._retrieval_metrics),  # pylint: disable=protected-access
                      ('ranking', run_summary._ranking_metrics)):  # pylint: disable=protected-access
      try:
        summary[key] = read(nodes)
      except Exception as e:  # pylint: disable=broad-except
        summary[key] = {}
        self.problems.append(f'could not read the {key} evaluation: {e}')
    pushes = {}
    for kind, node in (('retrieval', _id('RETRIEVAL_PUSHER', 'RetrievalPusher')),
                       ('ranking', _id('RANKING_PUSHER', 'RankingPusher'))):
      pushes[kind] = run_summary._pushed(nodes, node)  # pylint: disable=protected-access
    summary['pushed'] = {k: v['version'] for k, v in pushes.items()}
    summary['pushed_paths'] = {k: v['path'] for k, v in pushes.items()}
    summary['eval_interactions'] = summary['retrieval'].get('eval_interactions')
    failed = [n for n, v in nodes.items() if v['state'] in ('FAILED', 'running')]
    if failed:
      summary['failed_component'] = failed[0]
    return summary

  def output(self, node: Optional[str], key: str):
    found = self.nodes.get(node or '', {}).get('outputs', {}).get(key) or []
    return found[0] if found else None

  def find(self, artifact_type: str, key: Optional[str] = None,
           prefer_node: Optional[str] = None) -> Tuple[Optional[str], Any]:
    """(node id, artifact) of the first output of a type (and key), preferring a node."""
    order = sorted(self.nodes, key=lambda n: n != prefer_node)
    for node in order:
      for k, artifacts in self.nodes[node]['outputs'].items():
        for artifact in artifacts:
          if artifact.type == artifact_type and (key is None or k == key):
            return node, artifact
    return None, None

  def state(self, node: Optional[str]) -> str:
    return self.nodes.get(node or '', {}).get('state', 'not run')


def _missing(what: str, node: Optional[str], run: Run) -> str:
  state = run.state(node)
  why = (f'{node} failed' if state == 'FAILED'
         else f'{node} did not run' if state == 'not run'
         else f'{node} did not complete ({state})')
  return _note(f'No {_e(what)}: {_e(why)}.')


# --- section 1: data ------------------------------------------------------------------------

def _split_dirs(uri: str) -> Dict[str, str]:
  dirs = sorted(glob.glob(os.path.join(uri, 'Split-*')))
  found = {os.path.basename(d)[len('Split-'):]: d for d in dirs}
  order = {s: i for i, s in enumerate(F.SPLITS)}
  return dict(sorted(found.items(), key=lambda kv: (order.get(kv[0], 99), kv[0])))


def load_statistics(uri: str) -> Dict[str, Any]:
  """{split: DatasetFeatureStatistics} of a StatisticsGen artifact."""
  import tensorflow_data_validation as tfdv
  out = {}
  for split, folder in _split_dirs(uri).items():
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


def _feature(dataset, name: str):
  return next((f for f in dataset.features
               if (f.path.step and '.'.join(f.path.step) == name) or f.name == name), None)


def _unique(dataset, name: str) -> Optional[int]:
  feature = _feature(dataset, name)
  if feature is not None and feature.HasField('string_stats'):
    return int(feature.string_stats.unique)
  return None


def _common(feature):
  kind = feature.WhichOneof('stats')
  if kind == 'num_stats':
    return feature.num_stats.common_stats
  if kind == 'string_stats':
    return feature.string_stats.common_stats
  if kind == 'bytes_stats':
    return feature.bytes_stats.common_stats
  if kind == 'struct_stats':
    return feature.struct_stats.common_stats
  return None


def _feature_order(name: str) -> Tuple[int, str]:
  fixed = [F.USER_ID, F.ITEM_ID, F.RATING, F.TIMESTAMP]
  if name in fixed:
    return fixed.index(name), name
  return (4 if F.is_item_feature(name) else 5 if F.is_user_feature(name) else 6), name


def _stat(value: float) -> str:
  if value == int(value) and abs(value) < 1e15:
    return str(int(value))
  return f'{value:.1f}' if abs(value) >= 100 else f'{value:.3g}'


def _as_date(value: float) -> str:
  seconds = value / 1000.0 if value > 1e11 else value
  try:
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime('%Y-%m-%d')
  except (OverflowError, OSError, ValueError):
    return _number(value)


def feature_rows(dataset, limit: int = 40) -> List[List[str]]:
  """type, missing %, unique or mean, min, max and top values of each feature."""
  from tensorflow_metadata.proto.v0 import statistics_pb2
  rows = []
  features = sorted(dataset.features,
                    key=lambda f: _feature_order('.'.join(f.path.step) or f.name))
  for feature in features[:limit]:
    name = '.'.join(feature.path.step) or feature.name
    common = _common(feature)
    total = (common.num_missing + common.num_non_missing) if common is not None else 0
    missing = (100.0 * common.num_missing / total) if total else 0.0
    missing_html = _e(f'{missing:.1f} %')
    if missing >= 5:
      missing_html = f'<span class="warn-text">{missing_html}</span>'
    kind = statistics_pb2.FeatureNameStatistics.Type.Name(feature.type)
    if feature.HasField('num_stats'):
      n = feature.num_stats
      show = _as_date if name == F.TIMESTAMP else _stat
      middle, low, high = f'mean {show(n.mean)}', show(n.min), show(n.max)
      top = '—'
    elif feature.HasField('string_stats'):
      s = feature.string_stats
      middle, low, high = f'{s.unique:,} unique', '—', '—'
      values = [v.value for v in s.top_values[:3]] or [
          b.label for b in s.rank_histogram.buckets[:3]]
      top = ', '.join(v if len(v) <= 28 else v[:27] + '…' for v in values) or '—'
    else:
      middle, low, high, top = '—', '—', '—', '—'
    rows.append([f'<code>{_e(name)}</code>', _e(kind.lower()), missing_html, _e(middle),
                 _e(low), _e(high), f'<span class="small">{_e(top)}</span>'])
  return rows


def load_anomalies(uri: str) -> Dict[str, Any]:
  """{split: Anomalies} of an ExampleValidator artifact."""
  from tensorflow_metadata.proto.v0 import anomalies_pb2
  out = {}
  for split, folder in _split_dirs(uri).items():
    path = os.path.join(folder, 'SchemaDiff.pb')
    if os.path.exists(path):
      anomalies = anomalies_pb2.Anomalies()
      with open(path, 'rb') as f:
        anomalies.ParseFromString(f.read())
      out[split] = anomalies
  return out


def anomalies_html(by_split: Dict[str, Any]) -> str:
  if not by_split:
    return _note('No anomalies artifact.')
  rows = []
  for split, anomalies in by_split.items():
    for feature, info in sorted(anomalies.anomaly_info.items()):
      reasons = '; '.join(r.short_description for r in info.reason) or info.short_description
      rows.append([_e(split), f'<code>{_e(feature)}</code>', _e(reasons),
                   _e(info.description)])
    if anomalies.HasField('dataset_anomaly_info'):
      info = anomalies.dataset_anomaly_info
      rows.append([_e(split), '(dataset)', _e(info.short_description), _e(info.description)])
  splits = ', '.join(by_split)
  if not rows:
    return f'<p class="note ok-text">✓ No anomalies against the schema in {_e(splits)}.</p>'
  return ('<div class="alert"><strong>Anomalies against the schema</strong>'
          + _table(['split', 'feature', 'anomaly', 'detail'], rows) + '</div>')


def write_statistics_page(stats: Dict[str, Any], report_dir: str) -> Optional[str]:
  """TFDV's own Facets view of train (beside eval) as a separate page; None if unavailable."""
  if 'train' not in stats:
    return None
  from tensorflow_data_validation.utils import display_util
  kwargs = {}
  if 'eval' in stats:
    kwargs = dict(rhs_statistics=stats['eval'], lhs_name='train', rhs_name='eval')
  body = display_util.get_statistics_html(stats['train'], **kwargs)
  page = ('<!DOCTYPE html><html><head><meta charset="utf-8"><title>TFDV statistics</title>'
          '</head><body style="margin:0;font:14px sans-serif">'
          '<p style="margin:8px 12px;color:#555">TFDV\'s Facets view of the train split (left) '
          'and eval (right). It loads its viewer from cdnjs.cloudflare.com and '
          'raw.githubusercontent.com: if nothing appears below, those are unreachable from '
          'here; <a href="index.html#data">the report</a> has the main statistics.</p>' + body.replace('height="500px"', 'height="1200px"')
          + '</body></html>')
  with open(os.path.join(report_dir, STATISTICS_PAGE), 'w', encoding='utf-8') as f:
    f.write(page)
  return STATISTICS_PAGE


def data_section(run: Run, report_dir: str) -> str:
  parts = []
  gen_node, examples = run.find('Examples', prefer_node=_id('EXAMPLE_GEN', ''))
  if examples is not None:
    parts.append(f'<p class="small muted">Examples from {_e(gen_node)}: '
                 f'<code>{_e(examples.uri)}</code></p>')
  stats_node, statistics = run.find('ExampleStatistics', key='statistics',
                                    prefer_node='StatisticsGen')
  if statistics is None:
    parts.append(_missing('statistics', stats_node or 'StatisticsGen', run))
  else:
    loaded = load_statistics(statistics.uri)
    stats = {s: v.datasets[0] for s, v in loaded.items()}
    rows = []
    for split, dataset in stats.items():
      rows.append([f'<strong>{_e(split)}</strong>',
                   _keyed(f'data.{split}.rows', _number(int(dataset.num_examples))),
                   _e(_number(_unique(dataset, F.USER_ID))),
                   _e(_number(_unique(dataset, F.ITEM_ID))),
                   _e(str(len(dataset.features)))])
    parts.append('<h3>Rows per split</h3>' + _table(
        ['split', 'rows', 'distinct users', 'distinct items', 'features'], rows, cls='num'))
    if 'train' in stats:
      parts.append('<h3>Features (train split)</h3>' + _table(
          ['feature', 'type', 'missing', 'unique / mean', 'min', 'max', 'top values'],
          feature_rows(stats['train']), cls='features'))
    try:
      page = write_statistics_page(loaded, report_dir)
      if page:
        parts.append(f'<p class="small"><a href="{_e(page)}">TFDV statistics view (train vs '
                     'eval)</a> <span class="muted">— interactive Facets page; needs internet '
                     'access (it loads its viewer from the web).</span></p>')
    except Exception as e:  # pylint: disable=broad-except; an extra, not worth failing for
      logging.warning('no TFDV statistics page: %s', e)
  parts.append('<h3>Anomalies</h3>')
  val_node, anomalies = run.find('ExampleAnomalies', key='anomalies',
                                 prefer_node='ExampleValidator')
  if anomalies is None:
    parts.append(_missing('anomalies', val_node or 'ExampleValidator', run))
  else:
    parts.append(anomalies_html(load_anomalies(anomalies.uri)))
  return ''.join(parts)


# --- section 2: training --------------------------------------------------------------------

def _history_summary(history: Dict[str, List[float]]) -> str:
  epochs = max((len(v) for v in history.values()), default=0)
  bits = [f'{epochs} epochs']
  for key in history:
    if key.startswith('val_') and key[4:] not in _LOSS_KEYS and history[key]:
      values = history[key]
      best = min(range(len(values)), key=values.__getitem__)
      bits.append(f'best {key.replace("_", " ")} {_number(values[best])} at epoch {best + 1}')
      break
  loss = next((k for k in _LOSS_KEYS if history.get(k)), None)
  if loss:
    bits.append(f'final {loss.replace("_", " ")} {_number(history[loss][-1])}')
  return ' · '.join(bits)


def training_section(run: Run) -> str:
  parts = []
  trainers = [(n, v['outputs']['model_run'][0]) for n, v in run.nodes.items()
              if v['outputs'].get('model_run')]
  expected = [_id('RETRIEVAL_TRAINER', 'RetrievalTrainer'),
              _id('RANKING_TRAINER', 'RankingTrainer')]
  shown = set()
  for node, artifact in sorted(trainers, key=lambda t: (t[0] not in expected,
                                                        expected.index(t[0])
                                                        if t[0] in expected else 0)):
    shown.add(node)
    path = os.path.join(artifact.uri, 'history.json')
    parts.append(f'<h3>{_e(node)}</h3>')
    if not os.path.exists(path):
      parts.append(_note(f'No history.json in <code>{_e(artifact.uri)}</code>.'))
      continue
    with open(path) as f:
      history = json.load(f)
    parts.append(f'<p class="small muted">{_e(_history_summary(history))}</p>')
    figure = history_figure(node, history)
    parts.append(figure or _note('The history holds no loss or metric.'))
  for node in expected:
    if node not in shown:
      parts.append(f'<h3>{_e(node)}</h3>' + _missing('training history', node, run))
  return ''.join(parts)


# --- section 3: evaluation ------------------------------------------------------------------

def _retrieval_artifact(run: Run) -> Optional[Dict[str, Any]]:
  node = _id('RETRIEVAL_EVALUATOR', 'RetrievalEvaluator')
  evaluation = run.output(node, 'evaluation')
  if evaluation is None:
    return None
  path = os.path.join(evaluation.uri, 'metrics.json')
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def _metric_order(name: str) -> Tuple[bool, int, str]:
  parts = name.split('_')
  k = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
  return ('unseen' in name, k, name)


def _delta(current: Optional[float], baseline: Optional[float],
           lower_is_better: bool = False) -> str:
  if current is None or baseline is None:
    return '—'
  change = current - baseline
  good = change <= 0 if lower_is_better else change >= 0
  cls = 'ok-text' if good else 'bad-text'
  return f'<span class="{cls}">{change:+.4f}</span>'


def _reasons(reasons: Sequence[str]) -> str:
  if not reasons:
    return ''
  items = ''.join(f'<li>{_e(r)}</li>' for r in reasons)
  return f'<div class="alert"><strong>Why not blessed</strong><ul>{items}</ul></div>'


def retrieval_evaluation(run: Run) -> str:
  summary = run.summary.get('retrieval') or {}
  saved = _retrieval_artifact(run) or {}
  metrics = dict(saved.get('metrics') or {})
  metrics.update({k: v for k, v in summary.items() if k.startswith('top_')})
  baseline = saved.get('baseline') or {}
  if not baseline and summary.get('baseline_top_100') is not None:
    baseline = {'top_100': summary['baseline_top_100']}
  node = _id('RETRIEVAL_EVALUATOR', 'RetrievalEvaluator')
  if not metrics:
    return '<h3>Retrieval</h3>' + _missing('retrieval evaluation', node, run)
  blessed = summary.get('blessed', saved.get('blessed'))
  names = sorted((m for m in metrics if m.startswith('top_')), key=_metric_order)
  rows = [[f'<code>{_e(m)}</code>', _keyed(f'retrieval.{m}', format_metric(metrics[m])),
           _e(format_metric(baseline.get(m))) if baseline else '—',
           _delta(metrics[m], baseline.get(m))] for m in names]
  for count in ('eval_interactions', 'eval_users'):
    if metrics.get(count) is not None:
      rows.append([f'<code>{_e(count)}</code>', _e(_number(metrics[count])),
                   _e(_number(baseline.get(count))) if baseline else '—', ''])
  out = [f'<h3>Retrieval {_badge(blessed)}</h3>',
         '<p class="small muted">Share of eval interactions whose item is in the user\'s top k '
         'of the whole catalogue (<code>_unseen</code>: the user\'s training items removed).'
         '</p>',
         _table(['metric', 'this run', 'blessed baseline', 'change'], rows, cls='num')]
  if not baseline:
    out.append(_note('No blessed baseline yet: this run was gated on the absolute floor only.'))
  out.append(_reasons(summary.get('why_not_blessed') or saved.get('reasons') or []))
  out.append(comparison_figure('Retrieval: top-k hit rate', names,
                               [float(metrics[m]) for m in names],
                               [baseline.get(m) for m in names] if baseline else None))
  return ''.join(out)


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


def ranking_tfma(uri: str) -> Dict[str, Dict[str, float]]:
  """{'candidate': overall metrics, 'baseline': overall metrics (if it was evaluated)}."""
  import tensorflow_model_analysis as tfma
  first = tfma.load_eval_result(uri)
  specs = list(first.config.model_specs) if first.config else []
  baseline = next((s.name for s in specs if s.is_baseline), None)
  if baseline is None:
    return {'candidate': _tfma_overall(first)}
  candidate = next((s.name for s in specs if not s.is_baseline), '')
  return {'candidate': _tfma_overall(tfma.load_eval_result(uri, model_name=candidate)),
          'baseline': _tfma_overall(tfma.load_eval_result(uri, model_name=baseline))}


def _bounds(threshold) -> str:
  limits = []
  if threshold.HasField('upper_bound'):
    limits.append(f'≤ {threshold.upper_bound.value:.4f}')
  if threshold.HasField('lower_bound'):
    limits.append(f'≥ {threshold.lower_bound.value:.4f}')
  return ' and '.join(limits)


def ranking_failures(uri: str) -> List[str]:
  """TFMA's validation failures in words ('rmse rose by 0.0524 vs the blessed model...')."""
  import tensorflow_model_analysis as tfma
  validation = tfma.load_validation_result(uri)
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


def ranking_evaluation(run: Run) -> str:
  summary = run.summary.get('ranking') or {}
  node = _id('RANKING_EVALUATOR', 'Evaluator')
  evaluation = run.output(node, 'evaluation')
  tfma_metrics: Dict[str, Dict[str, float]] = {}
  failures: List[str] = []
  problem = ''
  if evaluation is not None:
    try:
      tfma_metrics = ranking_tfma(evaluation.uri)
      if summary.get('blessed') is False or not summary:
        failures = ranking_failures(evaluation.uri)
    except Exception as e:  # pylint: disable=broad-except; metrics.json still has the RMSE
      problem = _note(f'Could not read the TFMA result: {_e(e)}', 'warn')
  if not summary and not tfma_metrics:
    return '<h3>Ranking</h3>' + _missing('ranking evaluation', node, run)
  current = dict(tfma_metrics.get('candidate') or {})
  base = tfma_metrics.get('baseline') or {}
  rmse = summary.get('rmse', current.get('root_mean_squared_error'))
  count = summary.get('eval_examples', current.get('example_count'))
  rows = [['<code>rmse</code>', _keyed('ranking.rmse', format_metric(rmse)),
           _e(format_metric(base.get('root_mean_squared_error'))) if base else '—',
           _delta(rmse, base.get('root_mean_squared_error'), lower_is_better=True)],
          ['<code>eval_examples</code>', _e(_number(int(count) if count is not None else None)),
           _e(_number(int(base['example_count']))) if base.get('example_count') else '—', '']]
  out = [f'<h3>Ranking {_badge(summary.get("blessed"))}</h3>',
         '<p class="small muted">Rating prediction on the eval split, evaluated by TFMA '
         '(lower RMSE is better).</p>', problem,
         _table(['metric', 'this run', 'blessed baseline', 'change'], rows, cls='num')]
  if not base:
    out.append(_note('No blessed baseline was evaluated: gated on the RMSE ceiling only.'))
  out.append(_reasons(failures or summary.get('why_not_blessed') or []))
  return ''.join(out)


def evaluation_section(run: Run) -> str:
  parts = [retrieval_evaluation(run), ranking_evaluation(run)]
  feed = run.summary.get('feed')
  if feed:
    parts.append('<h3>Feed (retrieval → ranking)</h3>' + render_value(feed))
  return ''.join(parts)


# --- sections 4-6 ---------------------------------------------------------------------------

def _serving_version(serving_dir: str, kind: str) -> Optional[str]:
  """The newest version folder under serving/<kind> (what a model server loads)."""
  folder = os.path.join(serving_dir, kind)
  versions = [d for d in os.listdir(folder) if d.isdigit()] if os.path.isdir(folder) else []
  return max(versions, key=int) if versions else None


def pushed_section(run: Run) -> str:
  versions = run.summary.get('pushed') or {}
  paths = run.summary.get('pushed_paths') or {}
  if not versions and not paths:
    return _note('Nothing was recorded about pushes in this run.')
  rows = []
  for kind in dict.fromkeys(list(versions) + list(paths)):
    version, path = versions.get(kind), paths.get(kind)
    if version:
      where = f'<code>{_e(path)}</code>' if path else '—'
      if path and not os.path.isdir(path):
        where += ' <span class="bad-text">(missing on disk)</span>'
      rows.append([_e(kind), f'<span class="badge ok">pushed</span>',
                   f'<code>{_keyed(f"pushed.{kind}", version)}</code>', where])
    else:
      previous = _serving_version(run.paths.serving_dir, kind)
      keeps = (f'serving keeps version <code>{_e(previous)}</code>' if previous
               else 'nothing is served yet')
      pusher = _id(f'{kind.upper()}_PUSHER', f'{kind.capitalize()}Pusher')
      why = ('the pusher did not run' if run.state(pusher) == 'not run'
             else 'the model was not blessed')
      rows.append([_e(kind), '<span class="badge warn">not pushed</span>',
                   _keyed(f'pushed.{kind}', '—'),
                   f'<span class="muted">{_e(why)}; {keeps}</span>'])
  return (_table(['model', '', 'version', 'destination'], rows)
          + f'<p class="small muted">Serving folder: <code>{_e(run.paths.serving_dir)}</code>'
          '</p>')


def _segments_dir_html(folder: str, limit: int = 40) -> str:
  rows, shown = [], 0
  for root, dirs, files in os.walk(folder):
    dirs.sort()
    for name in sorted(files):
      if shown >= limit:
        break
      path = os.path.join(root, name)
      rows.append([f'<code>{_e(os.path.relpath(path, folder))}</code>',
                   _e(_number(os.path.getsize(path)) + ' bytes')])
      shown += 1
  out = (f'<p class="small muted">Contents of <code>{_e(folder)}</code></p>'
         + (_table(['file', 'size'], rows) if rows else _note('(empty)')))
  for path in sorted(glob.glob(os.path.join(folder, '*.json')))[:3]:
    if os.path.getsize(path) <= 64 * 1024:
      try:
        with open(path) as f:
          out += f'<h4>{_e(os.path.basename(path))}</h4>' + render_value(json.load(f))
      except (OSError, ValueError):
        pass
  return out


def segments_section(run: Run) -> Optional[str]:
  folder = os.path.join(run.paths.serving_dir, 'segments')
  segments = run.summary.get('segments')
  if not os.path.isdir(folder) and not segments:
    return None
  parts = []
  if segments:
    parts.append(render_value(segments))
  if os.path.isdir(folder):
    parts.append(_segments_dir_html(folder))
  return ''.join(parts)


def timing_rows(run: Run) -> List[Tuple[str, str, float]]:
  components = run.summary.get('components') or {}
  order = list(run.nodes) + [n for n in components if n not in run.nodes]
  rows = []
  for node in order:
    info = components.get(node) or {}
    if not info and node in run.nodes:
      info = {'state': run.nodes[node]['state'], 'seconds': round(run.nodes[node]['seconds'], 1)}
    if info:
      rows.append((node, info.get('state', 'unknown'), float(info.get('seconds') or 0.0)))
  return rows


def timing_section(run: Run) -> str:
  rows = timing_rows(run)
  if not rows:
    return _note('No component ran (nothing in the metadata store for this run).')
  total = sum(r[2] for r in rows)
  table_rows = []
  for node, state, seconds in rows:
    cls = {'FAILED': 'bad', 'cached': 'muted', 'done': 'ok'}.get(state, 'warn')
    share = f'{100 * seconds / total:.0f} %' if total else '—'
    table_rows.append([_e(node), f'<span class="badge {cls}">{_e(state)}</span>',
                       _keyed(f'timing.{node}', f'{seconds:.1f}'), _e(share)])
  wall = run.summary.get('wall_seconds')
  note = (f'<p class="small muted">Components: {_e(_seconds(total))} in total'
          + (f'; wall time of the whole run {_e(_seconds(wall))} (includes start-up and '
             'Beam set-up).' if wall else '.') + '</p>')
  return ('<div class="two-col"><div>'
          + _table(['component', 'state', 'seconds', 'share'], table_rows, cls='num timing')
          + note + '</div><div>' + timing_figure(rows) + '</div></div>')


# --- the page -------------------------------------------------------------------------------

_CSS = """
:root { --fg:#1f2933; --muted:#616e7c; --line:#e4e7eb; --bg:#f5f7fa; --card:#fff;
        --ok:#1b7f3b; --ok-bg:#e3f4e8; --bad:#c62828; --bad-bg:#fdecea; --warn:#8a5a00;
        --warn-bg:#fff4d6; --accent:#3b6fb6; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--fg); line-height:1.45;
       font:15px/1.45 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
header { background:#1f2d3d; color:#fff; padding:22px 32px 16px; }
header h1 { margin:0 0 6px; font-size:22px; font-weight:600; }
header .meta { color:#c7d0d9; font-size:13px; }
header .meta code { color:#e6edf3; background:transparent; }
nav { background:#fff; border-bottom:1px solid var(--line); padding:8px 32px;
      position:sticky; top:0; z-index:1; }
nav a { color:var(--accent); margin-right:18px; text-decoration:none; font-size:14px; }
main { max-width:1180px; margin:0 auto; padding:20px 32px 48px; }
section { background:var(--card); border:1px solid var(--line); border-radius:8px;
          padding:6px 24px 20px; margin:18px 0; }
h2 { font-size:19px; margin:16px 0 8px; padding-bottom:6px; border-bottom:2px solid var(--line); }
h3 { font-size:16px; margin:20px 0 8px; }
h4 { font-size:14px; margin:14px 0 6px; }
table { border-collapse:collapse; margin:6px 0 10px; font-size:14px; }
th, td { padding:5px 12px; border-bottom:1px solid var(--line); text-align:left;
         vertical-align:top; }
th { background:#f0f3f7; font-weight:600; font-size:13px; color:#3e4c59; }
tbody tr:nth-child(even) td { background:#fafbfc; }
table.num td:not(:first-child) { font-variant-numeric: tabular-nums; }
table.kv th { display:none; }
table.nested { margin:0; font-size:13px; }
code { font:13px/1.3 ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace;
       background:#f0f3f7; padding:1px 4px; border-radius:3px; word-break:break-all; }
.small { font-size:13px; }
.muted, .note.muted { color:var(--muted); }
.note { margin:6px 0 10px; }
.note.warn { color:var(--warn); }
.ok-text { color:var(--ok); } .bad-text { color:var(--bad); font-weight:600; }
.warn-text { color:var(--warn); font-weight:600; }
.badge { display:inline-block; padding:1px 9px; border-radius:10px; font-size:12px;
         font-weight:600; vertical-align:middle; margin-left:4px; }
.badge.ok { background:var(--ok-bg); color:var(--ok); }
.badge.bad { background:var(--bad-bg); color:var(--bad); }
.badge.warn { background:var(--warn-bg); color:var(--warn); }
.badge.muted { background:#eceff2; color:var(--muted); }
.status { margin:10px 0 4px; font-size:14px; }
.status > span { margin-right:14px; }
.alert { background:var(--bad-bg); border-left:5px solid var(--bad); color:#7f1d1d;
         padding:10px 16px; border-radius:4px; margin:10px 0 14px; }
.alert table { background:#fff; }
.alert pre.error { white-space:pre-wrap; font-size:14px; margin:8px 0; color:var(--bad);
                   font-weight:600; }
.problems { background:var(--warn-bg); border-left:5px solid #e0a100; padding:8px 16px;
            border-radius:4px; }
.cards { display:flex; flex-wrap:wrap; gap:14px; margin:14px 0 4px; }
.card { background:#fff; border:1px solid var(--line); border-radius:8px; padding:12px 18px;
        min-width:200px; }
.card .label { font-size:12px; color:var(--muted); text-transform:uppercase;
               letter-spacing:.04em; }
.card .value { font-size:24px; font-weight:600; margin:2px 0; }
img.figure { max-width:100%; height:auto; display:block; margin:8px 0 12px; }
.two-col { display:flex; flex-wrap:wrap; gap:24px; align-items:flex-start; }
.two-col > div { flex:1 1 420px; min-width:0; }
footer { color:var(--muted); font-size:12px; text-align:center; margin-top:24px; }
"""


def _cards(run: Run) -> str:
  r, k = run.summary.get('retrieval') or {}, run.summary.get('ranking') or {}
  pushed = run.summary.get('pushed') or {}
  cards = []
  if r.get('top_100') is not None:
    cards.append(('retrieval top-100', format_metric(r['top_100']), _badge(r.get('blessed'))))
  if k.get('rmse') is not None:
    cards.append(('ranking RMSE', format_metric(k['rmse']), _badge(k.get('blessed'))))
  for kind in ('retrieval', 'ranking'):
    if kind in pushed:
      cards.append((f'{kind} pushed', pushed[kind] or 'nothing',
                    _badge(bool(pushed[kind]), 'serving', 'kept previous')))
  if not cards:
    return ''
  return '<div class="cards">' + ''.join(
      f'<div class="card"><div class="label">{_e(label)}</div>'
      f'<div class="value">{_e(value)}</div>{badge}</div>' for label, value, badge in cards
  ) + '</div>'


def _safe(name: str, build, *args) -> Optional[str]:
  try:
    return build(*args)
  except Exception as e:  # pylint: disable=broad-except; one broken section, not no report
    logging.exception('report section %s failed', name)
    return _note(f'This section could not be built: {_e(type(e).__name__)}: {_e(e)}', 'warn')


def render(run: Run, report_dir: str) -> str:
  """The page's HTML."""
  builders = {'data': lambda: data_section(run, report_dir),
              'training': lambda: training_section(run),
              'evaluation': lambda: evaluation_section(run),
              'pushed': lambda: pushed_section(run),
              'segments': lambda: segments_section(run),
              'timing': lambda: timing_section(run)}
  sections = []
  for sid, title in SECTIONS:
    body = _safe(sid, builders[sid])
    if body is None:
      continue
    sections.append((sid, title, body))
  nav = ''.join(f'<a href="#{sid}">{_e(title)}</a>' for sid, title, _ in sections)
  problems = ''
  if run.problems:
    problems = ('<div class="problems small">' + '<br>'.join(_e(p) for p in run.problems)
                + '</div>')
  generated = datetime.datetime.now().strftime('%Y-%m-%d %H:%M')
  return ''.join([
      '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
      '<meta name="viewport" content="width=device-width, initial-scale=1">',
      f'<title>Run report — {_e(run.summary.get("run_id") or run.paths.root)}</title>',
      f'<style>{_CSS}</style></head><body>',
      '<header><h1>Recommender pipeline run</h1>',
      f'<div class="meta">output <code>{_e(run.paths.root)}</code> · report generated '
      f'{_e(generated)}</div></header>',
      f'<nav>{nav}</nav><main>',
      status_banner(run.summary), problems, _cards(run),
      ''.join(f'<section id="{sid}"><h2>{_e(title)}</h2>{body}</section>'
              for sid, title, body in sections),
      f'<footer>metrics: <code>{_e(run.paths.metrics_path)}</code> · log: '
      f'<code>{_e(run.paths.log_path)}</code></footer>',
      '</main></body></html>'])


def build_report(output_dir: str) -> str:
  """Writes OUT/report/index.html for the latest run in OUT and returns its path."""
  run = Run(output_dir)
  report_dir = os.path.join(run.paths.root, REPORT_DIR)
  os.makedirs(report_dir, exist_ok=True)
  page = render(run, report_dir)
  path = os.path.join(report_dir, INDEX)
  with open(path, 'w', encoding='utf-8') as f:
    f.write(page)
  return path


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description='Rebuild OUT/report/index.html from the '
                                   'metadata store and artifacts of the latest run.')
  parser.add_argument('--output-dir', default=os.path.join(
      os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'out'),
                      help='the output folder of local_runner.py')
  args = parser.parse_args(argv)
  if not os.path.isdir(args.output_dir):
    print(f'error: no output folder {args.output_dir}', file=sys.stderr)
    return 2
  print(build_report(args.output_dir))
  return 0


if __name__ == '__main__':
  sys.exit(main())
