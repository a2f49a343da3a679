"""The HTML report of a run: its sections, its figures, and the same numbers as metrics.json."""
import base64
import json
import os
from html.parser import HTMLParser

from pipeline import report

PNG_MAGIC = b'\x89PNG\r\n\x1a\n'
VOID = {'img', 'meta', 'br', 'hr', 'link', 'input'}


class Page(HTMLParser):
  """Collects h2 headings, <img> sources, data-key values and the text inside .alert boxes."""

  def __init__(self, text: str):
    super().__init__(convert_charrefs=True)
    self.headings, self.images, self.keyed, self.alerts = [], [], {}, []
    self._depth, self._open = 0, []  # open captures: [kind, key, depth, text parts]
    self.feed(text)
    self.close()

  def handle_starttag(self, tag, attrs):
    attrs = dict(attrs)
    if tag == 'img':
      self.images.append(attrs.get('src') or '')
    if tag in VOID:
      return
    self._depth += 1
    if tag == 'h2':
      self._open.append(['heading', None, self._depth, []])
    if attrs.get('data-key'):
      self._open.append(['keyed', attrs['data-key'], self._depth, []])
    if 'alert' in (attrs.get('class') or '').split():
      self._open.append(['alert', None, self._depth, []])

  def handle_endtag(self, tag):
    if tag in VOID:
      return
    while self._open and self._open[-1][2] == self._depth:
      kind, key, _, parts = self._open.pop()
      text = ' '.join(''.join(parts).split())
      if kind == 'heading':
        self.headings.append(text)
      elif kind == 'keyed':
        self.keyed[key] = text
      else:
        self.alerts.append(text)
    self._depth -= 1

  def handle_data(self, data):
    for capture in self._open:
      capture[3].append(data)


def _png_payloads(sources):
  prefix = 'data:image/png;base64,'
  return [base64.b64decode(s[len(prefix):], validate=True)
          for s in sources if s.startswith(prefix)]


def test_report_shows_the_run_as_metrics_json_does(tiny_run, capsys):
  out, _, _ = tiny_run
  path = report.build_report(out)
  assert path == os.path.join(out, 'report', 'index.html')
  with open(path, encoding='utf-8') as f:
    text = f.read()
  page = Page(text)
  with open(os.path.join(out, 'metrics.json')) as f:
    metrics = json.load(f)

  for heading in ('Data', 'Training', 'Evaluation', 'Pushed models', 'Segments', 'Timing'):
    assert heading in page.headings, page.headings
  pngs = _png_payloads(page.images)
  assert len(pngs) >= 4  # two training curves, retrieval metrics, timing
  assert all(p.startswith(PNG_MAGIC) and len(p) > 1000 for p in pngs)
  assert not [s for s in page.images if not s.startswith('data:')]  # nothing external

  assert page.keyed['retrieval.top_100'] == report.format_metric(
      metrics['retrieval']['top_100'])
  # Judged on the future, beside what is popular lately, for each group of users.
  assert ('Evaluated on the future: every interaction from '
          + metrics['split']['eval_from_utc']) in text
  recent = metrics['retrieval']['recent_popularity']
  for group in ('', '_returning', '_new'):
    key = f"retrieval.recent.{group.strip('_') or 'all'}"
    assert page.keyed[f'{key}.list'] == report.format_metric(recent[f'top_100_unseen{group}'])
    assert page.keyed[f'{key}.model'] == report.format_metric(
        metrics['retrieval'][f'top_100_unseen{group}'])
  measure = 'rmse' if 'rmse' in metrics['ranking'] else 'auc'  # auc: implicit feedback
  assert page.keyed[f'ranking.{measure}'] == report.format_metric(metrics['ranking'][measure])
  for name in ('hit_rate_at_10', 'ndcg_at_10'):  # the feed, in the headline and in detail
    assert page.keyed[f'headline.feed.{name}'] == report.format_metric(metrics['feed'][name])
    assert page.keyed[f'feed.{name}'] == page.keyed[f'headline.feed.{name}']
  for kind in ('retrieval', 'ranking', 'feed'):
    assert metrics['pushed'][kind] and page.keyed[f'pushed.{kind}'] == metrics['pushed'][kind]
  # The statistics count the same eval rows as the retrieval evaluator (no user sampling).
  assert page.keyed['data.eval.rows'] == f"{metrics['eval_interactions']:,}"
  for node, info in metrics['components'].items():
    assert page.keyed[f'timing.{node}'] == f"{info['seconds']:.1f}"
  # The segments are described from the segments.json that was pushed.
  with open(os.path.join(metrics['segments']['path'], 'segments.json')) as f:
    segments = json.load(f)['segments']
  assert len(segments) == metrics['segments']['count']
  for segment in segments:
    assert page.keyed[f"segments.{segment['segment']}.size"] == f"{segment['size']:,}"
  assert not page.alerts  # a clean run: no error, no anomalies, everything blessed

  # The command rebuilds the same page.
  assert report.main(['--output-dir', out]) == 0
  assert capsys.readouterr().out.strip() == path


