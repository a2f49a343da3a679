"""An HTML report of a run, for a person: data, training, evaluation, pushes, segments, timing.

    python -m pipeline.report --output-dir OUT

writes OUT/report/index.html, self-contained (CSS inline, figures as PNG data: URIs). It
renders the run summary ``run_summary`` produces (metrics.json, or the same summary built
from the metadata store when metrics.json is missing or from another run), with the detail
behind it read by ``run_summary.read_details``, through the Jinja2 templates in
pipeline/templates/ (autoescaped). So the report and metrics.json cannot disagree. TFDV's
interactive statistics view needs Facets from the web, so it goes to a separate, linked page
(OUT/report/statistics.html).
"""
import argparse
import base64
import datetime
import io
import logging
import os
import sys
from typing import Any, Dict, List, Optional, Sequence

# Before TensorFlow is first imported (through TFDV / TFMA / MLMD helpers below).
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import jinja2  # noqa: E402
import markupsafe  # noqa: E402

from core import features as F  # noqa: E402
from pipeline import run_summary  # noqa: E402
from pipeline.pipeline import (FEED_PUSHER, RANKING_EVALUATOR, RANKING_PUSHER,  # noqa: E402
                               RANKING_TRAINER, RETRIEVAL_EVALUATOR, RETRIEVAL_PUSHER,
                               RETRIEVAL_TRAINER)

REPORT_DIR = 'report'
INDEX = 'index.html'
STATISTICS_PAGE = 'statistics.html'
TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'templates')

# Section ids and headings, in page order (the tests look for these headings).
SECTIONS = (('data', 'Data'), ('training', 'Training'), ('evaluation', 'Evaluation'),
            ('pushed', 'Pushed models'), ('segments', 'Segments'), ('timing', 'Timing'))

_STATE_COLOURS = {'done': '#3b6fb6', 'cached': '#9aa5b1', 'FAILED': '#c62828',
                  'running': '#e0a100', 'canceled': '#e0a100'}
_LOSS_KEYS = ('loss', 'total_loss', 'regularization_loss')
_MEAN = '_mean'  # models/history.py's suffix of the epoch mean losses
# The ranking model's headline measure: RMSE with ratings, AUC with implicit feedback.
_TFMA_NAMES = {'rmse': 'root_mean_squared_error', 'auc': 'auc'}


# --- formatting -----------------------------------------------------------------------------

def format_metric(value: Any) -> str:
  """How the report prints a retrieval rate, an RMSE or an AUC (as the console summary does)."""
  if value is None or isinstance(value, (bool, int)):
    return _number(value)
  try:
    return f'{float(value):.3f}'
  except (TypeError, ValueError):
    return str(value)


def _number(value: Any) -> str:
  """A compact general-purpose number (feature statistics, counts)."""
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


def _share(value: Optional[float]) -> str:
  return '—' if value is None else f'{100 * value:.1f} %'


def _badge(ok: Optional[bool], yes: str = 'blessed', no: str = 'not blessed') -> Dict[str, str]:
  if ok is None:
    return {'cls': 'muted', 'text': 'not evaluated'}
  return {'cls': 'ok', 'text': yes} if ok else {'cls': 'bad', 'text': no}


def _delta(current: Optional[float], baseline: Optional[float],
           lower_is_better: bool = False) -> Optional[Dict[str, Any]]:
  if current is None or baseline is None:
    return None
  change = current - baseline
  return {'text': f'{change:+.4f}', 'good': change <= 0 if lower_is_better else change >= 0}


def _missing(what: str, node: str, details: Dict[str, Any]) -> str:
  state = details['states'].get(node, 'not run')
  why = (f'{node} failed' if state == 'FAILED'
         else f'{node} did not run' if state == 'not run'
         else f'{node} did not complete ({state})')
  return f'No {what}: {why}.'


# --- figures (PNG data: URIs) ---------------------------------------------------------------

