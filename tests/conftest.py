"""Shared fixtures: TF_USE_LEGACY_KERAS before TensorFlow, and small input folders."""
import os

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import csv  # noqa: E402

import pytest  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MOVIELENS = os.path.join(REPO, 'data', 'movielens-100k')


def write(path, text):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w', encoding='utf-8') as f:
    f.write(text)
  return str(path)


@pytest.fixture
def tiny_tables(tmp_path):
  """A three-table input folder small enough to check by hand."""
  write(tmp_path / 'items.csv', 'item_id,title,genres,price\n'
        '10,Alpha,Action|Comedy,1.5\n20,Beta,Drama,\n30,Gamma,,3\n')
  write(tmp_path / 'users.csv', 'user_id,age,country\n1,20,ES\n2,30,FR\n3,40,ES\n')
  write(tmp_path / 'interactions.csv', 'user_id,item_id,rating,timestamp\n'
        '1,10,5,100\n1,20,3,101\n2,10,4,102\n2,30,2,103\n3,20,1,104\n')
  return tmp_path


FAST = ['--beam-mode', 'in_memory', '--retrieval-epochs', '3', '--ranking-epochs', '3',
        '--retrieval-batch-size', '512']


def movielens_sample(folder, users=150):
  """The interactions of the first ``users`` users, with the full catalogue and users.csv."""
  with open(os.path.join(MOVIELENS, 'interactions.csv')) as f:
    rows = list(csv.reader(f))
  keep = {str(u) for u in range(1, users + 1)}
  body = [r for r in rows[1:] if r[0] in keep]
  write(os.path.join(folder, 'interactions.csv'),
        '\n'.join(','.join(r) for r in [rows[0]] + body) + '\n')
  for name in ('items.csv', 'users.csv'):
    with open(os.path.join(MOVIELENS, name), encoding='utf-8') as f:
      write(os.path.join(folder, name), f.read())
  return len(body)


@pytest.fixture(scope='session')
def movielens_run(tmp_path_factory):
  """One pipeline run on a MovieLens sample, shared by the tests that read its outputs."""
  import local_runner
  data = tmp_path_factory.mktemp('data')
  n = movielens_sample(str(data))
  out = tmp_path_factory.mktemp('out')
  code = local_runner.main(['--data-dir', str(data), '--output-dir', str(out)] + FAST)
  return code, str(out), n
