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
  """Hyper-parameters of the two-tower retrieval model (QUALITY-NOTES.md has the search)."""
  embedding_dim: int = 64
  hidden_units: Tuple[int, ...] = (128,)
  temperature: float = 0.2
  popularity_correction: bool = True
  # Exponent of the sampling probability in the correction (1: the full log Q correction).
  # Seed-42 split, top_100 / top_100_unseen: 0.313 / 0.548 (0.5), 0.381 / 0.630 (1),
  # 0.398 / 0.619 (1.5).
  popularity_weight: float = 1.0
  batch_size: int = 2048
  epochs: int = 30
  learning_rate: float = 0.005
  # L2 of the dense layers' kernels, and of the id embedding tables (see lazy_embeddings:
  # embedding_l2 * |row|^2 averaged over the batch, against a loss summed over the batch, hence
  # the large value; with lazy_embeddings off it applies to the whole table and wants a far
  # smaller one). Seed-42 split, top_100_unseen / top_10_unseen: 0 0.640 / 0.170, 10
  # 0.641 / 0.171, 100 0.643 / 0.173, 300 0.642 / 0.174, 1000 0.639 / 0.171, 3000 0.638 /
  # 0.170; seed 1: 0 0.641 / 0.170, 100 0.644 / 0.171 (benchmarks/sweep.py, docs/quality.md).
  l2: float = 0.0
  embedding_l2: float = 100.0
  # Embedding tables updated (lazy Adam, models/optimizers.py) and penalised on the rows a
  # batch looks up only, so a step costs the same at any catalogue size. False: Keras Adam,
  # which moves every row at every step (125 ms a step for a 1M-row table), and embedding_l2
  # on the whole table. Seed-42 split, top_100 / top_10_unseen / top_100_unseen: lazy 0.393 /
  # 0.170 / 0.640, dense 0.394 / 0.170 / 0.638 (one sweep).
  lazy_embeddings: bool = True
  # Probability of replacing an id by the out-of-vocabulary row during training, so that the
  # OOV row and the feature layers learn to serve users and items never seen in training.
  id_dropout: float = 0.05
  # Catalogue items sampled uniformly per batch as extra negatives (0: in-batch only), for
  # catalogues too large for batches to cover. Seed-42 split: 2048 gave top_100_unseen 0.633
  # against 0.628 in-batch only, for 35% more training time.
  extra_negatives: int = 0
  # Mask every train pair of a user out of the user's in-batch negatives, not only the
  # positive's own item id. Seed-42 split: top_10_unseen 0.173 against 0.165 (top_100_unseen
  # unchanged, 0.628), for 60% more training time (searchsorted over the train pairs).
  mask_seen: bool = False
  # Polyak averaging (models/averaging.py): the exported weights are the moving average of
  # the weights over training with this momentum (0: the last step's weights). Seed-42
  # split, top_100 / top_10_unseen / top_100_unseen: without, 0.378-0.381 / 0.166-0.169 /
  # 0.631-0.639 (three runs); with 0.998, 0.393-0.395 / 0.170-0.172 / 0.639-0.641 (two).
  weight_averaging: float = 0.998
  # Pairs of towers trained side by side from different initial weights, their scores
  # averaged (a seed ensemble in one model: ``ensemble`` times the training arithmetic).
  # Seed-42 split, top_100_unseen / top_10_unseen: 1 pair 0.637 / 0.170, 2 pairs 0.644 /
  # 0.173, 3 pairs 0.646 / 0.174 (docs/quality.md).
  ensemble: int = 1
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
  """Hyper-parameters of the ranking model: rating and engagement heads on shared encoders."""
  embedding_dim: int = 32
  hidden_units: Tuple[int, ...] = (64,)
  batch_size: int = 1024
  epochs: int = 40
  learning_rate: float = 0.003
  # L2 of the dense layers' kernels. Seed-42 split, with whole-table embedding L2 of the same
  # value and dense Adam, eval RMSE (clipped): 0.9032 (1e-4), 0.8994 (2e-4), 0.9022 (4e-4).
  l2: float = 2e-4
  # L2 of the id embedding and bias tables, on the rows a batch looks up (lazy_embeddings,
  # l2 * |row|^2 averaged over the batch) or on the whole table at every step. Seed-42 split,
  # lazy: RMSE 0.9063 (2e-4), 0.9060 (0.03), 0.9029 (0.1), 0.9008 (0.3), 0.9048 (0.6),
  # 0.9008 (1.0); dense Adam with 2e-4 on the whole table (before): 0.9015.
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
  # popular items, which costs hit rate (seed-42 split, implicit: 0.135 against 0.152 with
  # uniform negatives, engagement order alone).
  engagement_negatives: int = 32
  # Distinct items sampled (and encoded) per batch, from which each positive's negatives are
  # drawn (0: every negative sampled and encoded on its own, batch x engagement_negatives).
  # Seed-42 split: RMSE 0.9027 with 4096 against 0.9066 without (benchmarks/sweep.py). Time:
  # 18 s/epoch against 27 in that sweep, but in the pipeline the ranking Trainer took 208 s
  # (MovieLens, 9 epochs; 190 s before) and 383 s at 1M synthetic (407 s before): the item
  # encoder was not where its time went, the per-row input pipeline was (batched since:
  # 122 s and 254 s).
  negative_pool: int = 4096
  negative_popularity_share: float = 0.0
  # The loss is rating_weight * MSE + engagement_weight * binary cross-entropy (the rating
  # term only when the interactions have a rating column).
  # Seed-42 split (benchmarks/sweep.py --feed), RMSE at seeds 42 / 1 / 2 and feed hit rate
  # at 10: engagement_weight 1: 0.9091 / 0.9037 / 0.9062 (0.9020 and 0.9060 in other runs of
  # seeds 42 and 1), feed 0.1744 / 0.1749; 3: 0.8988 / 0.9004 / 0.8997, feed 0.1762 / 0.1759 /
  # 0.1746; 5: 0.9017, feed 0.1741; 10: 0.9014, feed 0.1736 (5 and 10 at seed 42). More weight on engagement regularises the
  # encoders the rating head shares.
  rating_weight: float = 1.0
  engagement_weight: float = 3.0
  # 'binary': cross-entropy of each pair; 'softmax': each positive against its own negatives
  # (seed-42 split, 8 uniform negatives: feed hit rate by engagement alone 0.143 against
  # 0.128 binary, and RMSE 0.908 against 0.911; 32 softmax negatives: 0.158, RMSE 0.905).
  engagement_loss: str = 'softmax'
  # With 'softmax', weight of the binary cross-entropy added to it. The softmax fixes the
  # order of a user's logits, not their level: at 10M interactions the level drifted to
  # logits of 13-39 on train pairs and random items alike, so `engagement` (the sigmoid) was
  # 1.0 everywhere and the thresholded AUC 0.500, though the logits ranked pairs above random
  # items with an AUC of 0.91 (benchmarks/SCALE.md). The binary term anchors the level.
  # Seed-42 split, make benchmark: RMSE 0.904, feed hit rate 0.1755 (0.908, 0.174 without).
  calibration_weight: float = 0.1
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
  # Seed-42 split, hit rate at 10: 0.158 (0), 0.172 (5, i.e. log-softmax of the retrieval
  # score at its training temperature 0.2), 0.173 (10), 0.174 (20); retrieval order alone
  # ~0.170, rating order 0.09.
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
class IngestConfig:
  """Rules of the ingestion step."""
  eval_percent: int = 20
  rating_min: float = 1.0
  rating_max: float = 5.0
  max_field_chars: int = 4096

  def to_dict(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)


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
