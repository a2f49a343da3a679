"""The scale benchmark's writer: table, growth slope, plot and kept notes on fake results."""
import math

from benchmarks import scale

PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


def fake(n, ingest, train, wall, feed=True):
  return {
      'name': scale.size_name(n), 'interactions': n, 'users': n // 10, 'items': n // 10,
      'flags': scale.run_flags(n), 'exit_code': 0, 'status': 'succeeded',
      'wall_seconds': wall, 'generate_seconds': 1.0, 'peak_rss_bytes': 2_500_000_000,
      'load': {'before': 2.0, 'mean': 2.5, 'max': 3.0},
      'components': {'InteractionExampleGen': {'state': 'done', 'seconds': ingest},
                     'RetrievalTrainer': {'state': 'done', 'seconds': train}},
      'retrieval': {'top_100': 0.3}, 'ranking': {'rmse': 0.9},
      'feed': {'hit_rate_at_10': 0.1} if feed else {}, 'date': '2026-11-29T00:00:00',
      'commit': 'abc123'}


def test_sizes_and_flags():
  assert scale.parse_size('100k') == 100_000 and scale.parse_size('10M') == 10_000_000
  assert scale.size_name(1_000_000) == '1M' and scale.size_name(250_000) == '250K'
  assert '--eval-max-users' in scale.run_flags(10_000_000)
  assert scale.run_flags(10_000_000)[:4] == ['--retrieval-epochs', '1', '--ranking-epochs', '1']
  # Each component in its own process where the runner would keep gigabytes, not at 1M.
  assert '--component-processes' in scale.run_flags(10_000_000)
  assert all('--no-refit' in scale.run_flags(n) for n in (100_000, 1_000_000, 10_000_000))
  assert '--component-processes' not in scale.run_flags(1_000_000)
  assert '--component-processes' in scale.run_flags(1_000_000, 'always')
  assert '--component-processes' not in scale.run_flags(10_000_000, 'never')


def test_table_slope_plot_and_notes(tmp_path):
  results = [fake(100_000, 10, 50, 100), fake(1_000_000, 100, 400, 1000, feed=False)]
  # Ingestion 10 -> 100 s over a tenfold size: slope 1 (linear).
  assert math.isclose(scale.slope(results, lambda r: r['components']
                                  ['InteractionExampleGen']['seconds']), 1.0)
  rows = scale.table(results)
  assert rows[0].startswith('| | 100K | 1M | growth 100K→1M')
  ingest = next(r for r in rows if r.startswith('| InteractionExampleGen'))
  assert ingest == '| InteractionExampleGen (s) | 10.0 | 100.0 | 1.00 |'
  assert any(r.startswith('| feed hit_rate_at_10 | 0.100 | – |') for r in rows)
  text = scale.report(results, scale.NOTES_MARKER + '\nkept\n')
  assert 'commit abc123,' in text and text.rstrip().endswith('kept')
  # Sizes measured at different commits say so.
  results[1]['commit'] = 'def456+changes'
  text = scale.report(results)
  assert 'commits abc123 (100K), def456+changes (1M),' in text
  scale.plot(results, str(tmp_path / 'p.png'))
  assert (tmp_path / 'p.png').read_bytes()[:8] == PNG_MAGIC


def test_memory_is_attributed_to_the_running_component(tmp_path):
  log = tmp_path / 'runner.log'
  sampler = scale.TreeSampler(pid=0, log=str(log))
  assert sampler._running_component() is None  # no log yet
  log.write_text('noise\n07:29:43  InteractionExampleGen        running\n07:33:06  Interac')
  assert sampler._running_component() == 'InteractionExampleGen'
  # The half-written line is read once it is whole; "done" lines do not change the component.
  with open(log, 'a') as f:
    f.write('tionExampleGen        done\n07:34:01  Transform                    running\n')
  assert sampler._running_component() == 'Transform'
  assert sampler._running_component() == 'Transform'
  results = [fake(100_000, 10, 50, 100), fake(1_000_000, 100, 400, 1000)]
  results[1]['component_peak_rss_bytes'] = {'RetrievalTrainer': 6_000_000_000}
  rows = scale.table(results)
  assert '| peak RSS while RetrievalTrainer runs (GB) | – | 6.00 | – |' in rows
  assert not any('while InteractionExampleGen' in r for r in rows)
