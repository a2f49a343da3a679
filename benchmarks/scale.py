"""Scale benchmark: how the pipeline's cost grows with its data (issue #8).

    python -m benchmarks.scale [--sizes 100k,1m,10m] [--output-dir build/scale] [--force]

For each size it generates synthetic data (pipeline/synthetic_data.py; users = items =
interactions / 10), runs `local_runner.py` in a subprocess (DirectRunner, multi-processing,
the default; above 2M each component in its own process, --component-processes) on a fresh output folder without cache, and records the wall time of every
component (the run's metrics.json), the end-to-end wall time, the peak RSS summed over the
runner and all its children (psutil, every 0.5 s), the CPU seconds of the tree, the load
average, and the quality metrics. Each size's result is kept in OUTPUT/results/SIZE.json, so a long series can be split
over several invocations (a size already measured is not re-run without --force). The
table of every measured size goes to benchmarks/SCALE.md (printed too), the log-log plot
of time against size to benchmarks/scale.png.
"""
import argparse
import datetime
import json
import math
import os
import re
import resource
import shutil
import subprocess
import sys
import threading
import time
from typing import Dict, List, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Flags a user would choose at each size (model defaults are unchanged). Epoch counts fall
# as the data grows (one epoch at 1M already sees 800K examples); the retrieval evaluation
# scores a fixed sample of eval users so that its cost follows the catalogue, not the users.
EVAL_MAX_USERS = 2000
# SCALE.md is regenerated on every invocation; text from this line on is kept.
NOTES_MARKER = '<!-- analysis: kept when the table is regenerated -->'


# Above this size each component runs in its own process (local_runner.py
# --component-processes): the runner process would otherwise keep the trainers' and
# evaluators' memory to the end of the run (13-16 GB at 10M), while the ~20 processes' start
# (5-10 s each) is a few percent of a run there and a third of one at 100K.
COMPONENT_PROCESSES_ABOVE = 2_000_000


def run_flags(interactions: int, component_processes: str = 'auto') -> List[str]:
  """Per-size local_runner.py flags (stated in SCALE.md); ``component_processes``: 'auto'
  (above COMPONENT_PROCESSES_ABOVE), 'always' or 'never'."""
  if interactions <= 200_000:
    epochs = ['--retrieval-epochs', '10', '--ranking-epochs', '10']
  elif interactions <= 2_000_000:
    epochs = ['--retrieval-epochs', '2', '--ranking-epochs', '2']
  else:  # one epoch at 10M is 8M examples, four times what two epochs at 1M show the models
    epochs = ['--retrieval-epochs', '1', '--ranking-epochs', '1']
  processes = (component_processes == 'always' or
               (component_processes == 'auto' and interactions > COMPONENT_PROCESSES_ABOVE))
  # --no-refit: the table follows the cost of one trained pair of models as the data grows,
  # as it always has; the refit (on by default) repeats Transform and both trainers on train +
  # eval, and benchmarks/REFIT.md gives its cost beside its gain.
  return epochs + ['--eval-max-users', str(EVAL_MAX_USERS), '--beam-mode', 'multi_processing',
                   '--no-refit'] + (['--component-processes'] if processes else [])


def parse_size(name: str) -> int:
  """'100k' -> 100000, '1m' -> 1000000, '250000' -> 250000."""
  name = name.strip().lower()
  scale = {'k': 1_000, 'm': 1_000_000}.get(name[-1:], 1)
  return int(float(name.rstrip('km')) * scale)


def size_name(n: int) -> str:
  if n % 1_000_000 == 0:
    return f'{n // 1_000_000}M'
  if n % 1_000 == 0:
    return f'{n // 1_000}K'
  return str(n)


# local_runner.py's progress line for a component that starts ("07:29:43  Transform  running").
RUNNING = re.compile(r'^\d\d:\d\d:\d\d  (\S+) +running$', re.M)


