"""Prints the users most likely to engage with an item (an ad, a product), from OUT/serving.

    python -m pipeline.audience --item ID [--n N] [--out users.csv] [--include-seen]
        [--output-dir OUT]

Uses the latest pushed retrieval model's ``audience`` signature: the item is embedded from
its features, so a new item (in items.csv, never interacted with) gets an audience too. Users
who already interacted with the item (everything the pushed feed model leaves out) are left
out unless --include-seen is given, so the list can be n shorter than asked; the first line
says how many were left out. With --out the list is written as a user_id,score CSV and one
summary line is printed. --n defaults to 1000 or, for a model exporting fewer, all it
exports; a larger --n is an error.
"""
import argparse
import csv
import os
import sys
from typing import List, Optional, Tuple

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from core import features as F  # noqa: E402
from pipeline.recommend import (DEFAULT_OUTPUT_DIR, NoModelError, known_ids,  # noqa: E402
                                latest_version, load)

SIGNATURE = 'audience'
DEFAULT_N = 1000


class AudienceError(ValueError):
  """A request the model cannot answer (e.g. more users than it exports)."""


def exported_size(signature) -> int:
  """How many users the audience signature returns per item (fixed at export)."""
  size = signature.structured_outputs['user_ids'].shape[-1]
  if size is None:  # not static: ask the model
    import tensorflow as tf
    size = int(signature(item_id=tf.constant([''], tf.string))['user_ids'].shape[-1])
  return int(size)


def users_with(output_dir: str, item: str) -> Optional[set]:
  """The users who interacted with ``item``, as the pushed feed model knows them (every split
  of its run and earlier spans); None without a pushed feed model."""
  from models.feed import exclusion_pairs
  try:
    feed = latest_version(os.path.join(output_dir, 'serving'), 'feed')
  except NoModelError:
    return None
  users, items = exclusion_pairs(feed)
  return set(users[items == item].tolist())


def audience(output_dir: str, item: str, n: Optional[int] = None,
             include_seen: bool = False) -> Tuple[List[Tuple[str, float]], Optional[int]]:
  """[(user_id, score)] of the ``n`` users closest to ``item``, best first, and how many
  users who already interacted with the item were left out (None: not known, no feed model;
  0 with ``include_seen``).

  ``n`` None: DEFAULT_N, capped at what the model exports.
  """
  if n is not None and n < 1:
    raise AudienceError(f'--n must be at least 1 (got {n})')
  import tensorflow as tf
  model = load(latest_version(os.path.join(output_dir, 'serving'), 'retrieval'))
  if SIGNATURE not in model.signatures:
    raise AudienceError(f'the pushed retrieval model has no {SIGNATURE!r} signature; '
                        're-run the pipeline to export one')
  if item not in known_ids(model, 'items'):
    raise AudienceError(f'item {item!r} is not in the catalogue the model was trained with '
                        '(items.csv); add it there and re-run the pipeline')
  signature = model.signatures[SIGNATURE]
  maximum = exported_size(signature)
  if n is None:
    n = min(DEFAULT_N, maximum)
  if n > maximum:
    raise AudienceError(f'--n {n} is more than the model exports: at most {maximum} users '
                        'per item')
  found = signature(item_id=tf.constant([item]))
  rows = [(u.decode(), float(s)) for u, s in zip(found['user_ids'][0].numpy(),
                                                 found['scores'][0].numpy())]
  if include_seen:
    return rows[:n], 0
  seen = users_with(output_dir, item)
  if seen is None:
    return rows[:n], None
  kept = [r for r in rows if r[0] not in seen]
  return kept[:n], len(rows) - len(kept)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--item', required=True, help='item id (any string)')
  parser.add_argument('--n', type=int, default=None,
                      help=f'how many users (default {DEFAULT_N}, or all the model exports '
                      'if fewer)')
  parser.add_argument('--out', help='write user_id,score CSV here instead of printing')
  parser.add_argument('--output-dir', default=DEFAULT_OUTPUT_DIR,
                      help='the output folder of a pipeline run')
  parser.add_argument('--include-seen', action='store_true',
                      help='keep users who already interacted with the item')
  args = parser.parse_args(argv)
  try:
    rows, left_out = audience(args.output_dir, args.item, args.n, args.include_seen)
  except (NoModelError, AudienceError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  if args.include_seen:
    origin = 'users who already interacted with it included'
  elif left_out is None:
    origin = 'no feed model pushed: users who already interacted with it are not known'
  else:
    origin = f'{left_out} users who already interacted with it left out'
  origin = f'the retrieval model\'s audience, {origin} (score: dot product of the towers)'

  if args.out:
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w', newline='', encoding='utf-8') as f:
      writer = csv.writer(f, lineterminator='\n')
      writer.writerow([F.USER_ID, 'score'])
      writer.writerows((u, f'{s:.6f}') for u, s in rows)
    span = f' (scores {rows[0][1]:.3f} .. {rows[-1][1]:.3f})' if rows else ''
    print(f'Wrote {len(rows)} users for item {args.item} to {args.out}{span}: {origin}')
    return 0
  print(f'Top {len(rows)} users for item {args.item}: {origin}')
  print(f'{"#":>5}  {"user_id":<12} {"score":>7}')
  for rank, (user, score) in enumerate(rows, 1):
    print(f'{rank:>5}  {user:<12} {score:7.4f}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
