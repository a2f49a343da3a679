"""The catalogue index of the retrieval and feed exports: exact (BruteForce) or ScaNN.

One place decides ScaNN's partitioning, so the trainer's export, the feed model and the serving
benchmark search the same way. ScaNN splits the catalogue into about sqrt(N) leaves, scores
the query against the centres, searches the nearest ``search_share`` of the leaves with
quantised (asymmetric-hashing) scores and rescores the best ``reorder`` exactly. Searching
more leaves and reordering more candidates buys recall with latency (benchmarks/SERVING.md
has the trade-off at 1M items).
"""
import math

import tensorflow_recommenders as tfrs

KINDS = ('brute_force', 'scann')
# The default row of benchmarks/SERVING.md's ScaNN table: the highest recall@10 against
# exact search measured at 1M items, also for vectors uniform on the sphere (the worst case
# for a partitioned index), for little more latency than cheaper settings.
SCANN_SEARCH_SHARE = 0.2
SCANN_REORDER = 2000


def scann_leaves(num_items: int, search_share: float = SCANN_SEARCH_SHARE):
  """(leaves, leaves searched) for a catalogue of ``num_items``."""
  leaves = max(1, int(math.sqrt(num_items)))
  return leaves, min(leaves, max(1, int(math.ceil(leaves * search_share))))


def make_index(kind: str, k: int, num_items: int, search_share: float = SCANN_SEARCH_SHARE,
               reorder: int = SCANN_REORDER):
  """An unbuilt TFRS top-k layer returning ``k`` results; call ``.index(...)`` on it."""
  if kind == 'brute_force':
    return tfrs.layers.factorized_top_k.BruteForce(k=k)
  if kind != 'scann':
    raise ValueError(f'unknown index {kind!r}; expected one of {KINDS}')
  if not 0 < search_share <= 1:
    raise ValueError(f'search_share must be in (0, 1], got {search_share}')
  leaves, searched = scann_leaves(num_items, search_share)
  return tfrs.layers.factorized_top_k.ScaNN(
      k=k, num_leaves=leaves, num_leaves_to_search=searched,
      num_reordering_candidates=max(int(reorder), k))
