"""create_pipeline: the one definition of the TFX pipeline, for every runner.

Ingest (InteractionExampleGen, one span) -> StatisticsGen -> SchemaGen (inferred, or a
curated schema through ImportSchemaGen) -> ExampleValidator -> AnomalyGate -> Transform ->
RetrievalTrainer / RankingTrainer (warm-started from the model of their kind that production
serves now: ServedRetrievalModel / ServedRankingModel, read from the serving directory) ->
RetrievalEvaluator / Evaluator (TFMA), each against the served model of its kind (the
candidate kept inside it when that is a refit) -> the refit (RefitTransform, RetrievalRefit /
RankingRefit: each candidate trained further on train + eval; off with refit=False) ->
ServingChecks -> Pushers, which push only blessed and checked models. The feed model is built
from the two stages (a candidate scored on eval; once both are blessed, the feed to push, which
leaves out everything known); the user segments come from the pushed retrieval model.

No environment reads and no runner branches here: the runners resolve paths and flags and
pass them in.
"""
import glob
import hashlib
import os
from typing import List, Optional

import tensorflow_model_analysis as tfma
from tfx import v1 as tfx
from tfx.dsl.components.base import executor_spec
from ml_metadata.proto import metadata_store_pb2

from components.anomaly_gate.component import AnomalyGate
from components.atomic_pusher import executor as atomic_pusher
from components.engagement_eval_examples.component import EngagementEvalExamples
from components.interaction_example_gen.component import InteractionExampleGen, input_config
from components.retrieval_evaluator.component import RetrievalEvaluator
from components.segmentation.component import UserSegmenter
from components.served_model import evaluator_executor as served_baseline_evaluator
from components.served_model.component import ServedModel
from components.feed_model.component import FeedModelBuilder
from components.serving_check.component import ServingCheck
from core import features as F
from core import served
from core.configs import (FeedConfig, GateConfig, IngestConfig, InputLayout, RankingConfig,
                          TransformConfig,
                              RetrievalConfig)

PREPROCESSING_FN = 'transforms.preprocessing.preprocessing_fn'
RETRIEVAL_RUN_FN = 'models.retrieval.run_fn'
RANKING_RUN_FN = 'models.ranking.run_fn'

# Component ids, used by the run summary and the tests as well.
EXAMPLE_GEN = 'InteractionExampleGen'
SCHEMA_GEN = 'SchemaGen'
RETRIEVAL_TRAINER = 'RetrievalTrainer'
RANKING_TRAINER = 'RankingTrainer'
REFIT_TRANSFORM = 'RefitTransform'
RETRIEVAL_REFIT = 'RetrievalRefit'
RANKING_REFIT = 'RankingRefit'
RETRIEVAL_EVALUATOR = 'RetrievalEvaluator'
SERVED_RETRIEVAL = 'ServedRetrievalModel'
SERVED_RANKING = 'ServedRankingModel'
RANKING_EVALUATOR = 'Evaluator'
RETRIEVAL_PUSHER = 'RetrievalPusher'
RANKING_PUSHER = 'RankingPusher'
USER_SEGMENTER = 'UserSegmenter'
RETRIEVAL_CHECK = 'RetrievalServingCheck'
RANKING_CHECK = 'RankingServingCheck'
FEED_BUILDER = 'FeedModelBuilder'
FEED_CHECK = 'FeedServingCheck'
FEED_PUSHER = 'FeedPusher'
ENGAGEMENT_EVAL_EXAMPLES = 'EngagementEvalExamples'
PUSHERS = (RETRIEVAL_PUSHER, RANKING_PUSHER, FEED_PUSHER)


def _gated_eval_config(label_key: str, metric: str, value_threshold: tfma.GenericValueThreshold,
                       direction, change: float) -> tfma.EvalConfig:
  """TFMA config of one metric over the whole eval set, with a value bound and a largest
  allowed change against the served model of the same kind (the baseline, once one is)."""
  return tfma.EvalConfig(
      model_specs=[tfma.ModelSpec(signature_name='serving_default', label_key=label_key)],
      slicing_specs=[tfma.SlicingSpec()],
      metrics_specs=[tfma.MetricsSpec(metrics=[
          tfma.MetricConfig(class_name='ExampleCount'),
          tfma.MetricConfig(
              class_name=metric,
              threshold=tfma.MetricThreshold(
                  value_threshold=value_threshold,
                  change_threshold=tfma.GenericChangeThreshold(
                      direction=direction, absolute={'value': change}))),
      ])])