def _figure(width: float, height: float):
  from matplotlib.figure import Figure  # Agg canvas below: no display, no global backend
  return Figure(figsize=(width, height), dpi=110)


def _png(fig) -> str:
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  FigureCanvasAgg(fig)
  fig.tight_layout()
  buffer = io.BytesIO()
  fig.savefig(buffer, format='png')
  return 'data:image/png;base64,' + base64.b64encode(buffer.getvalue()).decode('ascii')


def _style(ax) -> None:
  ax.grid(True, color='#e5e8ec', linewidth=0.8)
  ax.set_axisbelow(True)
  for side in ('top', 'right'):
    ax.spines[side].set_visible(False)
  ax.tick_params(labelsize=9)


def _loss_key(history: Dict[str, List[float]]) -> Optional[str]:
  """The loss to plot: the epoch mean (models/history.py) if recorded, else Keras' own."""
  for key in [k + _MEAN for k in _LOSS_KEYS] + list(_LOSS_KEYS):
    if history.get(key):
      return key
  return None


def _metric_key(history: Dict[str, List[float]]) -> Optional[str]:
  return next((k for k in history if not k.startswith('val_') and k not in _LOSS_KEYS
               and not k.endswith(_MEAN) and history[k]), None)


def history_figure(name: str, history: Dict[str, List[float]]) -> Optional[Dict[str, str]]:
  """Mean loss and the main metric per epoch, train and validation where present."""
  panels = [k for k in (_loss_key(history), _metric_key(history)) if k]
  if not panels:
    return None
  fig = _figure(5.2 * len(panels), 3.3)
  for i, key in enumerate(panels):
    ax = fig.add_subplot(1, len(panels), i + 1)
    for series, label, colour in ((key, 'train', '#3b6fb6'),
                                  ('val_' + key, 'validation', '#e07b00')):
      values = history.get(series)
      if values:
        ax.plot(range(1, len(values) + 1), values, marker='o', markersize=3, linewidth=1.6,
                label=label, color=colour)
    title = key[:-len(_MEAN)] + ' (epoch mean)' if key.endswith(_MEAN) else key
    if key in _LOSS_KEYS:
      title += ' (last batch of each epoch)'
    ax.set_title(f'{name}: {title.replace("_", " ")}', fontsize=10)
    ax.set_xlabel('epoch', fontsize=9)
    ax.xaxis.get_major_locator().set_params(integer=True)
    _style(ax)
    ax.legend(fontsize=8, frameon=False)
  return {'src': _png(fig), 'alt': f'{name} training curves'}


def comparison_figure(title: str, names: Sequence[str], current: Sequence[float],
                      baseline: Optional[Sequence[Optional[float]]]) -> Dict[str, str]:
  """This run's metrics as bars, beside the served baseline's when there is one."""
  import numpy as np
  fig = _figure(min(7.5, 2.0 + 1.1 * len(names) * (2 if baseline else 1)), 3.0)
  ax = fig.add_subplot(1, 1, 1)
  x = np.arange(len(names))
  width = 0.38 if baseline else 0.6
  bars = ax.bar(x - (width / 2 if baseline else 0), current, width, label='this run',
                color='#3b6fb6')
  ax.bar_label(bars, labels=[format_metric(v) for v in current], fontsize=8, padding=2)
  if baseline:
    bars = ax.bar(x + width / 2, [v if v is not None else 0.0 for v in baseline], width,
                  label='served baseline', color='#9aa5b1')
    ax.bar_label(bars, labels=[format_metric(v) for v in baseline], fontsize=8, padding=2)
  ax.set_xticks(x, [n.replace('_', ' ') for n in names], fontsize=9)
  top = max([*current, *[v for v in baseline or [] if v is not None]] or [1.0])
  ax.set_ylim(0, top * 1.18 if top > 0 else 1.0)
  ax.set_title(title, fontsize=10)
  _style(ax)
  ax.legend(fontsize=8, frameon=False, loc='upper left')
  return {'src': _png(fig), 'alt': title}


