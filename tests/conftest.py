"""Test tiers, the process settings every test needs, and the fast tier's one shared run.

Two tiers (docs/testing.md): a plain ``pytest`` (= ``make test``) runs the fast tier; tests
marked ``slow`` (their own pipeline runs, trained models held to quality floors) run only with
``pytest --all`` (= ``make test-all``, what CI runs).
"""
import contextlib
import fcntl
import json
import os
import tempfile

# Python reads the hash seed at start-up only. Set here, it reaches every process the run
# starts: the xdist workers that run the tests (pyproject.toml's -n 2), Beam workers and the
# serving probes, as `make test` sets it for the first one. (With `-n 0` the tests run in this
# process, whose seed is whatever it started with.)
os.environ['PYTHONHASHSEED'] = '0'

# Before TensorFlow is first imported, here and in every process a test starts.
os.environ['TF_USE_LEGACY_KERAS'] = '1'
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import pytest  # noqa: E402

from tests.helpers import TINY, TINY_USERS, movielens_sample, tail, write  # noqa: E402


def pytest_addoption(parser):
  parser.addoption('--all', action='store_true', default=False,
                   help='also run the slow tier (make test-all)')


def pytest_configure(config):
  config.addinivalue_line('markers', 'slow: full tier only (pytest --all, make test-all)')


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
  if not config.getoption('--all'):
    slow = [item for item in items if item.get_closest_marker('slow')]
    if slow:
      config.hook.pytest_deselected(items=slow)
      items[:] = [item for item in items if not item.get_closest_marker('slow')]
  # The shared run is the longest thing the tier does: one of its tests goes first, so that
  # a worker starts the run at once while the other takes the unit tests, and the rest of
  # its tests go last, to whichever worker is free once the run is there (tiny_run). The
  # workers take tests in this order (--dist loadgroup, every test its own unit).
  shared = [item for item in items if 'tiny_run' in getattr(item, 'fixturenames', ())]
  if shared:
    others = [item for item in items if 'tiny_run' not in getattr(item, 'fixturenames', ())]
    items[:] = shared[:1] + others + shared[1:]


@contextlib.contextmanager
def _exclusive(path):
  """Holds an exclusive lock on the file ``path`` (created if needed), across processes."""
  with open(path, 'a') as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


@pytest.fixture(scope='session', autouse=True)
def temporary_files_under_basetemp(tmp_path_factory):
  """What Beam, TFX and the probes write to the temporary folder lands under pytest's
  basetemp (which keeps the last three sessions), not loose in /tmp."""
  folder = str(tmp_path_factory.mktemp('tmp'))
  previous = os.environ.get('TMPDIR'), tempfile.tempdir
  os.environ['TMPDIR'], tempfile.tempdir = folder, folder
  yield folder
  tempfile.tempdir = previous[1]
  if previous[0] is None:
    os.environ.pop('TMPDIR', None)
  else:
    os.environ['TMPDIR'] = previous[0]


@pytest.fixture
def tiny_tables(tmp_path):
  """A three-table input folder small enough to check by hand."""
  write(tmp_path / 'items.csv', 'item_id,title,genres,price\n'
        '10,Alpha,Action|Comedy,1.5\n20,Beta,Drama,\n30,Gamma,,3\n')
  write(tmp_path / 'users.csv', 'user_id,age,country\n1,20,ES\n2,30,FR\n3,40,ES\n')
  write(tmp_path / 'interactions.csv', 'user_id,item_id,rating,timestamp\n'
        '1,10,5,100\n1,20,3,101\n2,10,4,102\n2,30,2,103\n3,20,1,104\n')
  return tmp_path


@pytest.fixture(scope='session')
def tiny_run(tmp_path_factory):
  """The fast tier's one pipeline run (a MovieLens sample, one epoch, gates opened), shared by
  every end-to-end assertion: (output folder, data folder, interactions in the sample).

  One run per session, whatever the workers: it is made in the session's temporary folder,
  which every xdist worker sees, by the first worker that needs it; a worker that needs it
  meanwhile waits for it (a file lock), then reads the same folders. Tests do not change
  them (the report test rebuilds the run's report in place; the bad-data test runs on a copy).
  A failed run fails here, with the tail of its log, before any test reads its outputs.
  """
  shared = tmp_path_factory.getbasetemp()
  if os.environ.get('PYTEST_XDIST_WORKER'):
    shared = shared.parent  # the workers' own folders are popen-gw0, popen-gw1... in it
  data, out = shared / 'tiny_data', shared / 'tiny_out'
  result = shared / 'tiny_run.json'
  with _exclusive(str(shared / 'tiny_run.lock')):
    if not result.exists():
      code = n = None
      try:
        import local_runner
        n = movielens_sample(str(data), users=TINY_USERS)
        code = local_runner.main(['--data-dir', str(data), '--output-dir', str(out)] + TINY)
      finally:  # also when the run raised: the other workers fail too instead of re-running it
        result.write_text(json.dumps({'code': code, 'interactions': n}))
    recorded = json.loads(result.read_text())
  if recorded['code'] != 0:
    pytest.fail(f'the shared pipeline run failed (exit code {recorded["code"]}); the end of '
                'its log:\n' + tail(os.path.join(str(out), 'run.log')), pytrace=False)
  return str(out), str(data), recorded['interactions']