class TreeSampler:
  """Peak summed RSS of a process and its descendants, and the load average, every period.

  With ``log`` (the runner's output file) it also keeps the peak per component, the one the
  last "running" progress line names, and the peak of the runner process alone (where the
  non-Beam components run, unless each runs in its own process), to say which step the
  memory goes to.
  """

  def __init__(self, pid: int, period: float = 0.5, log: Optional[str] = None):
    self.pid, self.period, self.log = pid, period, log
    self.peak_rss = 0
    self.peak_runner_rss = 0
    self.component_peak_rss: Dict[str, int] = {}
    self._component = None
    self._log_offset = 0
    self.loads: List[float] = []
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._loop, daemon=True)

  def _loop(self):
    import psutil
    try:
      root = psutil.Process(self.pid)
    except psutil.NoSuchProcess:
      return
    while not self._stop.is_set():
      total = 0
      try:
        procs = [root] + root.children(recursive=True)
      except psutil.NoSuchProcess:
        break
      for p in procs:
        try:
          rss = p.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
          continue
        total += rss
        if p is root:
          self.peak_runner_rss = max(self.peak_runner_rss, rss)
      self.peak_rss = max(self.peak_rss, total)
      component = self._running_component()
      if component:
        self.component_peak_rss[component] = max(self.component_peak_rss.get(component, 0),
                                                 total)
      self.loads.append(os.getloadavg()[0])
      self._stop.wait(self.period)

  def _running_component(self) -> Optional[str]:
    """The component named by the last "running" line of the log so far."""
    if self.log and os.path.exists(self.log):
      with open(self.log, 'rb') as f:
        f.seek(self._log_offset)
        data = f.read()
      # Only whole lines are consumed, so a line written in two parts is read once.
      data = data[:data.rfind(b'\n') + 1]
      self._log_offset += len(data)
      found = RUNNING.findall(data.decode('utf-8', errors='replace'))
      if found:
        self._component = found[-1]
    return self._component

  def __enter__(self):
    self._thread.start()
    return self

  def __exit__(self, *exc):
    self._stop.set()
    self._thread.join()