def ranking_eval_config(gates: GateConfig) -> tfma.EvalConfig:
  """TFMA config: RMSE under a ceiling and not worse than the blessed model by a margin."""
  return _gated_eval_config(
      F.RATING, 'RootMeanSquaredError',
      tfma.GenericValueThreshold(upper_bound={'value': gates.max_rmse}),
      tfma.MetricDirection.LOWER_IS_BETTER, gates.max_rmse_increase)


def engagement_eval_config(gates: GateConfig) -> tfma.EvalConfig:
  """TFMA config without ratings: AUC of the engagement probability against sampled
  non-interactions, above a floor and not below the blessed model's by more than a margin."""
  return _gated_eval_config(
      F.ENGAGED, 'AUC', tfma.GenericValueThreshold(lower_bound={'value': gates.min_auc}),
      tfma.MetricDirection.HIGHER_IS_BETTER, -gates.max_auc_drop)


# The packages whose code each component runs (user code by dotted path, and what it
# imports): a change elsewhere (the report, the CLIs, this file) keeps their cached results.
# The Transform runs preprocessing_fn, not the ingestion beside it in transforms/.
TRANSFORM_CODE = ('transforms/__init__.py', 'transforms/preprocessing.py', 'core')
TRAINER_CODE = ('models', 'core')
COMPONENT_CODE = ('components', 'models', 'core')


def code_fingerprint(*packages: str, root: Optional[str] = None) -> str:
  """A hash of the user code the Transform and Trainers import by dotted path (each of
  ``packages`` a folder, or one .py file, relative to the repository).

  TFX fingerprints code passed as ``module_file``, not code referenced by dotted path; this
  value goes into those components' custom_config so that a code change invalidates their
  cached results.
  """
  digest = hashlib.sha256()
  root = root or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  for package in packages:
    paths = ([os.path.join(root, package)] if package.endswith('.py') else
             glob.glob(os.path.join(root, package, '**', '*.py'), recursive=True))
    for path in sorted(paths):
      digest.update(path[len(root):].encode())
      with open(path, 'rb') as f:
        digest.update(f.read())
  return digest.hexdigest()[:16]


def _served(serving_dir: str, kind: str, component_id: str) -> ServedModel:
  # The baseline of a kind is what production serves of that kind: the latest version the
  # Pusher published under serving_dir/<kind> (core/served.py). Unlike a "latest blessed
  # model" metadata query, it cannot pick the other kind's model and reads the same on every
  # orchestrator (docs/kubeflow.md, "Baselines").
  return ServedModel(served_dir=os.path.join(serving_dir, kind)).with_id(component_id)


