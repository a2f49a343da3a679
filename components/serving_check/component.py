"""ServingCheck component: the last gate before a Pusher.

Inputs: the candidate ``model`` (a Trainer's or the FeedModelBuilder's), the ExampleGen
``examples`` (train, items and users splits: sample ids and the catalogue) and up to two
upstream ModelBlessings (``model_blessing``, ``extra_blessing``; TFX forbids an input named
like the ``blessing`` output), e.g. the evaluator's. Output: a
ModelBlessing for the Pusher, blessed only if the model loads in a fresh process, answers
every sample request within its contract and every upstream blessing wired in is blessed.
Its 'current_model_id' is the model's id, so LatestBlessedModelStrategy can use it too.
"""
from typing import Optional

from tfx import types
from tfx.dsl.components.base import base_component
from tfx.dsl.components.base import executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter
from tfx.types.component_spec import ExecutionParameter

from components.serving_check import executor


class ServingCheckSpec(types.ComponentSpec):
  PARAMETERS = {
      'kind': ExecutionParameter(type=str),  # 'retrieval' | 'ranking' | 'feed'
      'batch_size': ExecutionParameter(type=int),
      'timeout_seconds': ExecutionParameter(type=int),
      'load_scann': ExecutionParameter(type=int),  # 1: the model needs ScaNN's ops
      # Not read by the executor: a hash of the code, so that a code change invalidates the
      # cached result (the pipeline passes code_fingerprint(*COMPONENT_CODE)).
      'code_version': ExecutionParameter(type=str, optional=True),
  }
  INPUTS = {
      'model': ChannelParameter(type=standard_artifacts.Model),
      'examples': ChannelParameter(type=standard_artifacts.Examples),
      'model_blessing': ChannelParameter(type=standard_artifacts.ModelBlessing, optional=True),
      'extra_blessing': ChannelParameter(type=standard_artifacts.ModelBlessing, optional=True),
  }
  OUTPUTS = {
      'blessing': ChannelParameter(type=standard_artifacts.ModelBlessing),
  }


class ServingCheck(base_component.BaseComponent):
  """Probes a SavedModel like a server would (see executor.py for the checks).

  kind: which contract to check: 'retrieval' (retrieve, embed_users, embed_items), 'ranking'
    (rank, serving_default) or 'feed' (recommend, and no train item returned).
  batch_size: the size of the large request.
  timeout_seconds: the probe process is killed (and the model not blessed) after this.
  load_scann: register ScaNN's ops before loading (models exported with index='scann').
  code_version: any string that changes with the code (caching).
  """

  SPEC_CLASS = ServingCheckSpec
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

  def __init__(self, model: types.BaseChannel, examples: types.BaseChannel, kind: str,
               model_blessing: Optional[types.BaseChannel] = None,
               extra_blessing: Optional[types.BaseChannel] = None,
               batch_size: int = 256, timeout_seconds: int = 600, load_scann: bool = False,
               code_version: str = ''):
    if kind not in executor.KINDS:
      raise ValueError(f'unknown kind {kind!r}; expected one of {executor.KINDS}')
    spec = ServingCheckSpec(
        model=model, examples=examples, model_blessing=model_blessing,
        extra_blessing=extra_blessing, kind=kind, batch_size=int(batch_size),
        timeout_seconds=int(timeout_seconds), load_scann=int(bool(load_scann)),
        code_version=code_version,
        blessing=types.Channel(type=standard_artifacts.ModelBlessing))
    super().__init__(spec=spec)
