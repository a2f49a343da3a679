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
  batch_size: int = 2048
  epochs: int = 30
  learning_rate: float = 0.005
  l2: float = 0.0
  # Probability of replacing an id by the out-of-vocabulary row during training, so that the
  # OOV row and the feature layers learn to serve users and items never seen in training.
  id_dropout: float = 0.05
  top_k: int = 100
  # Users returned by the `audience` signature (ad targeting), at most.
  audience_k: int = 1000
  index: str = 'brute_force'  # or 'scann'

  def to_dict(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class RankingConfig:
  """Hyper-parameters of the rating model: biased factorisation plus an MLP over features."""
  embedding_dim: int = 32
  hidden_units: Tuple[int, ...] = (64,)
  batch_size: int = 1024
  epochs: int = 40
  learning_rate: float = 0.003
  l2: float = 1e-4
  id_dropout: float = 0.05
  # Share of the training rows held out for early stopping (never the eval split).
  validation_share: float = 0.05
  patience: int = 3

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
  """
  train: str
  eval: str
  items: str
  users: Optional[str]

  @property
  def pre_split(self) -> bool:
    return self.train != self.eval
