"""Faults a scheduled run must survive: bad data after a good run, a kill, two runs at once."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

import local_runner
from pipeline import run_summary
from tests.helpers import REPO, TINY, movielens_sample, write


def _serving_listing(out):
  serving = os.path.join(out, 'serving')
  return sorted(os.path.relpath(os.path.join(d, f), serving)
                for d, _, files in os.walk(serving) for f in files)


@pytest.fixture
def pushed_copy(tiny_run, tmp_path):
  """A private copy of the shared run's output folder, with models already pushed."""
  out, _, _ = tiny_run
  copy = str(tmp_path / 'out')
  shutil.copytree(out, copy, ignore=shutil.ignore_patterns('.run.lock'))
  return copy


@pytest.mark.parametrize('bad_row,message', [
    ('1,1,five,881250949', "line 3: column 'rating' is 'five'; expected a number"),
    pytest.param('1,99999,4,881250949', "line 3: item_id '99999' is not in items.csv",
                 marks=pytest.mark.slow),
])
def test_bad_data_fails_clearly_and_keeps_what_was_pushed(pushed_copy, tmp_path, capsys,
                                                          bad_row, message):
  data = tmp_path / 'bad'
  movielens_sample(str(data), users=20)
  lines = (data / 'interactions.csv').read_text().splitlines()
  lines.insert(2, bad_row)
  write(data / 'interactions.csv', '\n'.join(lines) + '\n')
  before = _serving_listing(pushed_copy)
  code = local_runner.main(['--data-dir', str(data), '--output-dir', pushed_copy] + TINY)
  assert code == 1
  printed = capsys.readouterr().out
  assert 'failed in InteractionExampleGen' in printed and message in printed
  assert 'interactions.csv' in printed
  assert _serving_listing(pushed_copy) == before
  with open(os.path.join(pushed_copy, 'metrics.json')) as f:
    metrics = json.load(f)
  assert metrics['status'] == 'failed' and message in metrics['error']


def test_missing_data_dir_is_a_clear_error(tmp_path, capsys):
  code = local_runner.main(['--data-dir', str(tmp_path / 'nowhere'),
                            '--output-dir', str(tmp_path / 'out')])
  assert code == 2
  assert 'no such data directory' in capsys.readouterr().err


def test_a_second_run_on_the_same_output_refuses(tmp_path, capsys):
  out = str(tmp_path / 'out')
  held = run_summary.acquire_run_lock(out)
  try:
    code = local_runner.main(['--data-dir', os.path.join(REPO, 'data', 'movielens-100k'),
                              '--output-dir', out])
  finally:
    held.close()
  assert code == 3
  assert 'another run is using' in capsys.readouterr().err
  assert not os.path.exists(os.path.join(out, 'serving'))


@pytest.mark.slow
def test_a_killed_run_resumes_from_the_finished_components(tmp_path):
  import psutil
  from ml_metadata import errors as mlmd_errors
  data, out = tmp_path / 'data', str(tmp_path / 'out')
  movielens_sample(str(data), users=60)
  # The killed run has each component in its own process: the trainer's process must die
  # with the runner, and the resumed run (in one process) must take over its store.
  args = [sys.executable, os.path.join(REPO, 'local_runner.py'), '--data-dir', str(data),
          '--output-dir', out, '--component-processes'] + TINY
  metadata = run_summary.OutputPaths(out).metadata_path

  def training():
    """(node, run id) of a trainer the run is running, or None."""
    try:
      nodes = run_summary.read_run(metadata) if os.path.exists(metadata) else {}
    except mlmd_errors.StatusError:  # the store is being created or written by the run
      return None
    return next(((n, v['run_id']) for n, v in nodes.items()
                 if n.endswith('Trainer') and v['state'] == 'running'), None)

  process = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
  try:
    deadline = time.time() + 600
    started = False
    while time.time() < deadline and process.poll() is None and not started:
      started = training()
      time.sleep(0 if started else 1)
    assert process.poll() is None, 'the run ended before training started'
    # Killing earlier would test a different thing (nothing cached to resume from), so a slow
    # machine fails here, on the precondition, rather than on the cache assertions below.
    assert started, 'no trainer was running 600 s after the start'
    # The runner's child forks the components: the trainer is a grandchild.
    components = psutil.Process(process.pid).children(recursive=True)
    assert len(components) >= 2, 'the trainer does not run in a process of its own'
  finally:
    process.send_signal(signal.SIGKILL)
    process.wait()
  gone, alive = psutil.wait_procs(components, timeout=30)
  assert not alive, f'component processes outlived the killed runner: {alive}'
  assert not os.path.isdir(os.path.join(out, 'serving', 'retrieval'))

  assert local_runner.main(['--data-dir', str(data), '--output-dir', out] + TINY) == 0
  states = {node: info['state'] for node, info in
            run_summary.read_run(run_summary.OutputPaths(out).metadata_path).items()}
  for node in ('InteractionExampleGen', 'StatisticsGen', 'SchemaGen', 'Transform'):
    assert states[node] == 'cached', (node, states)
  assert states['RetrievalPusher'] == 'done' and states['RankingPusher'] == 'done'
  # The trainer the kill stopped is marked failed by the run that resumed, not left running.
  killed_node, killed_run = started
  assert run_summary.read_run(metadata, run_id=killed_run)[killed_node]['state'] == 'FAILED'