FAILED_RUN = {
    'status': 'failed',
    'run_id': None,
    'retrieval': {},
    'ranking': {},
    'eval_interactions': None,
    'pushed': {'retrieval': None, 'ranking': None},
    'pushed_paths': {'retrieval': None, 'ranking': None},
    'components': {'InteractionExampleGen': {'state': 'FAILED', 'seconds': 3.2}},
    'wall_seconds': 12.5,
    'failed_component': 'InteractionExampleGen',
    'error': "interactions.csv: 3 rows have no user_id (e.g. line 7: '<empty>,12,4')",
}


def test_failed_run_error_is_an_alert():
  page = Page(report.status_banner(FAILED_RUN))
  assert len(page.alerts) == 1
  assert FAILED_RUN['error'] in page.alerts[0]
  assert 'InteractionExampleGen' in page.alerts[0]
  assert not Page(report.status_banner({'status': 'succeeded', 'wall_seconds': 1.0})).alerts


def test_report_of_a_failed_run_without_metadata(tmp_path):
  with open(tmp_path / 'metrics.json', 'w') as f:
    json.dump(FAILED_RUN, f)
  with open(report.build_report(str(tmp_path)), encoding='utf-8') as f:
    page = Page(f.read())
  assert any(FAILED_RUN['error'] in alert for alert in page.alerts)
  assert {'Data', 'Training', 'Evaluation', 'Pushed models', 'Timing'} <= set(page.headings)
  assert page.keyed['timing.InteractionExampleGen'] == '3.2'
  assert page.keyed['pushed.retrieval'] == '—'


def _segments_json(folder):
  """A pushed segments.json as the UserSegmenter writes it (two segments)."""
  genres = [{'value': 'Animation', 'count': 146, 'share': 0.056, 'overall_share': 0.045,
             'lift': 1.25},
            {'value': 'Drama', 'count': 40, 'share': 0.2, 'overall_share': 0.3, 'lift': 0.67}]
  titles = [{'value': 'Rare <Film>', 'count': 5, 'share': 0.002, 'overall_share': 0.001,
             'lift': 2.0}]
  segment = {'segment': 0, 'size': 1584, 'share': 0.62, 'train_interactions': 2600,
             'item_features': {'item__genres': genres, 'item__title': titles,
                               'item__year': {'mean': 1989.1, 'overall_mean': 1986.7}},
             'user_features': {'user__occupation': [
                 {'value': 'student', 'count': 193, 'share': 0.33, 'overall_share': 0.21,
                  'lift': 1.59}]},
             'top_items_by_count': [{'item_id': '50', 'count': 21, 'text': 'Tom & Jerry <b>'}],
             'top_items_by_lift': [{'item_id': '17', 'count': 5, 'lift': 2.01, 'text': 'Gandhi'}]}
  # A segment none of whose rows carries a numeric feature has no mean for it.
  other = dict(segment, segment=1, size=359, share=0.38,
               item_features={'item__genres': genres,
                              'item__year': {'mean': None, 'overall_mean': 1986.7}})
  os.makedirs(folder)
  with open(os.path.join(folder, 'segments.json'), 'w') as f:
    json.dump({'num_segments': 2, 'chosen_by': 'silhouette', 'silhouette': {'2': 0.49},
               'users': 1943, 'train_interactions': 5226, 'segments': [segment, other]}, f)


