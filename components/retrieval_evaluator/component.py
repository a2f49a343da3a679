"""RetrievalEvaluator component (TFMA cannot evaluate retrieval: TFRS issue #657).

Inputs: the ExampleGen output (eval, train and items splits), the candidate retrieval model
and, optionally, the baseline: the retrieval model production serves (a ServedModel artifact,
empty while nothing is served). Outputs: an evaluation artifact (metrics.json) and a
ModelBlessing in TFX's convention, which the Pusher honours.
"""
import json
from typing import Optional, Sequence

from tfx import types
from tfx.dsl.components.base import base_component
from tfx.dsl.components.base import executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter
from tfx.types.component_spec import ExecutionParameter

from components.retrieval_evaluator import executor


class RetrievalEvaluatorSpec(types.ComponentSpec):
  PARAMETERS = {
      'top_ks': ExecutionParameter(type=str),  # JSON list of ints
      'min_top_100': ExecutionParameter(type=float),
      'max_top_100_drop': ExecutionParameter(type=float),
      'max_users': ExecutionParameter(type=int),
      'beat_recent_popularity': ExecutionParameter(type=int),  # 0 or 1
  }
  INPUTS = {
      'examples': ChannelParameter(type=standard_artifacts.Examples),
      'model': ChannelParameter(type=standard_artifacts.Model),
      'baseline_model': ChannelParameter(type=standard_artifacts.Model, optional=True),
  }
  OUTPUTS = {
      'evaluation': ChannelParameter(type=standard_artifacts.ModelEvaluation),
      'blessing': ChannelParameter(type=standard_artifacts.ModelBlessing),
  }


class RetrievalEvaluator(base_component.BaseComponent):
  """Scores every eval interaction against the whole catalogue and blesses or not."""

  SPEC_CLASS = RetrievalEvaluatorSpec
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

  def __init__(self, examples: types.BaseChannel, model: types.BaseChannel,
               baseline_model: Optional[types.BaseChannel] = None,
               top_ks: Sequence[int] = (10, 50, 100), min_top_100: float = 0.0,
               max_top_100_drop: float = 0.02, max_users: int = 0,
               beat_recent_popularity: bool = True):
    spec = RetrievalEvaluatorSpec(
        examples=examples, model=model, baseline_model=baseline_model,
        top_ks=json.dumps(list(top_ks)), min_top_100=float(min_top_100),
        max_top_100_drop=float(max_top_100_drop), max_users=int(max_users),
        beat_recent_popularity=int(beat_recent_popularity),
        evaluation=types.Channel(type=standard_artifacts.ModelEvaluation),
        blessing=types.Channel(type=standard_artifacts.ModelBlessing))
    super().__init__(spec=spec)
