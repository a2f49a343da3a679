"""How often the pushed feed shows users what they already have, over every user of the data.

    python -m benchmarks.feed_repeats [--output-dir OUT] [--data-dir DIR]

Calls the latest pushed feed model's ``recommend`` for every user in DIR's interactions
(every split: interactions.csv, or train/ and eval/, or the span folders) and counts the
returned items that are in the user's own history, and repeated items within a list. A feed
that leaves out everything known when it was pushed prints zeros. The same over the
candidate feed (train split left out only) shows what the offline metrics score.
"""
import argparse
import csv
import glob
import os
import sys
from typing import Dict, Set

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def histories(data_dir: str) -> Dict[str, Set[str]]:
  """user -> items over every interactions.csv under ``data_dir``."""
  had: Dict[str, Set[str]] = {}
  for path in sorted(glob.glob(os.path.join(data_dir, '**', 'interactions.csv'),
                               recursive=True)):
    with open(path, newline='', encoding='utf-8') as f:
      for row in csv.DictReader(f):
        had.setdefault(row['user_id'], set()).add(row['item_id'])
  if not had:
    raise FileNotFoundError(f'no interactions.csv under {data_dir}')
  return had


def count(model_dir: str, had: Dict[str, Set[str]]) -> Dict[str, int]:
  import numpy as np
  import tensorflow as tf
  from models.feed import recommend_all
  feeds = recommend_all(tf.saved_model.load(model_dir), np.array(sorted(had), dtype=object))
  repeats = {u: len(set(feed) & had[u]) for u, feed in feeds.items()}
  return {'users': len(feeds), 'items': sum(len(f) for f in feeds.values()),
          'already_had': sum(repeats.values()),
          'users_with_one': sum(1 for n in repeats.values() if n),
          'duplicates': sum(len(f) - len(set(f)) for f in feeds.values())}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--output-dir', default=os.path.join(REPO, 'out'))
  parser.add_argument('--data-dir', default=os.path.join(REPO, 'data', 'movielens-100k'))
  parser.add_argument('--model-dir', action='append', default=[],
                      help='a feed SavedModel to count instead of the latest pushed one '
                      '(repeatable), e.g. the FeedModelBuilder candidate')
  args = parser.parse_args(argv)
  from pipeline.recommend import NoModelError, latest_version
  try:
    models = args.model_dir or [latest_version(os.path.join(args.output_dir, 'serving'),
                                               'feed')]
  except NoModelError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  had = histories(args.data_dir)
  print('| feed model | users | items | already had | users with one | duplicates |')
  print('| --- | --- | --- | --- | --- | --- |')
  for model_dir in models:
    c = count(model_dir, had)
    print(f"| {os.path.relpath(model_dir)} | {c['users']} | {c['items']} | "
          f"{c['already_had']} ({c['already_had'] / max(1, c['items']):.1%}) | "
          f"{c['users_with_one']} | {c['duplicates']} |")
  return 0


if __name__ == '__main__':
  sys.exit(main())