def create_pipeline(
    *,
    pipeline_name: str,
    pipeline_root: str,
    data_dir: str,
    layout: InputLayout,
    serving_dir: str,
    retrieval: RetrievalConfig = RetrievalConfig(),
    ranking: RankingConfig = RankingConfig(),
    gates: GateConfig = GateConfig(),
    ingest: IngestConfig = IngestConfig(),
    metadata_connection_config: Optional[metadata_store_pb2.ConnectionConfig] = None,
    beam_pipeline_args: Optional[List[str]] = None,
    enable_cache: bool = True,
    num_segments: int = 0,
    feed: FeedConfig = FeedConfig(),
    transform: TransformConfig = TransformConfig(),
    warm_start: bool = True,
    schema_path: Optional[str] = None,
    vertex_training: Optional[dict] = None,
    refit: bool = True,
) -> tfx.dsl.Pipeline:
  """The recommender pipeline; see the module docstring for its stages.

  ``warm_start``: each Trainer starts from the served model of its kind.
  ``schema_path``: a curated schema (schema.pbtxt) that every run's data is validated
  against, instead of a schema inferred from this run's data.
  ``refit``: the models that are checked and pushed are the gated candidates trained on, warm
  started from them, on train + eval (see below); the gates still judge the candidates.
  """
  example_gen = InteractionExampleGen(
      input_base=data_dir,
      config=input_config(layout.train, layout.eval, layout.items, layout.users),
      options=ingest.to_dict(), span=layout.span).with_id(EXAMPLE_GEN)
  statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs['examples'])
  # The schema describes interaction rows; the items and users splits hold one side's
  # columns only (their values are validated where they are joined into interactions).
  interaction_splits_only = [F.ITEMS, F.USERS]
  if schema_path:
    # Production retraining validates each new span against the schema the team curated, so
    # that drift (a column's type, domain or presence) stops the run.
    schema_gen = tfx.components.ImportSchemaGen(schema_file=schema_path).with_id(SCHEMA_GEN)
  else:
    schema_gen = tfx.components.SchemaGen(
        statistics=statistics_gen.outputs['statistics'], infer_feature_shape=True,
        exclude_splits=interaction_splits_only).with_id(SCHEMA_GEN)
  example_validator = tfx.components.ExampleValidator(
      statistics=statistics_gen.outputs['statistics'], schema=schema_gen.outputs['schema'],
      exclude_splits=interaction_splits_only)
  anomaly_gate = AnomalyGate(anomalies=example_validator.outputs['anomalies'],
                             schema=schema_gen.outputs['schema'])
  schema = anomaly_gate.outputs['validated_schema']

  def transform_of(splits: List[str]) -> tfx.components.Transform:
    return tfx.components.Transform(
        examples=example_gen.outputs['examples'],
        schema=schema,
        preprocessing_fn=PREPROCESSING_FN,
        splits_config=tfx.proto.SplitsConfig(analyze=splits, transform=[]),
        materialize=False,
        # Nothing reads the statistics, schemas and anomalies of the data before and after
        # the transform that Transform computes by default (two more TFDV passes): the data
        # was validated before it (StatisticsGen, ExampleValidator, AnomalyGate). Nor its
        # analyzer cache, which no run is given back (analyzer_cache): without it the
        # analyzers run over the data in one pass and nothing is written for them.
        disable_statistics=True,
        disable_analyzer_cache=True,
        custom_config=dict(transform.to_dict(), code=code_fingerprint(*TRANSFORM_CODE)))

  # The candidates' vocabularies and item counts come from the train split only: an eval-only
  # item is out of vocabulary for them, and eval's popularity does not leak into their priors.
  transform_component = transform_of([F.TRAIN])

  trainer_code = code_fingerprint(*TRAINER_CODE)
  retrieval_baseline = _served(serving_dir, 'retrieval', SERVED_RETRIEVAL)
  ranking_baseline = _served(serving_dir, 'ranking', SERVED_RANKING)

  def trainer(run_fn: str, component_id: str, custom: dict, base_model,
              transform_graph=None, splits=(F.TRAIN,), refit_of=False) -> tfx.components.Trainer:
    # ``vertex_training`` ({'project', 'region', 'job_spec': a Vertex AI CustomJobSpec}, from
    # kubeflow_v2_runner.py): the Trainer runs as a Vertex AI Training custom job through
    # TFX's Vertex extension, on the job spec's machine; the run_fn and its custom_config
    # keys are the same.
    config = dict(custom, code=trainer_code)
    if refit_of:  # the run_fn keeps base_model, the candidate, inside its export
      config[served.REFIT_KEY] = True
    component = tfx.components.Trainer
    if vertex_training:
      from tfx.extensions.google_cloud_ai_platform import constants as vertex
      from tfx.extensions.google_cloud_ai_platform.trainer import executor as vertex_trainer
      component = tfx.extensions.google_cloud_ai_platform.Trainer
      config.update({
          vertex.ENABLE_VERTEX_KEY: True,
          vertex.VERTEX_REGION_KEY: vertex_training['region'],
          vertex_trainer.TRAINING_ARGS_KEY: {'project': vertex_training['project'],
                                             'job_spec': vertex_training['job_spec']},
      })
    return component(
        run_fn=run_fn,
        examples=example_gen.outputs['examples'],
        transform_graph=transform_graph or transform_component.outputs['transform_graph'],
        schema=schema,
        base_model=base_model,
        train_args=tfx.proto.TrainArgs(splits=list(splits)),
        eval_args=tfx.proto.EvalArgs(splits=[F.EVAL]),
        custom_config=config,
    ).with_id(component_id)

  # Warm start: the served model of the same kind (an empty one before the first push).
  retrieval_custom = {'retrieval': retrieval.to_dict()}
  ranking_custom = {'ranking': ranking.to_dict()}
  retrieval_trainer = trainer(RETRIEVAL_RUN_FN, RETRIEVAL_TRAINER, retrieval_custom,
                              retrieval_baseline.outputs['model'] if warm_start else None)
  ranking_trainer = trainer(RANKING_RUN_FN, RANKING_TRAINER, ranking_custom,
                            ranking_baseline.outputs['model'] if warm_start else None)

  retrieval_evaluator = RetrievalEvaluator(
      examples=example_gen.outputs['examples'],
      model=retrieval_trainer.outputs['model'],
      baseline_model=retrieval_baseline.outputs['gate_model'],
      min_top_100=gates.min_top_100,
      max_top_100_drop=gates.max_top_100_drop,
      max_users=gates.eval_max_users,
      beat_recent_popularity=gates.beat_recent_popularity).with_id(RETRIEVAL_EVALUATOR)
  ranking_eval_nodes = []
  if layout.implicit:
    # No ratings: the ranking stage is judged on engagement, with AUC against sampled
    # non-interactions (the eval split alone has only positives).
    engagement_examples = EngagementEvalExamples(
        examples=example_gen.outputs['examples'],
        negatives=gates.engagement_eval_negatives).with_id(ENGAGEMENT_EVAL_EXAMPLES)
    ranking_eval_nodes.append(engagement_examples)
    ranking_eval_input, ranking_config = (engagement_examples.outputs['labelled_examples'],
                                          engagement_eval_config(gates))
  else:
    ranking_eval_input, ranking_config = (example_gen.outputs['examples'],
                                          ranking_eval_config(gates))
  evaluator = tfx.components.Evaluator(
      examples=ranking_eval_input,
      model=ranking_trainer.outputs['model'],
      baseline_model=ranking_baseline.outputs['gate_model'],
      example_splits=[F.EVAL],
      eval_config=ranking_config).with_id(RANKING_EVALUATOR)
  # TFX's Evaluator, whose executor leaves out an empty baseline (nothing served yet); its
  # __init__ takes no custom executor spec.
  evaluator.executor_spec = executor_spec.BeamExecutorSpec(served_baseline_evaluator.Executor)

  # The refit: once the candidates are judged, the models to serve learn the eval window too,
  # the newest interactions, which a feed needs most. Each starts from its candidate (warm
  # start remaps its rows onto vocabularies over train + eval, where items new in the eval
  # window have rows of their own) and trains with the same settings on both splits. Their
  # figures on eval would be figures on rows they trained on, so nothing scores them there:
  # the candidates' blessings gate them, and the serving checks load and call them.
  refit_nodes = []
  pushed_retrieval = retrieval_trainer.outputs['model']
  pushed_ranking = ranking_trainer.outputs['model']
  if refit:
    refit_transform = transform_of([F.TRAIN, F.EVAL]).with_id(REFIT_TRANSFORM)
    refit_graph = refit_transform.outputs['transform_graph']
    retrieval_refit = trainer(RETRIEVAL_RUN_FN, RETRIEVAL_REFIT, retrieval_custom,
                              pushed_retrieval, refit_graph, (F.TRAIN, F.EVAL), refit_of=True)
    ranking_refit = trainer(RANKING_RUN_FN, RANKING_REFIT, ranking_custom, pushed_ranking,
                            refit_graph, (F.TRAIN, F.EVAL), refit_of=True)
    # After the gates, whatever they said (they do not read the refit): an unblessed refit is
    # not pushed. TFX's Cond could skip it, but would skip the checks and Pushers after it
    # too, which leave no record that nothing was pushed.
    retrieval_refit.add_upstream_node(retrieval_evaluator)
    ranking_refit.add_upstream_node(evaluator)
    refit_nodes = [refit_transform, retrieval_refit, ranking_refit]
    pushed_retrieval = retrieval_refit.outputs['model']
    pushed_ranking = ranking_refit.outputs['model']

  def pusher(model, blessing, kind: str, component_id: str) -> tfx.components.Pusher:
    # The atomic executor publishes a version all at once (see components/atomic_pusher).
    return tfx.components.Pusher(
        model=model,
        model_blessing=blessing,
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(
                base_directory=os.path.join(serving_dir, kind))),
        custom_executor_spec=executor_spec.ExecutorClassSpec(atomic_pusher.Executor),
    ).with_id(component_id)

  # Every candidate is loaded in a fresh process and called like a server would before it
  # may be pushed; the check's blessing also requires the evaluation's.
  code = code_fingerprint(*COMPONENT_CODE)

  def serving_check(model, blessing, kind: str, component_id: str, extra=None):
    return ServingCheck(model=model, examples=example_gen.outputs['examples'], kind=kind,
                        model_blessing=blessing, extra_blessing=extra,
                        load_scann=(kind in ('retrieval', 'feed') and retrieval.index == 'scann'),
                        code_version=code).with_id(component_id)

  retrieval_check = serving_check(pushed_retrieval, retrieval_evaluator.outputs['blessing'],
                                  'retrieval', RETRIEVAL_CHECK)
  ranking_check = serving_check(pushed_ranking, evaluator.outputs['blessing'], 'ranking',
                                RANKING_CHECK)
  retrieval_pusher = pusher(pushed_retrieval, retrieval_check.outputs['blessing'], 'retrieval',
                            RETRIEVAL_PUSHER)
  ranking_pusher = pusher(pushed_ranking, ranking_check.outputs['blessing'], 'ranking',
                          RANKING_PUSHER)

  # The feed: one model answering "what should this user see next?" (retrieve, drop what the
  # user has seen, rank, keep the best k); pushed only when both stages are blessed.
  feed_builder = FeedModelBuilder(
      retrieval_model=retrieval_trainer.outputs['model'],
      ranking_model=ranking_trainer.outputs['model'],
      pushed_retrieval_model=pushed_retrieval if refit else None,
      pushed_ranking_model=pushed_ranking if refit else None,
      examples=example_gen.outputs['examples'],
      retrieval_blessing=retrieval_evaluator.outputs['blessing'],
      ranking_blessing=evaluator.outputs['blessing'],
      k=feed.k, candidates=feed.candidates, index=retrieval.index,
      order_by=feed.order_by, retrieval_weight=feed.retrieval_weight,
      # The feed evaluation scores every eval user against the whole catalogue otherwise:
      # users x items, the fastest-growing cost of a run (benchmarks/SCALE.md).
      max_eval_users=gates.eval_max_users,
      served_dir=os.path.join(serving_dir, 'feed'),
      code_version=code).with_id(FEED_BUILDER)
  feed_check = serving_check(feed_builder.outputs['model'], feed_builder.outputs['blessing'],
                             'feed', FEED_CHECK)
  feed_pusher = pusher(feed_builder.outputs['model'], feed_check.outputs['blessing'], 'feed',
                       FEED_PUSHER)

  # Ad audiences and user segments come from the retrieval model's shared space; they are
  # published beside the models only once that model passed its serving check and was pushed,
  # and they name the pushed version.
  segmenter = UserSegmenter(
      examples=example_gen.outputs['examples'], model=pushed_retrieval,
      blessing=retrieval_check.outputs['blessing'],
      pushed_model=retrieval_pusher.outputs['pushed_model'], num_segments=num_segments,
      push_dir=os.path.join(serving_dir, 'segments')).with_id(USER_SEGMENTER)

  return tfx.dsl.Pipeline(
      pipeline_name=pipeline_name,
      pipeline_root=pipeline_root,
      components=[
          example_gen, statistics_gen, schema_gen, example_validator, anomaly_gate,
          transform_component, retrieval_baseline, ranking_baseline, retrieval_trainer,
          ranking_trainer, retrieval_evaluator, *ranking_eval_nodes, evaluator, *refit_nodes,
          retrieval_check, ranking_check, retrieval_pusher, ranking_pusher, feed_builder,
          feed_check, feed_pusher, segmenter,
      ],
      enable_cache=enable_cache,
      metadata_connection_config=metadata_connection_config,
      beam_pipeline_args=beam_pipeline_args or [],
  )