def timing_figure(rows: Sequence[Dict[str, Any]]) -> Dict[str, str]:
  """Horizontal bars of wall time per component, first component at the top."""
  rows = list(rows)[::-1]
  fig = _figure(5.4, 0.3 * len(rows) + 1.1)
  ax = fig.add_subplot(1, 1, 1)
  seconds = [r['seconds'] for r in rows]
  bars = ax.barh([r['node'] for r in rows], seconds, height=0.65,
                 color=[_STATE_COLOURS.get(r['state'], '#3b6fb6') for r in rows])
  ax.bar_label(bars, labels=[f'{r["seconds"]:.1f}' if r['seconds'] >= 0.05
                             else ('cached' if r['state'] == 'cached' else '') for r in rows],
               fontsize=8, padding=3, color='#3e4c59')
  ax.set_xlabel('seconds', fontsize=9)
  ax.set_xlim(0, max(seconds + [1.0]) * 1.18)
  ax.tick_params(axis='y', labelsize=9)
  _style(ax)
  ax.grid(False, axis='y')
  states = list(dict.fromkeys(r['state'] for r in rows))
  if len(states) > 1:
    from matplotlib.patches import Patch
    ax.legend(handles=[Patch(color=_STATE_COLOURS.get(s, '#3b6fb6'), label=s) for s in states],
              fontsize=8, frameon=False, loc='lower right')
  return {'src': _png(fig), 'alt': 'wall time per component'}


# --- what each part of the page shows -------------------------------------------------------

def status_view(summary: Dict[str, Any]) -> Dict[str, Any]:
  """The status line: outcome, wall time, run, span, warm starts; a failed run's error."""
  status = summary.get('status') or 'unknown'
  failed = status == 'failed' or bool(summary.get('error'))
  return {
      'status': status, 'ok': status == 'succeeded',
      'wall': _seconds(summary['wall_seconds']) if summary.get('wall_seconds') else None,
      'run_id': summary.get('run_id'), 'span': summary.get('span'),
      'warm_start': run_summary.warm_start_lines(summary) + run_summary.refit_lines(summary),
      'failed': failed,
      'where': summary.get('failed_component') or 'the pipeline',
      'error': summary.get('error') or 'no error message was recorded',
  }


def _ranking_measure(ranking: Dict[str, Any], tfma: Dict[str, float]) -> str:
  if 'rmse' in ranking or ('auc' not in ranking and 'auc' not in tfma):
    return 'rmse'
  return 'auc'


def headline(summary: Dict[str, Any], details: Dict[str, Any]) -> List[Dict[str, Any]]:
  """The cards at the top: retrieval, ranking and feed figures, and what was pushed."""
  r, k, feed = (summary.get(key) or {} for key in ('retrieval', 'ranking', 'feed'))
  cards = []
  if r.get('top_100') is not None:
    baseline = r.get('baseline_top_100')
    cards.append({'label': 'retrieval top-100', 'key': 'headline.retrieval.top_100',
                  'value': format_metric(r['top_100']), 'badge': _badge(r.get('blessed')),
                  'note': f'baseline {format_metric(baseline)}' if baseline is not None
                  else None})
  tfma = (details.get('ranking_evaluation') or {})
  measure = _ranking_measure(k, tfma.get('candidate') or {})
  if k.get(measure) is not None:
    baseline = (tfma.get('baseline') or {}).get(_TFMA_NAMES[measure])
    cards.append({'label': f'ranking {measure.upper()}', 'key': f'headline.ranking.{measure}',
                  'value': format_metric(k[measure]), 'badge': _badge(k.get('blessed')),
                  'note': f'baseline {format_metric(baseline)}' if baseline is not None
                  else None})
  for metric, label in (('hit_rate_at_10', 'feed hit rate @10'), ('ndcg_at_10', 'feed nDCG @10')):
    if feed.get(metric) is not None:
      cards.append({'label': label, 'key': f'headline.feed.{metric}',
                    'value': format_metric(feed[metric]), 'badge': None, 'note': None})
  for kind, version in (summary.get('pushed') or {}).items():
    cards.append({'label': f'{kind} pushed', 'key': None, 'value': version or 'nothing',
                  'badge': _badge(bool(version), 'serving', 'kept previous'), 'note': None})
  return cards


