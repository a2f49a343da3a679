"""FeedModelBuilder component: "what should this user see next?" as one servable model.

Inputs: the retrieval and ranking Trainers' models, the ExampleGen output (items: the
catalogue; users; train: what each user has and item popularity; eval: the feed metrics)
and, optionally, each model's blessing and the models to push when they are not the scored
ones (the pipeline's refit: trained on eval too, so never scored on it). Outputs:
``candidate`` (the feed that leaves out the train split only, which the metrics score on
eval), ``model`` (the feed to push: it leaves out
every split of the run and what the feed served under ``served_dir`` left out; written only
when every input blessing is blessed), both SavedModels at <uri>/Format-Serving like a
Trainer's; ``evaluation`` (feed_metrics.json) and ``blessing`` (blessed iff every input
blessing wired in is blessed). models/feed.py describes the model.
"""
from typing import Optional

from tfx import types
from tfx.dsl.components.base import base_component
from tfx.dsl.components.base import executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter
from tfx.types.component_spec import ExecutionParameter

from components.feed_model import executor
from models import feed


class FeedModelBuilderSpec(types.ComponentSpec):
  PARAMETERS = {
      'k': ExecutionParameter(type=int),
      'candidates': ExecutionParameter(type=int),
      'index': ExecutionParameter(type=str),  # 'brute_force' | 'scann'
      'margin_cap': ExecutionParameter(type=int),
      'max_eval_users': ExecutionParameter(type=int),
      'order_by': ExecutionParameter(type=str, optional=True),  # 'engagement' | 'rating'
      'retrieval_weight': ExecutionParameter(type=float, optional=True),
      # The pushed feeds' folder (SERVING/feed): the latest one's exclusions carry forward.
      'served_dir': ExecutionParameter(type=str, optional=True),
      # Not read by the executor: a hash of the code, so that a code change invalidates the
      # cached result (pass pipeline.code_fingerprint('components', 'models')).
      'code_version': ExecutionParameter(type=str, optional=True),
  }
  INPUTS = {
      'retrieval_model': ChannelParameter(type=standard_artifacts.Model),
      'ranking_model': ChannelParameter(type=standard_artifacts.Model),
      'examples': ChannelParameter(type=standard_artifacts.Examples),
      'retrieval_blessing': ChannelParameter(type=standard_artifacts.ModelBlessing,
                                             optional=True),
      'ranking_blessing': ChannelParameter(type=standard_artifacts.ModelBlessing,
                                           optional=True),
      'pushed_retrieval_model': ChannelParameter(type=standard_artifacts.Model, optional=True),
      'pushed_ranking_model': ChannelParameter(type=standard_artifacts.Model, optional=True),
  }
  OUTPUTS = {
      'model': ChannelParameter(type=standard_artifacts.Model),
      'candidate': ChannelParameter(type=standard_artifacts.Model),
      'evaluation': ChannelParameter(type=standard_artifacts.ModelEvaluation),
      'blessing': ChannelParameter(type=standard_artifacts.ModelBlessing),
  }


class FeedModelBuilder(base_component.BaseComponent):
  """Builds, exports and evaluates the feed model.

  k: items per feed. candidates: retrieved unseen items scored by the ranking model.
  index: 'brute_force' (plain TF ops, any TF Serving) or 'scann' (needs ScaNN's ops where it
    is served). margin_cap: at most this many extra items are retrieved to make up for the
    user's train items, which are removed. max_eval_users: score that many sampled eval users
    for the metrics (0 = all). order_by, retrieval_weight: how candidates are ordered
    (core.configs.FeedConfig, executor.py). code_version: any string that changes with
    the code (caching).
  """

  SPEC_CLASS = FeedModelBuilderSpec
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

  def __init__(self, retrieval_model: types.BaseChannel, ranking_model: types.BaseChannel,
               examples: types.BaseChannel,
               retrieval_blessing: Optional[types.BaseChannel] = None,
               ranking_blessing: Optional[types.BaseChannel] = None,
               pushed_retrieval_model: Optional[types.BaseChannel] = None,
               pushed_ranking_model: Optional[types.BaseChannel] = None,
               k: int = 10, candidates: int = 100, index: str = 'brute_force',
               margin_cap: int = 1000, max_eval_users: int = 0,
               order_by: str = feed.FEED_DEFAULTS.order_by,
               retrieval_weight: float = feed.FEED_DEFAULTS.retrieval_weight,
               served_dir: str = '', code_version: str = ''):
    if index not in feed.INDEXES:
      raise ValueError(f'unknown index {index!r}; expected one of {feed.INDEXES}')
    if order_by not in feed.ORDERS:
      raise ValueError(f'unknown order_by {order_by!r}; expected one of {feed.ORDERS}')
    if not 1 <= k <= candidates:
      raise ValueError(f'need 1 <= k ({k}) <= candidates ({candidates})')
    spec = FeedModelBuilderSpec(
        retrieval_model=retrieval_model, ranking_model=ranking_model, examples=examples,
        retrieval_blessing=retrieval_blessing, ranking_blessing=ranking_blessing,
        pushed_retrieval_model=pushed_retrieval_model, pushed_ranking_model=pushed_ranking_model,
        k=int(k), candidates=int(candidates), index=index, margin_cap=int(margin_cap),
        max_eval_users=int(max_eval_users), order_by=order_by,
        retrieval_weight=float(retrieval_weight), served_dir=served_dir,
        code_version=code_version,
        model=types.Channel(type=standard_artifacts.Model),
        candidate=types.Channel(type=standard_artifacts.Model),
        evaluation=types.Channel(type=standard_artifacts.ModelEvaluation),
        blessing=types.Channel(type=standard_artifacts.ModelBlessing))
    super().__init__(spec=spec)
