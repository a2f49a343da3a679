"""local_runner.py refuses what it cannot run on this machine, before creating anything.

URLs for --data-dir, --output-dir and --schema (it would turn gs://bucket/dir into a local
./gs:/bucket/dir), and Beam runners whose workers cannot see this machine's disk.
"""
import os

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