def _unique(dataset, name: str) -> Optional[int]:
  feature = next((f for f in dataset.features
                  if (f.path.step and '.'.join(f.path.step) == name) or f.name == name), None)
  if feature is not None and feature.HasField('string_stats'):
    return int(feature.string_stats.unique)
  return None


def _common(feature):
  kind = feature.WhichOneof('stats')
  return getattr(getattr(feature, kind), 'common_stats', None) if kind else None


def _feature_order(name: str):
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


def feature_rows(dataset, limit: int = 40) -> List[Dict[str, Any]]:
  """type, missing share, unique or mean, min, max and top values of each feature."""
  from tensorflow_metadata.proto.v0 import statistics_pb2
  rows = []
  for feature in sorted(dataset.features,
                        key=lambda f: _feature_order('.'.join(f.path.step) or f.name))[:limit]:
    name = '.'.join(feature.path.step) or feature.name
    common = _common(feature)
    total = (common.num_missing + common.num_non_missing) if common is not None else 0
    missing = (100.0 * common.num_missing / total) if total else 0.0
    middle, low, high, top = '—', '—', '—', '—'
    if feature.HasField('num_stats'):
      n = feature.num_stats
      show = _as_date if name == F.TIMESTAMP else _stat
      middle, low, high = f'mean {show(n.mean)}', show(n.min), show(n.max)
    elif feature.HasField('string_stats'):
      s = feature.string_stats
      middle = f'{s.unique:,} unique'
      values = [v.value for v in s.top_values[:3]] or [b.label for b in
                                                        s.rank_histogram.buckets[:3]]
      top = ', '.join(v if len(v) <= 28 else v[:27] + '…' for v in values) or '—'
    rows.append({'name': name,
                 'kind': statistics_pb2.FeatureNameStatistics.Type.Name(feature.type).lower(),
                 'missing': f'{missing:.1f} %', 'missing_warn': missing >= 5,
                 'middle': middle, 'low': low, 'high': high, 'top': top})
  return rows


def write_statistics_page(stats: Dict[str, Any], report_dir: str) -> Optional[str]:
  """TFDV's own Facets view of train (beside eval) as a separate page; None if unavailable."""
  if 'train' not in stats:
    return None
  from tensorflow_data_validation.utils import display_util
  kwargs = {}
  if 'eval' in stats:
    kwargs = dict(rhs_statistics=stats['eval'], lhs_name='train', rhs_name='eval')
  body = display_util.get_statistics_html(stats['train'], **kwargs)
  page = _environment().get_template('statistics.html.j2').render(
      body=markupsafe.Markup(body.replace('height="500px"', 'height="1200px"')))
  with open(os.path.join(report_dir, STATISTICS_PAGE), 'w', encoding='utf-8') as f:
    f.write(page)
  return STATISTICS_PAGE


def data_view(details: Dict[str, Any], report_dir: str) -> Dict[str, Any]:
  view: Dict[str, Any] = {'examples': details.get('examples'), 'splits': [], 'features': [],
                          'statistics_page': None, 'missing_statistics': None,
                          'anomalies': None, 'missing_anomalies': None}
  statistics = details.get('statistics')
  if statistics is None:
    view['missing_statistics'] = _missing('statistics', 'StatisticsGen', details)
  else:
    datasets = {s: v.datasets[0] for s, v in statistics['splits'].items()}
    view['splits'] = [{'split': split, 'rows': _number(int(d.num_examples)),
                       'users': _number(_unique(d, F.USER_ID)),
                       'items': _number(_unique(d, F.ITEM_ID)), 'features': len(d.features)}
                      for split, d in datasets.items()]
    if 'train' in datasets:
      view['features'] = feature_rows(datasets['train'])
    try:
      view['statistics_page'] = write_statistics_page(statistics['splits'], report_dir)
    except Exception as e:  # pylint: disable=broad-except; an extra, not worth failing for
      logging.warning('no TFDV statistics page: %s', e)
  anomalies = details.get('anomalies')
  if anomalies is None:
    view['missing_anomalies'] = _missing('anomalies', 'ExampleValidator', details)
  else:
    view['anomalies'] = {'rows': anomalies['rows'], 'splits': ', '.join(anomalies['splits'])}
  return view


