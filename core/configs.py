"""Configuration of a pipeline run, as data.

The runners (local_runner.py, kubeflow_v2_runner.py) build these from their flags and hand
them to ``create_pipeline``; nothing here reads the environment.
"""
import dataclasses
from typing import Any, Dict, Optional, Tuple

PIPELINE_NAME = 'woonkly-recommender'


def config_from_dict(cls, values: Dict[str, Any]):
  """A config dataclass from its JSON form (custom_config turns tuples into lists)."""
  return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


@dataclasses.dataclass(frozen=True)
class RetrievalConfig:
  """Hyper-parameters of the two-tower retrieval model.

  docs/quality.md ("Why the defaults are what they are") has the measurements behind the
  defaults.
  """
  embedding_dim: int = 64
  hidden_units: Tuple[int, ...] = (128,)
  temperature: float = 0.2
  popularity_correction: bool = True
  # Exponent of the sampling probability in the correction (1: the full log Q correction).
  popularity_weight: float = 1.0
  batch_size: int = 2048
  epochs: int = 30
  learning_rate: float = 0.005
  # L2 of the dense layers' kernels.
  l2: float = 0.0
  # L2 of the id embedding tables. With lazy_embeddings it is embedding_l2 * |row|^2 averaged
  # over the batch, against a loss summed over the batch, hence the large value; without, it
  # applies to the whole table and wants a far smaller one.
  embedding_l2: float = 100.0
  # Embedding tables updated (lazy Adam, models/optimizers.py) and penalised on the rows a
  # batch looks up only, so a step costs the same at any catalogue size. False: Keras Adam,
  # which moves every row at every step, and embedding_l2 on the whole table.
  lazy_embeddings: bool = True
  # Probability of replacing an id by the out-of-vocabulary row during training, so that the
  # OOV row and the feature layers learn to serve users and items never seen in training.
  id_dropout: float = 0.05
  # Catalogue items sampled uniformly per batch as extra negatives (0: in-batch only), for
  # catalogues too large for batches to cover; they cost training time.
  extra_negatives: int = 0
  # Mask every train pair of a user out of the user's in-batch negatives, not only the
  # positive's own item id. Costs a searchsorted over the train pairs at every step.
  mask_seen: bool = False
  # Polyak averaging (models/averaging.py): the exported weights are the moving average of
  # the weights over training with this momentum (0: the last step's weights).
  weight_averaging: float = 0.998
  # Pairs of towers trained side by side from different initial weights, their scores
  # averaged (a seed ensemble in one model: ``ensemble`` times the training arithmetic).
  ensemble: int = 1
  # Popularity lately at serving time (RetrievalServing): a known user's scores move by
  # recency_weight x (log P_recent - log P) per item, where P_recent counts the window of the
  # recent-popularity list; a new user's popularity term is new_user_popularity_weight x
  # log P_recent (with popularity_correction; the temperature would just undo it).
  recency_weight: float = 0.2
  new_user_popularity_weight: float = 0.5
  # And every user's scores get recent_popularity_weight x log P_recent on top (chosen on
  # the validation run, docs/quality.md).
  recent_popularity_weight: float = 0.3
  # What a user did since training, given at request time (the embed_users_with_history
  # signature, the feed's recommend_with_history): a query from their latest history_length
  # items, times history_weight, is added to the user's tower. history_encoder 'gru': a GRU
  # over the items' tower vectors trained to point at the next item (models/sequence.py;
  # history_units wide, history_epochs over at most history_max_examples pairs); 'mean':
  # their mean vector, untrained.
  history_weight: float = 1.0
  history_length: int = 10
  history_encoder: str = 'gru'
  history_units: int = 64
  history_epochs: int = 8
  history_max_examples: int = 200_000
  top_k: int = 100
  # Seed of the initial weights, the batch order and the sampled negatives: vary it to see
  # a change's effect beside run-to-run noise (benchmarks/sweep.py).
  seed: int = 42
  # Users returned by the `audience` signature (ad targeting), at most.
  audience_k: int = 1000
  index: str = 'brute_force'  # or 'scann'

  def to_dict(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class RankingConfig:
  """Hyper-parameters of the ranking model: rating and engagement heads on shared encoders.

  docs/quality.md ("Why the defaults are what they are") has the measurements behind the
  defaults.
  """
  embedding_dim: int = 32
  hidden_units: Tuple[int, ...] = (64,)
  batch_size: int = 1024
  epochs: int = 40
  learning_rate: float = 0.003
  # L2 of the dense layers' kernels.
  l2: float = 2e-4
  # L2 of the id embedding and bias tables, on the rows a batch looks up (lazy_embeddings,
  # l2 * |row|^2 averaged over the batch) or on the whole table at every step.
  embedding_l2: float = 0.3
  # As in RetrievalConfig: lazy Adam, a step's cost independent of the catalogue.
  lazy_embeddings: bool = True
  id_dropout: float = 0.05
  # Share of the training rows held out for early stopping (never the eval split).
  validation_share: float = 0.05
  patience: int = 3
  # Engagement head: observed (user, item) pairs against items sampled for the same user.
  # Negatives per positive, and the share of them drawn by train popularity (the rest
  # uniformly from the catalogue). Popularity-drawn negatives make the head discount
  # popular items, which costs hit rate.
  engagement_negatives: int = 32
  # Distinct items sampled (and encoded) per batch, from which each positive's negatives are
  # dealt (0: every negative sampled and encoded on its own, batch x engagement_negatives).
  negative_pool: int = 4096
  negative_popularity_share: float = 0.0
  # The loss is rating_weight * MSE + engagement_weight * the engagement loss (below; the
  # rating term only when the interactions have a rating column). More weight on engagement
  # regularises the encoders the rating head shares.
  rating_weight: float = 1.0
  engagement_weight: float = 3.0
  # 'binary': cross-entropy of each pair; 'softmax': each positive against its own sampled
  # negatives (plus calibration_weight x the binary term).
  engagement_loss: str = 'softmax'
  # With 'softmax', weight of the binary cross-entropy added to it. The softmax fixes the
  # order of a user's logits, not their level, which can drift until `engagement` (the
  # sigmoid) is 1.0 for every pair and its AUC says nothing (benchmarks/SCALE.md, 10M). The
  # binary term anchors the level.
  calibration_weight: float = 0.1
  # The served rating is (1 - baseline_weight) x the rating head + baseline_weight x a model of
  # another family fitted on the same rows: the mean plus user and item biases shrunk by
  # these many ratings (models/rating_baseline.py). 0 serves the rating head alone.
  baseline_weight: float = 0.5
  baseline_user_shrinkage: float = 50.0
  baseline_item_shrinkage: float = 0.5
  seed: int = 42  # as in RetrievalConfig

  def to_dict(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class FeedConfig:
  """How the feed model orders the unseen retrieved candidates (FeedModelBuilder parameters)."""
  k: int = 10
  candidates: int = 100
  # 'engagement': engagement logit + retrieval_weight * retrieval score (the dot product of
  # the retrieval model's user and item embeddings); 'rating': predicted rating.
  order_by: str = 'engagement'
  # 5 would add the retrieval score's log-softmax at its training temperature (0.2).
  retrieval_weight: float = 20.0

  def to_dict(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class GateConfig:
  """What a model must score to be blessed and pushed."""
  # Retrieval: minimum top_100 share on eval; and, once a blessed model exists, the largest
  # allowed drop against it.
  min_top_100: float = 0.1
  max_top_100_drop: float = 0.02
  # Retrieval: top_100_unseen must beat the recent-popularity list's on the same eval rows.
  beat_recent_popularity: bool = True
  # Ranking: maximum RMSE, and the largest allowed increase against the blessed model.
  max_rmse: float = 1.2
  max_rmse_increase: float = 0.02
  # Ranking without ratings (implicit feedback): minimum engagement AUC against sampled
  # negatives, and the largest allowed drop against the blessed model.
  min_auc: float = 0.6
  max_auc_drop: float = 0.01
  engagement_eval_negatives: int = 4
  # Eval users scored by the retrieval and feed evaluations (0 = all); bounds their cost at
  # scale (the feed evaluation costs eval users x catalogue).
  eval_max_users: int = 0


@dataclasses.dataclass(frozen=True)
class TransformConfig:
  """What preprocessing_fn (tf.Transform) computes from the data."""
  # At most this many values per categorical vocabulary (the rest share the OOV row).
  vocab_top_k: int = 100_000
  # Quantile buckets of each numeric feature, embedded beside its z-score.
  numeric_buckets: int = 10

  def to_dict(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class IngestConfig:
  """Rules of the ingestion step.

  One data folder is split by time by default: a feed is trained on the past and served on
  the future, so the eval split is the latest ``eval_percent`` of the interactions (or every
  interaction at or after ``eval_from``, a Unix time, when it is set) and train is everything
  before. ``split='hash'`` holds out a stable pseudo-random share instead (a regression guard,
  not the question production asks). Pre-split data (train/ + eval/) is used as given.
  """
  split: str = 'time'
  eval_percent: int = 20
  eval_from: int = 0
  rating_min: float = 1.0
  rating_max: float = 5.0
  max_field_chars: int = 4096

  def __post_init__(self):
    if self.split not in SPLITS:
      raise ValueError(f'split {self.split!r}: expected one of {list(SPLITS)}')
    if not 0 < self.eval_percent < 100:
      raise ValueError(f'eval_percent {self.eval_percent}: expected a share in (0, 100)')

  def to_dict(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)


# How one data folder is cut into train and eval (IngestConfig.split).
SPLITS = ('time', 'hash')


@dataclasses.dataclass(frozen=True)
class InputLayout:
  """Where the tables are, as patterns relative to the data directory.

  ``train`` and ``eval`` are the same pattern when the interactions are split by hash.
  Patterns with ``{SPAN}`` read span ``span`` (None: the latest span at run time).
  """
  train: str
  eval: str
  items: str
  users: Optional[str]
  span: Optional[int] = None
  # No rating column: the ranking stage learns and is evaluated on engagement only.
  implicit: bool = False

  @property
  def pre_split(self) -> bool:
    return self.train != self.eval

  @property
  def spans(self) -> bool:
    return '{SPAN}' in self.train

  @property
  def shared_tables(self) -> bool:
    """Whether items or users are read from beside the span folders."""
    return self.spans and any(t and '{SPAN}' not in t for t in (self.items, self.users))
