"""What several test modules share: paths, small input folders, runner flags, run artifacts.

Test modules import from here, never from each other, so that one module can be run alone.
"""
import csv
import os
from typing import Dict

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MOVIELENS = os.path.join(REPO, 'data', 'movielens-100k')

# Runner flags of the full tier's runs: models trained enough to pass the default gates.
FAST = ['--beam-mode', 'in_memory', '--retrieval-epochs', '3', '--ranking-epochs', '3',
        '--retrieval-batch-size', '512']

# The fast tier's one shared run: every stage once, one epoch, gates opened so that the
# one-epoch models are pushed (their quality is the full tier's business), and a fixed number
# of segments instead of the silhouette search.
TINY_USERS = 60
# The refit is on by default: the shared run checks it end to end (the pushed models are the
# refits).
TINY = ['--beam-mode', 'in_memory', '--epochs', '1', '--retrieval-batch-size', '512',
        '--min-top-100', '0', '--max-rmse', '100', '--no-recent-popularity-gate',
        '--segments', '2']


def write(path, text):
  os.makedirs(os.path.dirname(str(path)), exist_ok=True)
  with open(path, 'w', encoding='utf-8') as f:
    f.write(text)
  return str(path)


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


def drop_column(path, column):
  """Rewrites a CSV file without one of its columns (e.g. ratings -> implicit feedback)."""
  with open(path, newline='') as f:
    rows = list(csv.reader(f))
  keep = [i for i, c in enumerate(rows[0]) if c != column]
  with open(path, 'w', newline='') as f:
    csv.writer(f).writerows([[r[i] for i in keep] for r in rows])


def tail(path, lines=60):
  """The last lines of a log file, for a failure message."""
  if not os.path.exists(path):
    return f'({path} does not exist)'
  with open(path, encoding='utf-8', errors='replace') as f:
    return ''.join(f.readlines()[-lines:])


def load_model(path: str):
  """A SavedModel loaded once per test process: the run's models are read by many tests, and
  a load costs seconds. Tests only call the models, never change them. The cache is the
  command-line tools' own (pipeline.recommend.load), so a pushed model the tests and the
  tools both read is loaded once."""
  from pipeline.recommend import load
  return load(path)


def _custom(artifact, name):
  value = artifact.custom_properties.get(name)
  return getattr(value, value.WhichOneof('value')) if value is not None else None


def run_artifact(out: str, node: str, key: str, cls):
  """An output artifact of a finished run, read from its ML Metadata store, as ``cls``."""
  from pipeline.run_summary import OutputPaths, read_run
  recorded = read_run(OutputPaths(out).metadata_path)[node]['outputs'][key][0]
  artifact = cls()
  artifact.uri = recorded.uri
  artifact.id = recorded.id
  if 'split_names' in recorded.properties:
    artifact.split_names = recorded.properties['split_names'].string_value
  for name in recorded.custom_properties:
    value = _custom(recorded, name)
    if isinstance(value, int):
      artifact.set_int_custom_property(name, value)
    elif isinstance(value, str):
      artifact.set_string_custom_property(name, value)
  return artifact


def run_artifacts(out: str) -> Dict[str, object]:
  """The run's examples, trainers' and feed builder's models and their blessings."""
  from tfx.types import standard_artifacts as sa
  from pipeline import pipeline as P
  return {
      'examples': run_artifact(out, P.EXAMPLE_GEN, 'examples', sa.Examples),
      'retrieval_model': run_artifact(out, P.RETRIEVAL_TRAINER, 'model', sa.Model),
      'ranking_model': run_artifact(out, P.RANKING_TRAINER, 'model', sa.Model),
      'retrieval_blessing': run_artifact(out, P.RETRIEVAL_EVALUATOR, 'blessing',
                                         sa.ModelBlessing),
      'ranking_blessing': run_artifact(out, P.RANKING_EVALUATOR, 'blessing', sa.ModelBlessing),
      'feed_model': run_artifact(out, P.FEED_BUILDER, 'model', sa.Model),
      'feed_evaluation': run_artifact(out, P.FEED_BUILDER, 'evaluation', sa.ModelEvaluation),
      'feed_blessing': run_artifact(out, P.FEED_BUILDER, 'blessing', sa.ModelBlessing),
  }
