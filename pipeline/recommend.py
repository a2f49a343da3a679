"""Prints a user's recommendations from the models pushed to OUT/serving.

    python -m pipeline.recommend --user 42 [--output-dir OUT] [--k 10]

The feed model answers (candidates over the whole catalogue, the user's seen items removed,
ranked); the titles come from the retrieval model's own item table.
"""
import argparse
import os
import sys

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

DEFAULT_OUTPUT_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                  'out')


class NoModelError(RuntimeError):
  """Nothing was pushed where a model was expected."""


def latest_version(serving_dir: str, kind: str) -> str:
  """Path of the newest pushed version of ``kind`` (TF Serving picks the same one)."""
  base = os.path.join(serving_dir, kind)
  versions = [v for v in (os.listdir(base) if os.path.isdir(base) else []) if v.isdigit()
              and os.path.exists(os.path.join(base, v, 'saved_model.pb'))]
  if not versions:
    raise NoModelError(f'no pushed {kind} model in {base}; run `make run` (or local_runner.py '
                       '--output-dir with this folder) first')
  return os.path.join(base, max(versions, key=int))


def known_ids(model, side: str) -> set:
  """The ids in a pushed model's feature store (``users`` or ``items``)."""
  store = getattr(model, side, None)
  ids = getattr(store, 'ids', None)
  return {i.decode() for i in ids.numpy()} if ids is not None else set()


def recommend(output_dir: str, user: str, k: int):
  """([(item_id, score, display text)] for ``user``, best first; whether the user is known).

  Uses the feed model (retrieve, drop seen items, rank) when one was pushed; otherwise the
  retrieval and ranking models directly (seen items not removed, no retrieval blend).
  """
  import tensorflow as tf
  serving = os.path.join(output_dir, 'serving')
  retrieval = tf.saved_model.load(latest_version(serving, 'retrieval'))
  known = user in known_ids(retrieval, 'users')
  display = retrieval.signatures['display']
  try:
    feed = tf.saved_model.load(latest_version(serving, 'feed'))
  except NoModelError:
    feed = None
  if feed is not None:
    found = feed.signatures['recommend'](user_id=tf.constant([user]))
    ids = found['item_ids'][0][:k]
    scores = found['scores'][0][:k].numpy()
    texts = display(item_id=ids)['text'].numpy()
    return [(i.decode(), float(s), t.decode()) for i, s, t in zip(ids.numpy(), scores, texts)
            if i], known
  ranking = tf.saved_model.load(latest_version(serving, 'ranking'))
  found = retrieval.signatures['retrieve'](user_id=tf.constant([user]))
  items = found['item_ids'][0]
  scores = found['scores'][0].numpy()
  ranked = ranking.signatures['rank'](user_id=tf.fill(tf.shape(items), user), item_id=items)
  # The feed's order (engagement); a ranking model from before the engagement head: rating.
  ranked = (ranked['engagement_logit'] if 'engagement_logit' in ranked else ranked['rating']).numpy()
  texts = display(item_id=items)['text'].numpy()
  order = ranked.argsort()[::-1][:k]
  ids = items.numpy()
  return [(ids[i].decode(), float(ranked[i]), texts[i].decode()) for i in order], known


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--user', required=True, help='user id (any string)')
  parser.add_argument('--output-dir', default=DEFAULT_OUTPUT_DIR,
                      help='the output folder of a pipeline run')
  parser.add_argument('--k', type=int, default=10, help='how many items to print')
  args = parser.parse_args(argv)
  if args.k < 1:
    parser.error('--k must be at least 1')
  try:
    rows, known = recommend(args.output_dir, args.user, args.k)
  except NoModelError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  if not known:
    print(f'note: user {args.user!r} is unknown (in neither users.csv nor the training '
          'interactions): these are the most popular items', file=sys.stderr)
  print(f'Top {len(rows)} for user {args.user}:')
  print(f'{"#":>3}  {"item_id":<10} {"score":>6}  title')
  for n, (item, score, text) in enumerate(rows, 1):
    print(f'{n:>3}  {item:<10} {score:6.2f}  {text}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
