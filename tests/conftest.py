"""Shared fixtures: TF_USE_LEGACY_KERAS before TensorFlow, and small input folders."""
import os

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

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