def _succeeded_run(tmp_path):
  """metrics.json of a finished implicit-feedback run (ranking AUC), warm-started."""
  segments = str(tmp_path / 'serving' / 'segments' / '7')
  _segments_json(segments)
  return {
      'status': 'succeeded', 'run_id': 'run-1', 'span': 3,
      'warm_start': {'retrieval': {'from_version': '17', 'base_model': '/m', 'rows_kept': 900,
                                   'rows_new': 12, 'fresh_weights': []},
                     'ranking': None},
      'retrieval': {'top_10': 0.05, 'top_100': 0.31, 'blessed': True, 'eval_interactions': 1358,
                    'baseline_top_100': 0.3},
      'ranking': {'auc': 0.8123, 'eval_examples': 2716, 'blessed': True},
      'feed': {'hit_rate_at_10': 0.0884, 'ndcg_at_10': 0.2037},
      'eval_interactions': 1358,
      'pushed': {'retrieval': '20', 'ranking': None, 'feed': '20'},
      'pushed_paths': {'retrieval': str(tmp_path / 'serving' / 'retrieval' / '20'),
                       'ranking': None, 'feed': str(tmp_path / 'serving' / 'feed' / '20')},
      'segments': {'count': 2, 'path': segments},
      'components': {'InteractionExampleGen': {'state': 'cached', 'seconds': 0.0},
                     'RetrievalTrainer': {'state': 'done', 'seconds': 29.74}},
      'wall_seconds': 61.0,
  }


def test_report_renders_the_run_summary_without_a_pipeline(tmp_path):
  summary = _succeeded_run(tmp_path)
  with open(tmp_path / 'metrics.json', 'w') as f:
    json.dump(summary, f)
  with open(report.build_report(str(tmp_path)), encoding='utf-8') as f:
    text = f.read()
  page = Page(text)

  assert page.headings == ['Data', 'Training', 'Evaluation', 'Pushed models', 'Segments',
                           'Timing']
  # The headline: retrieval, the ranking AUC (no RMSE without ratings) and the feed.
  assert page.keyed['headline.retrieval.top_100'] == '0.310'
  assert page.keyed['headline.ranking.auc'] == page.keyed['ranking.auc'] == '0.812'
  assert 'ranking.rmse' not in page.keyed
  assert page.keyed['headline.feed.hit_rate_at_10'] == page.keyed['feed.hit_rate_at_10']
  assert page.keyed['feed.ndcg_at_10'] == '0.204'
  assert page.keyed['retrieval.top_100'] == '0.310'
  # Warm start, as the console summary words it.
  assert 'retrieval trainer: warm start from version 17 (900 embedding rows kept, 12 new)' in text
  assert 'ranking trainer: trained from scratch' in text
  assert page.keyed['pushed.retrieval'] == '20' and page.keyed['pushed.ranking'] == '—'
  # What the segments are, not their files.
  assert page.keyed['segments.0.size'] == '1,584' and page.keyed['segments.1.size'] == '359'
  assert 'student' in text and '1.59×' in text and 'Animation' in text
  assert 'Drama' not in text  # under-represented: lift below 1
  assert 'Rare' not in text.split('Most engaged items')[0]  # too rare overall for a lift
  assert 'Tom &amp; Jerry &lt;b&gt;' in text  # autoescaped
  assert page.keyed['timing.RetrievalTrainer'] == '29.7'
  assert page.keyed['timing.InteractionExampleGen'] == '0.0'
  assert _png_payloads(page.images) and all(s.startswith('data:') for s in page.images)
  assert not page.alerts


def test_training_curves_plot_the_epoch_mean_loss():
  history = {'loss': [9.0, 1.0], 'loss_mean': [5.0, 4.0], 'val_loss': [3.0, 2.0],
             'val_loss_mean': [3.5, 2.5], 'auc': [0.6, 0.7], 'val_auc': [0.65, 0.75]}
  view = report.training_view({'trainers': [{'node': 'RankingTrainer', 'uri': '/m',
                                             'history': history}],
                               'states': {}})
  assert 'final loss (epoch mean) 4' in view[0]['summary']
  assert 'best val auc 0.75 at epoch 2' in view[0]['summary']
  assert _png_payloads([view[0]['figure']['src']])[0].startswith(PNG_MAGIC)
  assert view[1] == {'node': 'RetrievalTrainer', 'note': 'No training history: '
                     'RetrievalTrainer did not run.'}
