"""UserSegmenter component: segments users by the retrieval model, not by hand-drawn rules.

Inputs: the ExampleGen output (users, items and train splits), the retrieval model and,
optionally, its ModelBlessing (in the pipeline: its serving check's) and the retrieval
Pusher's PushedModel. Output: a UserSegments artifact holding segments.csv
(user_id,segment) and segments.json (K, silhouette scores, and per segment its size and the
item features, items and user features over-represented in it). When ``push_dir`` is set,
the model is blessed (or no blessing is wired in) and, if a PushedModel is wired in, it was
pushed, the two files are also published to ``push_dir/<version>/`` for the ad tools
(core/publish.py: renamed into place on a local disk, segments.json copied last on an object
store); segments.json then names the pushed retrieval version they came from.
"""
from typing import Optional

from tfx import types
from tfx.dsl.components.base import base_component
from tfx.dsl.components.base import executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter
from tfx.types.component_spec import ExecutionParameter

from components.segmentation import executor


class UserSegments(types.Artifact):
  """segments.csv and segments.json of one segmentation."""
  # KFP V2 wants a schema title of the form namespace.TypeName.
  TYPE_NAME = 'woonkly.UserSegments'


class UserSegmenterSpec(types.ComponentSpec):
  PARAMETERS = {
      'num_segments': ExecutionParameter(type=int),
      'push_dir': ExecutionParameter(type=str, optional=True),
      'seed': ExecutionParameter(type=int),
  }
  INPUTS = {
      'examples': ChannelParameter(type=standard_artifacts.Examples),
      'model': ChannelParameter(type=standard_artifacts.Model),
      'blessing': ChannelParameter(type=standard_artifacts.ModelBlessing, optional=True),
      'pushed_model': ChannelParameter(type=standard_artifacts.PushedModel, optional=True),
  }
  OUTPUTS = {
      'segments': ChannelParameter(type=UserSegments),
  }


class UserSegmenter(base_component.BaseComponent):
  """K-means over the model's user embeddings; each segment described by lift.

  num_segments: K, or 0 to choose K in 2..12 by the highest mean silhouette score
  (Euclidean on the L2-normalised embeddings, on at most 5,000 sampled users; ties go to
  the smaller K).
  push_dir: where to publish blessed segmentations ('' = do not publish).
  seed: for the sample and k-means (n_init=10).
  """

  SPEC_CLASS = UserSegmenterSpec
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

  def __init__(self, examples: types.BaseChannel, model: types.BaseChannel,
               blessing: Optional[types.BaseChannel] = None,
               pushed_model: Optional[types.BaseChannel] = None, num_segments: int = 0,
               push_dir: str = '', seed: int = 0):
    spec = UserSegmenterSpec(
        examples=examples, model=model, blessing=blessing, pushed_model=pushed_model,
        num_segments=int(num_segments), push_dir=push_dir or '', seed=int(seed),
        segments=types.Channel(type=UserSegments))
    super().__init__(spec=spec)
