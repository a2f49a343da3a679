"""EngagementEvalExamples: the labelled eval set that TFMA's AUC needs for implicit feedback.

Input: the ExampleGen output (its eval and items splits). Output: an Examples artifact with
one ``eval`` split of (user_id, item_id, engaged) rows: every eval interaction (engaged = 1)
and ``negatives`` sampled catalogue items per interaction (engaged = 0). See executor.py.
"""
from tfx import types
from tfx.dsl.components.base import base_beam_component
from tfx.dsl.components.base import executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter
from tfx.types.component_spec import ExecutionParameter

from components.engagement_eval_examples import executor


class EngagementEvalExamplesSpec(types.ComponentSpec):
  PARAMETERS = {
      'negatives': ExecutionParameter(type=int),
      'seed': ExecutionParameter(type=int),
  }
  INPUTS = {'examples': ChannelParameter(type=standard_artifacts.Examples)}
  OUTPUTS = {'labelled_examples': ChannelParameter(type=standard_artifacts.Examples)}


class EngagementEvalExamples(base_beam_component.BaseBeamComponent):
  """Eval interactions and sampled non-interactions, labelled ``engaged``."""

  SPEC_CLASS = EngagementEvalExamplesSpec
  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

  def __init__(self, examples: types.BaseChannel, negatives: int = 4, seed: int = 42):
    super().__init__(spec=EngagementEvalExamplesSpec(
        examples=examples, negatives=int(negatives), seed=int(seed),
        labelled_examples=types.Channel(type=standard_artifacts.Examples)))