def _history_summary(history: Dict[str, List[float]]) -> str:
  epochs = max((len(v) for v in history.values()), default=0)
  bits = [f'{epochs} epoch' + ('' if epochs == 1 else 's')]
  for key in history:
    if (key.startswith('val_') and key[4:] not in _LOSS_KEYS and not key.endswith(_MEAN)
        and history[key]):
      values = history[key]
      best = (max if 'auc' in key else min)(range(len(values)), key=values.__getitem__)
      bits.append(f'best {key.replace("_", " ")} {_number(values[best])} at epoch {best + 1}')
      break
  loss = _loss_key(history)
  if loss:
    name = loss[:-len(_MEAN)] + ' (epoch mean)' if loss.endswith(_MEAN) else loss
    bits.append(f'final {name.replace("_", " ")} {_number(history[loss][-1])}')
  return ' · '.join(bits)


def training_view(details: Dict[str, Any]) -> List[Dict[str, Any]]:
  trainers = []
  for trainer in details.get('trainers') or []:
    history = trainer['history']
    if history is None:
      trainers.append({'node': trainer['node'], 'note': f'No history.json in {trainer["uri"]}.'})
      continue
    figure = history_figure(trainer['node'], history)
    trainers.append({'node': trainer['node'], 'summary': _history_summary(history),
                     'figure': figure,
                     'note': None if figure else 'The history holds no loss or metric.'})
  shown = {t['node'] for t in trainers}
  trainers += [{'node': node, 'note': _missing('training history', node, details)}
               for node in (RETRIEVAL_TRAINER, RANKING_TRAINER) if node not in shown]
  return trainers


def _metric_order(name: str):
  parts = name.split('_')
  k = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
  return ('unseen' in name, k, name)


def split_sentence(split: Optional[Dict[str, Any]]) -> Optional[str]:
  """What the eval split is, in words (metrics.json's ``split``)."""
  if not split:
    return None
  if split['split'] == 'time':
    return (f"Evaluated on the future: every interaction from {split['eval_from_utc']} UTC "
            'on (split by time); the models trained on the interactions before it.')
  if split['split'] == 'hash':
    return (f"Evaluated on a {split['eval_percent']}% hash hold-out (a random split: the "
            "model may have learnt from a user's later interactions).")
  return 'Evaluated on the eval folder given with the data.'


def recent_popularity_view(metrics: Dict[str, Any]) -> Optional[Dict[str, Any]]:
  """top_100_unseen of the model beside the recent-popularity list, by user group."""
  recent = metrics.get('recent_popularity')
  if not recent or 'top_100_unseen_returning' not in metrics:
    return None
  window = recent.get('window_days')
  rows = [{'group': label, 'key': f"retrieval.recent.{g.strip('_') or 'all'}",
           'model': format_metric(metrics[f'top_100_unseen{g}']),
           'list': format_metric(recent[f'top_100_unseen{g}']),
           'delta': _delta(metrics[f'top_100_unseen{g}'], recent[f'top_100_unseen{g}']),
           'count': _number(metrics.get(f'eval_interactions{g}'))}
          for g, label in (('', 'all'), ('_returning', 'returning users'),
                           ('_new', 'new users'))]
  return {'window': f'the last {window} days of train' if window else 'all of train',
          'rows': rows}


