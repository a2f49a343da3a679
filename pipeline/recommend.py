"""Prints a user's feed from the models pushed to OUT/serving: what the user would see.

    python -m pipeline.recommend --user 42 [--output-dir OUT] [--k 10]
                                 [--exclude 50,172 | --history 50,172]

The pushed feed model answers (``recommend``: candidates over the whole catalogue, everything
the user had when it was pushed left out, ranked; ``recommend_excluding`` with --exclude,
for items seen or dismissed since; ``recommend_with_history`` with --history, the user's
latest items, most recent first, which steer the list and are left out). The first line says where the list comes from; the titles
come from the retrieval model's own item table.
"""
import argparse
import functools
import os
import sys
from typing import List, Sequence, Tuple

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

DEFAULT_OUTPUT_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                  'out')


class NoModelError(RuntimeError):
  """Nothing was pushed where a model was expected."""


def latest_version(serving_dir: str, kind: str) -> str:
  """Path of the newest pushed version of ``kind`` (TF Serving picks the same one)."""
  from core import publish
  base = os.path.join(serving_dir, kind)
  latest = publish.latest_version(base)
  if latest is None:
    raise NoModelError(f'no pushed {kind} model in {base}; run `make run` (or local_runner.py '
                       '--output-dir with this folder) first')
  return latest


def load(path: str):
  """The SavedModel of a pushed version, loaded once per process (a load takes seconds).

  A published version is never rewritten (core/publish.py), so a process that asks again,
  as the tests and the benchmarks do, gets the model already loaded; the cache is keyed by
  the version's saved_model.pb as well, so a folder written anew is loaded anew.
  """
  import tensorflow as tf
  stat = tf.io.gfile.stat(os.path.join(path, 'saved_model.pb'))
  return _load(path, stat.mtime_nsec, stat.length)


@functools.lru_cache(maxsize=16)
def _load(path: str, mtime_nsec: int, length: int):
  import tensorflow as tf
  return tf.saved_model.load(path)


def known_ids(model, side: str) -> set:
  """The ids in a pushed model's feature store (``users`` or ``items``)."""
  store = getattr(model, side, None)
  ids = getattr(store, 'ids', None)
  return {i.decode() for i in ids.numpy()} if ids is not None else set()


# What each ``source`` of the feed model means, and what its scores are.
SOURCES = {
    'model': 'from the model, over the user\'s own interactions',
    'features': 'from the model, over the user\'s features only (no interactions yet)',
    'popularity': 'the most popular items: the user is unknown',
    'history': 'from the model, over the items given with --history (user unknown at the push)',
    'two models': 'retrieval then ranking (no feed model pushed: items the user has are not '
                  'left out)',
}
SCORES = {
    'model': 'engagement logit + weight x retrieval score',
    'features': 'engagement logit + weight x retrieval score',
    'popularity': 'share of the training interactions',
    'history': 'engagement logit + weight x retrieval score',
    'two models': 'engagement logit',
}


def recommend(output_dir: str, user: str, k: int, exclude: Sequence[str] = (),
              history: Sequence[str] = ()) -> Tuple[List[Tuple[str, float, str]], str]:
  """([(item_id, score, display text)] for ``user``, best first; where the list comes from,
  a key of SOURCES). ``history``: the user's latest items, most recent first.

  Uses the feed model when one was pushed; otherwise the retrieval and ranking models
  directly (nothing left out, no retrieval blend).
  """
  import tensorflow as tf
  serving = os.path.join(output_dir, 'serving')
  retrieval = load(latest_version(serving, 'retrieval'))
  display = retrieval.signatures['display']
  try:
    feed = load(latest_version(serving, 'feed'))
  except NoModelError:
    feed = None
  if feed is not None:
    if history:
      found = feed.signatures['recommend_with_history'](
          user_id=tf.constant([user]), history_item_ids=tf.constant([list(history)]))
    elif exclude:
      found = feed.signatures['recommend_excluding'](
          user_id=tf.constant([user]), exclude_item_ids=tf.constant([list(exclude)]))
    else:
      found = feed.signatures['recommend'](user_id=tf.constant([user]))
    ids = found['item_ids'][0][:k]
    scores = found['scores'][0][:k].numpy()
    texts = display(item_id=ids)['text'].numpy()
    source = found['source'][0].numpy().decode() if 'source' in found else 'model'
    return [(i.decode(), float(s), t.decode()) for i, s, t in zip(ids.numpy(), scores, texts)
            if i], source
  ranking = load(latest_version(serving, 'ranking'))
  found = retrieval.signatures['retrieve'](user_id=tf.constant([user]))
  items = found['item_ids'][0]
  ranked = ranking.signatures['rank'](user_id=tf.fill(tf.shape(items), user), item_id=items)
  ranked = ranked['engagement_logit'].numpy()
  texts = display(item_id=items)['text'].numpy()
  ids = items.numpy()
  left_out = set(exclude) | set(history)
  order = [i for i in ranked.argsort()[::-1] if ids[i].decode() not in left_out][:k]
  return ([(ids[i].decode(), float(ranked[i]), texts[i].decode()) for i in order],
          'two models')


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--user', required=True, help='user id (any string)')
  parser.add_argument('--output-dir', default=DEFAULT_OUTPUT_DIR,
                      help='the output folder of a pipeline run')
  parser.add_argument('--k', type=int, default=10, help='how many items to print')
  given = parser.add_mutually_exclusive_group()
  given.add_argument('--exclude', default='',
                     help='comma-separated item ids to leave out as well (seen or dismissed '
                     'since the model was pushed)')
  given.add_argument('--history', default='',
                     help='comma-separated item ids the user engaged with lately, most recent '
                     'first: they steer the list and are left out')
  args = parser.parse_args(argv)
  if args.k < 1:
    parser.error('--k must be at least 1')
  exclude = [i for i in args.exclude.split(',') if i]
  history = [i for i in args.history.split(',') if i]
  try:
    rows, source = recommend(args.output_dir, args.user, args.k, exclude, history)
  except NoModelError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  print(f'Top {len(rows)} for user {args.user}: {SOURCES.get(source, source)} '
        f'(score: {SCORES.get(source, "model score")})')
  print(f'{"#":>3}  {"item_id":<10} {"score":>9}  title')
  for n, (item, score, text) in enumerate(rows, 1):
    print(f'{n:>3}  {item:<10} {score:9.4g}  {text}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
