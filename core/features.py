"""The one home of column, feature and vocabulary names.

Ingestion, the transform, both trainers, the evaluators, serving and the tests import
these names; nothing else spells them.

Raw examples (written by the ExampleGen) carry:
  * the interaction columns USER_ID, ITEM_ID, RATING (optional), TIMESTAMP;
  * every column of items.csv as ``item__<column>`` and of users.csv as ``user__<column>``.
    The prefixes keep the two tables apart even when they share a column name, and let the
    transform discover the features from the data instead of a hard-coded list.
"""
from typing import Iterable, List

USER_ID = 'user_id'
ITEM_ID = 'item_id'
RATING = 'rating'
TIMESTAMP = 'timestamp'
# Label of the engagement evaluation set (implicit feedback): 1 for an interaction, 0 for a
# sampled catalogue item the user did not interact with.
ENGAGED = 'engaged'

# The interactions.csv columns: ids and timestamp are required, rating is optional
# (implicit feedback), anything else is reported and ignored.
REQUIRED_INTERACTION_COLUMNS = (USER_ID, ITEM_ID, TIMESTAMP)
OPTIONAL_INTERACTION_COLUMNS = (RATING,)

ITEM_PREFIX = 'item__'
USER_PREFIX = 'user__'

# The separator of multi-valued categorical columns ("Action|Comedy").
MULTI_VALUE_SEPARATOR = '|'

# Splits of the ExampleGen output. TRAIN/EVAL hold interactions joined with features;
# ITEMS is the whole candidate catalogue (one row per items.csv row); USERS one row per
# users.csv row, so that cold-start users can be served from their features.
TRAIN = 'train'
EVAL = 'eval'
ITEMS = 'items'
USERS = 'users'
SPLITS = (TRAIN, EVAL, ITEMS, USERS)

# Item columns used to show a recommendation to a person, in order of preference.
DISPLAY_COLUMNS = ('title', 'name', 'caption')


def item_feature(column: str) -> str:
  """Raw example key of an items.csv column."""
  return ITEM_PREFIX + column


def user_feature(column: str) -> str:
  """Raw example key of a users.csv column."""
  return USER_PREFIX + column


def is_item_feature(key: str) -> bool:
  return key.startswith(ITEM_PREFIX)


def is_user_feature(key: str) -> bool:
  return key.startswith(USER_PREFIX)


def transformed_name(key: str) -> str:
  """Name of the Transform output computed from raw key ``key``."""
  return key + '_xf'


def vocabulary_name(key: str) -> str:
  """Name of the tf.Transform vocabulary of raw key ``key`` (read with vocabulary_by_name)."""
  return key + '_vocab'


# The retrieval export's vectors (embed_users, embed_items) are the towers' output followed by
# this many prior columns: cold start, then recency (models/retrieval.py, RetrievalServing).
# Whoever wants the towers alone (segments, synthetic catalogues) drops them.
RETRIEVAL_PRIOR_COLUMNS = 2
# The retrieval export's query for a request made at a given time (Unix seconds, int64), and
# that input's name: the evaluator scores each eval interaction as requested at its timestamp.
RETRIEVAL_AT_SIGNATURE = 'embed_users_at'
REQUEST_TIME = 'request_time'

# The label and popularity outputs of the transform.
RATING_XF = transformed_name(RATING)
ITEM_COUNT_VOCAB = 'item_id_counts'


def feature_keys(keys: Iterable[str], prefix: str) -> List[str]:
  """The raw keys with ``prefix``, sorted so that models are built in a stable order."""
  return sorted(k for k in keys if k.startswith(prefix))