def retrieval_view(summary: Dict[str, Any], details: Dict[str, Any]) -> Dict[str, Any]:
  r = summary.get('retrieval') or {}
  saved = details.get('retrieval_evaluation') or {}
  metrics = dict(saved.get('metrics') or {})
  metrics.update({k: v for k, v in r.items()
                  if k.startswith(('top_', 'eval_interactions', 'recent_popularity'))})
  baseline = saved.get('baseline') or {}
  if not baseline and r.get('baseline_top_100') is not None:
    baseline = {'top_100': r['baseline_top_100']}
  if not any(m.startswith('top_') for m in metrics):
    return {'missing': _missing('retrieval evaluation', RETRIEVAL_EVALUATOR, details)}
  names = sorted((m for m in metrics if m.startswith('top_') and m.count('_') <= 2),
                 key=_metric_order)
  rows = [{'name': m, 'key': f'retrieval.{m}', 'value': format_metric(metrics[m]),
           'baseline': format_metric(baseline.get(m)) if baseline else '—',
           'delta': _delta(metrics[m], baseline.get(m))} for m in names]
  rows += [{'name': count, 'key': None, 'value': _number(metrics[count]),
            'baseline': _number(baseline.get(count)) if baseline else '—', 'delta': None}
           for count in ('eval_interactions', 'eval_users') if metrics.get(count) is not None]
  return {'badge': _badge(r.get('blessed', saved.get('blessed'))), 'rows': rows,
          'has_baseline': bool(baseline), 'split': split_sentence(summary.get('split')),
          'recent': recent_popularity_view(metrics),
          'reasons': r.get('why_not_blessed') or saved.get('reasons') or [],
          'figure': comparison_figure('Retrieval: top-k hit rate', names,
                                      [float(metrics[m]) for m in names],
                                      [baseline.get(m) for m in names] if baseline else None)}


def ranking_view(summary: Dict[str, Any], details: Dict[str, Any]) -> Dict[str, Any]:
  k = summary.get('ranking') or {}
  tfma = details.get('ranking_evaluation') or {}
  current, base = tfma.get('candidate') or {}, tfma.get('baseline') or {}
  if not k and not current:
    return {'missing': _missing('ranking evaluation', RANKING_EVALUATOR, details)}
  measure = _ranking_measure(k, current)
  name = _TFMA_NAMES[measure]
  value = k.get(measure, current.get(name))
  count = k.get('eval_examples', current.get('example_count'))
  rows = [{'name': measure, 'key': f'ranking.{measure}', 'value': format_metric(value),
           'baseline': format_metric(base.get(name)) if base else '—',
           'delta': _delta(value, base.get(name), lower_is_better=measure == 'rmse')},
          {'name': 'eval_examples', 'key': None,
           'value': _number(int(count) if count is not None else None),
           'baseline': _number(int(base['example_count'])) if base.get('example_count')
           else '—', 'delta': None}]
  failures = tfma.get('failures') if k.get('blessed') is False or not k else []
  return {'badge': _badge(k.get('blessed')), 'rows': rows, 'has_baseline': bool(base),
          'measure': measure, 'reasons': failures or k.get('why_not_blessed') or []}


def feed_view(summary: Dict[str, Any], details: Dict[str, Any]) -> Optional[Dict[str, Any]]:
  feed = summary.get('feed') or {}
  if not feed:
    return None
  saved = details.get('feed_evaluation') or {}
  rows = [{'name': m, 'key': f'feed.{m}', 'value': format_metric(feed[m])}
          for m in ('hit_rate_at_10', 'ndcg_at_10') if feed.get(m) is not None]
  setting = [f'{_number(saved[key])} {label}' for key, label in (
      ('eval_users', 'eval users'), ('eval_interactions', 'eval interactions'),
      ('candidates', 'retrieved candidates per user')) if saved.get(key) is not None]
  if saved.get('order_by'):
    setting.append(f'ordered by {saved["order_by"]}')
  return {'rows': rows, 'setting': ', '.join(setting)}


