"""local_runner.py refuses what it cannot run on this machine, before creating anything.

URLs for --data-dir, --output-dir and --schema (it would turn gs://bucket/dir into a local
./gs:/bucket/dir), and Beam runners whose workers cannot see this machine's disk. And the
local schedule (deploy/: systemd units, crontab line) runs local_runner.py with flags it
accepts.
"""
import configparser
import os
import shlex
import shutil
import subprocess

import pytest

import local_runner

LOCAL_ONLY = ('the local runner needs local folders and files; use kubeflow_v2_runner.py '
              'for object stores (gs://, s3://...)')


@pytest.fixture
def cwd(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  return tmp_path


@pytest.mark.parametrize('flag,value', [
    ('--data-dir', 'gs://bucket/data'),
    ('--data-dir', 's3://bucket/data'),
    ('--output-dir', 'gs://bucket/out'),
    ('--output-dir', 'hdfs://namenode/out'),
    ('--schema', 'gs://bucket/schema.pbtxt'),
    ('--data-dir', 'file:///data'),
])
def test_urls_are_refused_with_one_line(cwd, capsys, flag, value):
  argv = ([] if flag == '--output-dir' else ['--output-dir', str(cwd / 'out')]) + [flag, value]
  assert local_runner.main(argv) == 2
  captured = capsys.readouterr()
  assert captured.out == ''
  assert captured.err == f'error: {flag} {value}: {LOCAL_ONLY}\n'
  assert os.listdir(cwd) == []  # no out/, no gs:/ folder


@pytest.mark.parametrize('runner', ['dataflow', 'flink', 'spark'])
def test_remote_beam_runners_are_refused(cwd, capsys, runner):
  assert local_runner.main(['--output-dir', str(cwd / 'out'), '--beam-runner', runner]) == 2
  err = capsys.readouterr().err
  assert err == (f'error: --beam-runner {runner}: the local runner keeps its artifacts on this '
                 f"machine's disk, which {runner} workers cannot see; use kubeflow_v2_runner.py "
                 'for Dataflow, Flink or Spark\n')
  assert os.listdir(cwd) == []


def test_local_paths_and_the_direct_runner_pass(tmp_path):
  args = local_runner.parse_args(['--data-dir', str(tmp_path), '--output-dir', 'out',
                                  '--schema', 'schema.pbtxt', '--beam-runner', 'direct'])
  assert local_runner.refusal(args) is None
  # A Windows-style or relative path with a colon is not a URL.
  args = local_runner.parse_args(['--data-dir', 'C:/data', '--output-dir', 'a:b/out'])
  assert local_runner.refusal(args) is None


def test_help_says_where_remote_runners_go(capsys):
  with pytest.raises(SystemExit):
    local_runner.parse_args(['--help'])
  assert 'kubeflow_v2_runner.py' in ' '.join(capsys.readouterr().out.split())


# --- the local schedule in deploy/ ------------------------------------------------------------

DEPLOY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'deploy')
CHECKOUT = '/opt/woonkly-recommender'


def _unit(name):
  parser = configparser.ConfigParser(interpolation=None, strict=True)
  parser.optionxform = str  # systemd keys are case-sensitive
  with open(os.path.join(DEPLOY, name)) as f:
    parser.read_file(f)
  return parser


def _runner_args(argv):
  """local_runner's parse of the arguments after `python local_runner.py`; must be allowed."""
  args = local_runner.parse_args(argv)
  assert local_runner.refusal(args) is None
  assert args.if_new_data
  return args


def test_service_runs_the_local_runner_with_its_own_flags():
  service = _unit('woonkly-retrain.service')['Service']
  assert service['Type'] == 'oneshot'
  assert service['WorkingDirectory'] == CHECKOUT
  assert 'TF_USE_LEGACY_KERAS=1' in shlex.split(service['Environment'])
  python, script, *argv = shlex.split(service['ExecStart'])
  assert os.path.isabs(python) and os.path.isabs(script)  # systemd needs absolute paths
  assert (python, script) == (f'{CHECKOUT}/.venv/bin/python', f'{CHECKOUT}/local_runner.py')
  args = _runner_args(argv)
  assert (args.data_dir, args.output_dir) == ('/srv/woonkly/data', '/srv/woonkly/out')


def test_timer_starts_the_service_daily_at_0315_and_catches_up():
  timer = _unit('woonkly-retrain.timer')
  assert timer['Timer']['OnCalendar'] == '*-*-* 03:15:00'
  assert timer['Timer']['Persistent'] == 'true'
  assert timer['Timer']['Unit'] == 'woonkly-retrain.service'
  assert timer['Install']['WantedBy'] == 'timers.target'


def test_crontab_line_runs_the_local_runner_with_its_own_flags():
  import kubeflow_v2_runner
  with open(os.path.join(DEPLOY, 'crontab.example')) as f:
    lines = [l.strip() for l in f if l.strip() and not l.startswith('#')]
  env = dict(l.split('=', 1) for l in lines if '=' in l.split()[0])
  assert env['TF_USE_LEGACY_KERAS'] == '1'
  (entry,) = [l for l in lines if '=' not in l.split()[0]]
  fields = entry.split(None, 5)
  assert fields[:5] == ['15', '3', '*', '*', '*']
  kubeflow_v2_runner.check_cron(' '.join(fields[:5]))  # raises if cron would not take it
  command = fields[5]
  assert '%' not in command  # cron would turn it into a newline
  cd, rest = command.split(' && ', 1)
  assert cd == f'cd {CHECKOUT}'
  python, script, *argv = shlex.split(rest.split(' >> ')[0])
  assert (python, script) == ('.venv/bin/python', 'local_runner.py')
  _runner_args(argv)


@pytest.mark.skipif(shutil.which('systemd-analyze') is None, reason='no systemd-analyze')
def test_systemd_accepts_the_units(tmp_path):
  """systemd-analyze verify, with the checkout path pointed at this repository (it checks
  that ExecStart's program exists)."""
  here = os.path.dirname(DEPLOY)
  if not os.access(os.path.join(here, '.venv', 'bin', 'python'), os.X_OK):
    pytest.skip('no .venv in this checkout')
  for name in ('woonkly-retrain.service', 'woonkly-retrain.timer'):
    with open(os.path.join(DEPLOY, name)) as f:
      (tmp_path / name).write_text(f.read().replace(CHECKOUT, here))
  result = subprocess.run(['systemd-analyze', 'verify', str(tmp_path / 'woonkly-retrain.service'),
                           str(tmp_path / 'woonkly-retrain.timer')],
                          capture_output=True, text=True, timeout=60, check=False)
  assert result.returncode == 0, result.stderr
