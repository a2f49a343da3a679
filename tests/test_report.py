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


def test_report_shows_the_run_as_metrics_json_does(movielens_run, capsys):
  code, out, _ = movielens_run
  assert code == 0
  path = report.build_report(out)
  assert path == os.path.join(out, 'report', 'index.html')
  with open(path, encoding='utf-8') as f:
    page = Page(f.read())
  with open(os.path.join(out, 'metrics.json')) as f:
    metrics = json.load(f)

  for heading in ('Data', 'Training', 'Evaluation', 'Pushed models', 'Timing'):
    assert heading in page.headings, page.headings
  pngs = _png_payloads(page.images)
  assert len(pngs) >= 3  # two training curves, retrieval metrics, timing
  assert all(p.startswith(PNG_MAGIC) and len(p) > 1000 for p in pngs)
  assert not [s for s in page.images if not s.startswith('data:')]  # nothing external

  assert page.keyed['retrieval.top_100'] == report.format_metric(
      metrics['retrieval']['top_100'])
  assert page.keyed['ranking.rmse'] == report.format_metric(metrics['ranking']['rmse'])
  for kind in ('retrieval', 'ranking'):
    assert metrics['pushed'][kind] and page.keyed[f'pushed.{kind}'] == metrics['pushed'][kind]
  # The statistics count the same eval rows as the retrieval evaluator (no user sampling).
  assert page.keyed['data.eval.rows'] == f"{metrics['eval_interactions']:,}"
  for node, info in metrics['components'].items():
    assert page.keyed[f'timing.{node}'] == f"{info['seconds']:.1f}"
  assert not page.alerts  # a clean run: no error, no anomalies, everything blessed

  # The command rebuilds the same page from the metadata store.
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