def _serving_version(serving_dir: str, kind: str) -> Optional[str]:
  """The newest version folder under serving/<kind> (what a model server loads)."""
  folder = os.path.join(serving_dir, kind)
  versions = [d for d in os.listdir(folder) if d.isdigit()] if os.path.isdir(folder) else []
  return max(versions, key=int) if versions else None


def pushed_view(summary: Dict[str, Any], details: Dict[str, Any],
                paths: run_summary.OutputPaths) -> List[Dict[str, Any]]:
  versions = summary.get('pushed') or {}
  destinations = summary.get('pushed_paths') or {}
  rows = []
  for kind in dict.fromkeys(list(versions) + list(destinations)):
    version, path = versions.get(kind), destinations.get(kind)
    if version:
      rows.append({'kind': kind, 'pushed': True, 'version': version, 'path': path,
                   'missing_on_disk': bool(path) and not os.path.isdir(path)})
      continue
    previous = _serving_version(paths.serving_dir, kind)
    pusher = {'retrieval': RETRIEVAL_PUSHER, 'ranking': RANKING_PUSHER,
              'feed': FEED_PUSHER}.get(kind, '')
    why = ('the pusher did not run' if details['states'].get(pusher, 'not run') == 'not run'
           else 'the model was not blessed')
    rows.append({'kind': kind, 'pushed': False, 'version': '—',
                 'why': why + ('; serving keeps version ' + previous if previous
                               else '; nothing is served yet')})
  return rows


def _values(features: Dict[str, Any], prefix: str, top: int = 3,
            min_share: float = 0.01) -> Dict[str, List[Any]]:
  """Over-represented values (lift > 1, highest first) and numeric means, per feature.

  Values rarer than ``min_share`` overall (titles, zip codes) are left out: a handful of
  rows gives them large, meaningless lifts; the top items by lift show the items anyway.
  """
  values, means = [], []
  for name, stats in sorted(features.items()):
    short = name[len(prefix):] if name.startswith(prefix) else name
    if isinstance(stats, dict) and 'mean' in stats:
      # None: no row of the segment carries the feature (segments.json has no NaN).
      if stats['mean'] is not None:
        overall = stats.get('overall_mean')
        means.append({'feature': short, 'mean': f'{stats["mean"]:.4g}',
                      'overall': '—' if overall is None else f'{overall:.4g}'})
      continue
    lifted = sorted((v for v in stats or [] if (v.get('lift') or 0) > 1
                     and (v.get('overall_share') or 0) >= min_share),
                    key=lambda v: -v['lift'])[:top]
    values += [{'feature': short, 'value': v['value'], 'lift': f'{v["lift"]:.2f}×',
                'share': _share(v.get('share')), 'overall': _share(v.get('overall_share'))}
               for v in lifted]
  return {'values': values, 'means': means}


def _items(items: Sequence[Dict[str, Any]], top: int = 5) -> List[str]:
  return [(item.get('text') or item.get('item_id') or '?')
          + (f' ({item["lift"]:.2f}×)' if item.get('lift') else '') for item in items[:top]]


def segments_view(summary: Dict[str, Any], details: Dict[str, Any]) -> Optional[Dict[str, Any]]:
  """What each user segment is: size, over-represented features with lift, top items."""
  pushed = summary.get('segments')
  found = details.get('segments')
  if not pushed and not found:
    return None
  if not found:
    return {'note': f'{pushed.get("count")} segments in {pushed.get("path")}; '
                    'no segments.json there to describe them.'}
  silhouette = found.get('silhouette') or {}
  return {
      'path': (pushed or {}).get('path'), 'count': _number(found.get('num_segments')),
      'users': _number(found.get('users')),
      'interactions': _number(found.get('train_interactions')),
      'chosen_by': found.get('chosen_by'),
      'silhouette': ', '.join(f'{k}: {v:.3f}' for k, v in silhouette.items()),
      'segments': [{
          'id': s.get('segment'), 'size': _number(s.get('size')), 'share': _share(s.get('share')),
          'interactions': _number(s.get('train_interactions')),
          'items': _values(s.get('item_features') or {}, F.ITEM_PREFIX),
          'users': _values(s.get('user_features') or {}, F.USER_PREFIX),
          'top_items': _items(s.get('top_items_by_count') or []),
          'lift_items': _items(s.get('top_items_by_lift') or []),
      } for s in found.get('segments') or []],
  }