def generate(data_dir: str, n: int, seed: int) -> float:
  """Synthetic data for n interactions (kept between invocations); returns seconds spent."""
  if os.path.exists(os.path.join(data_dir, 'truth.json')):
    return 0.0
  started = time.time()
  subprocess.run([sys.executable, '-m', 'pipeline.synthetic_data', '--out', data_dir,
                  '--users', str(max(n // 10, 100)), '--items', str(max(n // 10, 100)),
                  '--interactions', str(n), '--seed', str(seed)],
                 cwd=REPO, check=True, stdout=subprocess.DEVNULL)
  return time.time() - started


def measure(n: int, out: str, seed: int, component_processes: str = 'auto') -> Dict:
  """Runs the pipeline once on n interactions; returns the result record."""
  name = size_name(n)
  data_dir = os.path.join(out, f'data-{name.lower()}')
  generate_seconds = generate(data_dir, n, seed)
  run_dir = os.path.join(out, f'run-{name.lower()}')
  shutil.rmtree(run_dir, ignore_errors=True)
  os.makedirs(run_dir)
  flags = run_flags(n, component_processes)
  cmd = [sys.executable, 'local_runner.py', '--data-dir', data_dir, '--output-dir', run_dir,
         '--no-cache'] + flags
  env = dict(os.environ, TF_USE_LEGACY_KERAS='1', PYTHONHASHSEED='0')
  load_before = os.getloadavg()
  print(f'[{name}] {" ".join(cmd[1:])}  (load {load_before[0]:.2f})', flush=True)
  started = time.time()
  cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
  log_path = os.path.join(out, f'runner-{name.lower()}.log')
  with open(log_path, 'w') as log:
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    with TreeSampler(proc.pid, log=log_path) as sampler:
      code = proc.wait()
  wall = time.time() - started
  # CPU seconds of every reaped descendant: less sensitive to other users' load than wall time.
  cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
  cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
  metrics_path = os.path.join(run_dir, 'metrics.json')
  metrics = {}
  if os.path.exists(metrics_path):
    with open(metrics_path) as f:
      metrics = json.load(f)
  loads = sampler.loads or [load_before[0]]
  return {
      'name': name, 'interactions': n, 'users': max(n // 10, 100), 'items': max(n // 10, 100),
      'flags': flags, 'exit_code': code, 'status': metrics.get('status', 'failed'),
      'wall_seconds': round(wall, 1), 'cpu_seconds': round(cpu, 1),
      'generate_seconds': round(generate_seconds, 1),
      'peak_rss_bytes': sampler.peak_rss,
      'peak_runner_rss_bytes': sampler.peak_runner_rss,
      'component_peak_rss_bytes': sampler.component_peak_rss,
      'load': {'before': round(load_before[0], 2), 'mean': round(sum(loads) / len(loads), 2),
               'max': round(max(loads), 2)},
      'components': metrics.get('components', {}),
      'retrieval': metrics.get('retrieval', {}), 'ranking': metrics.get('ranking', {}),
      'feed': metrics.get('feed', {}), 'failed_component': metrics.get('failed_component'),
      'error': metrics.get('error'),
      'date': datetime.datetime.now().isoformat(timespec='seconds'),
      'commit': current_commit(),
  }


def current_commit() -> str:
  """Short hash of HEAD, marked ``+changes`` when the tree has uncommitted changes."""
  run = lambda *a: subprocess.run(['git', *a], cwd=REPO, capture_output=True,
                                  text=True).stdout.strip()
  commit = run('rev-parse', '--short', 'HEAD') or 'unknown'
  return commit + ('+changes' if run('status', '--porcelain', '--untracked-files=no') else '')


def load_results(out: str) -> List[Dict]:
  folder = os.path.join(out, 'results')
  if not os.path.isdir(folder):
    return []
  results = []
  for name in os.listdir(folder):
    if name.endswith('.json'):
      with open(os.path.join(folder, name)) as f:
        results.append(json.load(f))
  return sorted(results, key=lambda r: r['interactions'])


def _fmt(value: Optional[float], digits: int = 3) -> str:
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return '–'
  return f'{value:.{digits}f}'


def slope(results: List[Dict], get) -> Optional[float]:
  """Log-log growth exponent between the two largest sizes (1 = linear)."""
  points = [(r['interactions'], get(r)) for r in results]
  points = [(n, v) for n, v in points if v]
  if len(points) < 2:
    return None
  (n1, v1), (n2, v2) = points[-2], points[-1]
  if v1 <= 0 or v2 <= 0 or n1 == n2:
    return None
  return math.log(v2 / v1) / math.log(n2 / n1)


def component_order(results: List[Dict]) -> List[str]:
  """Components in their order in the largest run's metrics.json."""
  order: List[str] = []
  for r in reversed(results):
    for c in r['components']:
      if c not in order:
        order.append(c)
  return order


def table(results: List[Dict]) -> List[str]:
  """Markdown rows: components then totals, RSS and metrics; one column per size."""
  sizes = [r['name'] for r in results]
  growth = f'growth {results[-2]["name"]}→{results[-1]["name"]}' if len(results) > 1 else 'growth'
  rows = ['| | ' + ' | '.join(sizes) + f' | {growth} (log-log slope) |',
          '| --- |' + ' --- |' * (len(sizes) + 1)]

  def row(label, get, digits=1, with_slope=True):
    cells = [_fmt(get(r), digits) for r in results]
    s = slope(results, get) if with_slope else None
    rows.append(f'| {label} | ' + ' | '.join(cells) + f' | {_fmt(s, 2)} |')

  rows.append('| users / items | ' + ' | '.join(f'{r["users"]:,} / {r["items"]:,}' for r in results)
              + ' | |')
  for c in component_order(results):
    row(f'{c} (s)', lambda r, c=c: r['components'].get(c, {}).get('seconds'))
  row('**end to end (s)**', lambda r: r['wall_seconds'])
  row('CPU seconds, process tree', lambda r: r.get('cpu_seconds'))
  row('**peak RSS, process tree (GB)**', lambda r: r['peak_rss_bytes'] / 1e9, 2)
  row('peak RSS, runner process alone (GB)',
      lambda r: (r.get('peak_runner_rss_bytes') or 0) / 1e9 or None, 2)
  for c in component_order(results):
    if any(r.get('component_peak_rss_bytes', {}).get(c) for r in results):
      row(f'peak RSS while {c} runs (GB)',
          lambda r, c=c: (r.get('component_peak_rss_bytes', {}).get(c) or 0) / 1e9 or None, 2)
  rows.append('| load average before / mean / max | ' + ' | '.join(
      f'{r["load"]["before"]:.1f} / {r["load"]["mean"]:.1f} / {r["load"]["max"]:.1f}'
      for r in results) + ' | |')
  row('retrieval top_100', lambda r: r['retrieval'].get('top_100'), 3, False)
  row('retrieval top_100_unseen', lambda r: r['retrieval'].get('top_100_unseen'), 3, False)
  row('ranking rmse', lambda r: r['ranking'].get('rmse'), 3, False)
  row('feed hit_rate_at_10', lambda r: r['feed'].get('hit_rate_at_10'), 3, False)
  row('feed ndcg_at_10', lambda r: r['feed'].get('ndcg_at_10'), 3, False)
  rows.append('| status | ' + ' | '.join(
      r['status'] + (f' ({r["failed_component"]})' if r.get('failed_component') else '')
      for r in results) + ' | |')
  return rows


def plot(results: List[Dict], path: str, min_seconds: float = 2.0) -> None:
  """Log-log time against interactions, one line per component (those over min_seconds)."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(9, 6))
  ns = [r['interactions'] for r in results]
  for c in component_order(results):
    ys = [r['components'].get(c, {}).get('seconds') or float('nan') for r in results]
    if max((y for y in ys if not math.isnan(y)), default=0) >= min_seconds:
      ax.plot(ns, ys, marker='o', label=c)
  ax.plot(ns, [r['wall_seconds'] for r in results], marker='s', color='black', linewidth=2,
          label='end to end')
  if len(ns) > 1:  # linear-growth guide through the first end-to-end point
    ax.plot(ns, [results[0]['wall_seconds'] * n / ns[0] for n in ns], ':', color='grey',
            label='linear (guide)')
  ax.set_xscale('log')
  ax.set_yscale('log')
  ax.set_xlabel('interactions')
  ax.set_ylabel('wall seconds')
  ax.set_title('Pipeline cost against data size (2-core DirectRunner)')
  ax.legend(fontsize=7, loc='upper left')
  ax.grid(True, which='both', alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def report(results: List[Dict], notes: str = '') -> str:
  flags = '\n'.join(f'- {r["name"]} ({r["interactions"]:,} interactions, {r["users"]:,} users, '
                    f'{r["items"]:,} items): `{" ".join(r["flags"])}`' for r in results)
  dates = sorted({r['date'][:10] for r in results})
  # Each size was measured at its own commit (older results have none recorded).
  commits = {r['name']: r.get('commit', 'unrecorded') for r in results}
  if len(set(commits.values())) == 1:
    measured = f'commit {next(iter(commits.values()))}'
  else:
    measured = 'commits ' + ', '.join(f'{c} ({name})' for name, c in commits.items())
  return '\n'.join([
      '# Scale benchmark: pipeline cost against data size', '',
      f'{", ".join(dates)}, {measured}, {os.cpu_count()} cores '
      f'(`make benchmark-scale`). Synthetic data (`pipeline/synthetic_data.py`, seed 0), '
      '`local_runner.py --no-cache` on a fresh output folder, DirectRunner multi-processing. '
      'Peak RSS is summed over the runner and all its children sampled every 0.5 s (shared '
      'pages are counted once per process, so it is an upper bound). The load average during '
      'each run is in the table (on 2 cores, about 2 is the run alone; more means it shared '
      'the machine); CPU seconds of the process tree (user + system) are less sensitive to '
      'load than wall time.', '',
      'Run flags per size (model defaults unchanged):', '', flags, '',
      *table(results), '', '![time against size](scale.png)', '',
      notes or NOTES_MARKER + '\n'])


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--sizes', default='100k,1m,10m',
                      help='interaction counts, comma separated (100k, 1m, 10m, or numbers)')
  parser.add_argument('--output-dir', default=os.path.join(REPO, 'build', 'scale'),
                      help='data, runs, logs and results/SIZE.json (kept for resuming)')
  parser.add_argument('--force', action='store_true', help='re-measure sizes already measured')
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--component-processes', choices=['auto', 'always', 'never'],
                      default='auto', help='run each component in its own process '
                      f'(local_runner.py --component-processes); auto: above '
                      f'{size_name(COMPONENT_PROCESSES_ABOVE)} interactions')
  parser.add_argument('--results', default=os.path.join(REPO, 'benchmarks', 'SCALE.md'))
  parser.add_argument('--plot', default=os.path.join(REPO, 'benchmarks', 'scale.png'))
  args = parser.parse_args(argv)

  out = os.path.abspath(args.output_dir)
  os.makedirs(os.path.join(out, 'results'), exist_ok=True)
  for n in sorted(parse_size(s) for s in args.sizes.split(',') if s.strip()):
    path = os.path.join(out, 'results', f'{size_name(n).lower()}.json')
    if os.path.exists(path) and not args.force:
      print(f'[{size_name(n)}] already measured ({path}); --force to re-run', flush=True)
      continue
    result = measure(n, out, args.seed, args.component_processes)
    with open(path, 'w') as f:
      json.dump(result, f, indent=2)
    print(f'[{size_name(n)}] {result["status"]} in {result["wall_seconds"]:.0f} s, '
          f'peak RSS {result["peak_rss_bytes"] / 1e9:.2f} GB', flush=True)

  results = load_results(out)
  if not results:
    print('nothing measured')
    return 1
  notes = ''
  if os.path.exists(args.results):  # the hand-written analysis below the marker is kept
    with open(args.results) as f:
      old = f.read()
    if NOTES_MARKER in old:
      notes = old[old.index(NOTES_MARKER):]
  text = report(results, notes)
  print('\n'.join(table(results)))
  with open(args.results, 'w') as f:
    f.write(text.rstrip() + '\n')
  plot(results, args.plot)
  print(f'wrote {args.results} and {args.plot}')
  return 0 if all(r['status'] == 'succeeded' for r in results) else 1


if __name__ == '__main__':
  sys.exit(main())