def timing_view(summary: Dict[str, Any], details: Dict[str, Any]) -> Optional[Dict[str, Any]]:
  timings = details.get('timings') or []
  if not timings:
    return None
  total = sum(t['seconds'] for t in timings)
  rows = [{'node': t['node'], 'state': t['state'], 'seconds': f'{t["seconds"]:.1f}',
           'cls': {'FAILED': 'bad', 'cached': 'muted', 'done': 'ok'}.get(t['state'], 'warn'),
           'share': f'{100 * t["seconds"] / total:.0f} %' if total else '—'}
          for t in timings]
  wall = summary.get('wall_seconds')
  return {'rows': rows, 'total': _seconds(total), 'wall': _seconds(wall) if wall else None,
          'figure': timing_figure(timings)}


# --- the page -------------------------------------------------------------------------------

def _environment() -> jinja2.Environment:
  return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                            trim_blocks=True, lstrip_blocks=True,
                            undefined=jinja2.Undefined)


def status_banner(summary: Dict[str, Any]) -> str:
  """The run's status line, and for a failed run its error in a red alert box."""
  return _environment().get_template('status.html.j2').render(status=status_view(summary))


def _safe(name: str, build):
  """A section's view, or the reason it could not be built (one section, not no report)."""
  try:
    return build(), None
  except Exception as e:  # pylint: disable=broad-except
    logging.exception('report section %s failed', name)
    return None, f'This section could not be built: {type(e).__name__}: {e}'


def render(summary: Dict[str, Any], details: Dict[str, Any], problems: List[str],
           paths: run_summary.OutputPaths, report_dir: str) -> str:
  """The page's HTML."""
  builders = {
      'data': lambda: data_view(details, report_dir),
      'training': lambda: training_view(details),
      'evaluation': lambda: {'retrieval': retrieval_view(summary, details),
                             'ranking': ranking_view(summary, details),
                             'feed': feed_view(summary, details)},
      'pushed': lambda: pushed_view(summary, details, paths),
      'segments': lambda: segments_view(summary, details),
      'timing': lambda: timing_view(summary, details),
  }
  sections = []
  for sid, title in SECTIONS:
    view, error = _safe(sid, builders[sid])
    if view is None and error is None and sid == 'segments':
      continue  # no segmenter in this pipeline
    sections.append({'id': sid, 'title': title, 'view': view, 'error': error})
  return _environment().get_template('report.html.j2').render(
      summary=summary, status=status_view(summary), cards=headline(summary, details),
      sections=sections, problems=problems, paths=paths,
      generated=datetime.datetime.now().strftime('%Y-%m-%d %H:%M'))


def build_report(output_dir: str) -> str:
  """Writes OUT/report/index.html for the latest run in OUT and returns its path."""
  paths = run_summary.OutputPaths(os.path.abspath(output_dir))
  summary, nodes, problems = run_summary.load_summary(paths)
  details = run_summary.read_details(paths, nodes, summary, problems)
  report_dir = os.path.join(paths.root, REPORT_DIR)
  os.makedirs(report_dir, exist_ok=True)
  page = render(summary, details, problems, paths, report_dir)
  path = os.path.join(report_dir, INDEX)
  with open(path, 'w', encoding='utf-8') as f:
    f.write(page)
  return path


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description='Rebuild OUT/report/index.html from the run '
                                   'summary and the artifacts of the latest run.')
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
