"""Command-line flags shared by the runners (local_runner.py, kubeflow_v2_runner.py).

The flags become the configuration dataclasses of core/configs.py and the Beam
arguments; the runners pass them to create_pipeline.
"""
import argparse
import dataclasses
import datetime
import json
import os
from typing import Any, Callable, Dict, List, Tuple

from core.configs import (SPLITS, FeedConfig, GateConfig, IngestConfig, RankingConfig,
                          RetrievalConfig, TransformConfig)

BEAM_RUNNERS = ('direct', 'dataflow', 'flink', 'spark')

# Below this input size the DirectRunner's worker processes (each imports TensorFlow) cost
# more than they save.
IN_MEMORY_BELOW_BYTES = 64 << 20


def add_model_flags(parser: argparse.ArgumentParser) -> None:
  """Hyper-parameters and gates (defaults: the configuration dataclasses)."""
  r, k, g, i = RetrievalConfig(), RankingConfig(), GateConfig(), IngestConfig()
  group = parser.add_argument_group('models')
  group.add_argument('--epochs', type=int, default=None,
                     help='epochs of both trainers (overrides the two flags below)')
  group.add_argument('--retrieval-epochs', type=int, default=r.epochs)
  group.add_argument('--ranking-epochs', type=int, default=k.epochs,
                     help='upper bound; early stopping usually ends sooner')
  group.add_argument('--embedding-dim', type=int, default=r.embedding_dim,
                     help='retrieval embedding size')
  group.add_argument('--temperature', type=float, default=r.temperature,
                     help='retrieval softmax temperature')
  group.add_argument('--retrieval-batch-size', type=int, default=r.batch_size)
  group.add_argument('--retrieval-learning-rate', type=float, default=r.learning_rate)
  group.add_argument('--retrieval-ensemble', type=int, default=r.ensemble,
                     help='pairs of retrieval towers trained side by side, scores averaged')
  group.add_argument('--ranking-batch-size', type=int, default=k.batch_size)
  group.add_argument('--ranking-learning-rate', type=float, default=k.learning_rate)
  group.add_argument('--index', choices=['brute_force', 'scann'], default=r.index,
                     help='retrieval index; scann needs ScaNN ops wherever the model is served')
  group.add_argument('--segments', type=int, default=0,
                     help='number of user segments (0: chosen by the silhouette score)')
  for cls, example, what in (
      (RetrievalConfig, '{"embedding_l2": 50, "mask_seen": true}', 'wins over the flags above'),
      (RankingConfig, '{"engagement_weight": 2}', 'wins over the flags above'),
      (TransformConfig, '{"numeric_buckets": 20}', 'vocabulary sizes, numeric buckets'),
      (FeedConfig, '{"retrieval_weight": 10, "k": 20}', 'how the feed orders and cuts'),
  ):
    group.add_argument(f'--{_flag_name(cls)}-config', type=config_fields(cls), default={},
                       metavar='JSON', help=f'any {cls.__name__} field (core/configs.py), e.g. '
                       f"'{example}'; {what}")
  gates = parser.add_argument_group('gates (what a model must score to be pushed)')
  gates.add_argument('--min-top-100', type=float, default=g.min_top_100)
  gates.add_argument('--max-top-100-drop', type=float, default=g.max_top_100_drop,
                     help='largest allowed drop against the served retrieval model')
  gates.add_argument('--no-recent-popularity-gate', dest='beat_recent_popularity',
                     action='store_false', default=g.beat_recent_popularity,
                     help='bless a retrieval model even if it does not beat the '
                     'recent-popularity list on the eval rows')
  gates.add_argument('--max-rmse', type=float, default=g.max_rmse)
  gates.add_argument('--max-rmse-increase', type=float, default=g.max_rmse_increase,
                     help='largest allowed increase against the served ranking model')
  gates.add_argument('--eval-max-users', type=int, default=g.eval_max_users,
                     help='score at most this many eval users (a fixed random sample) in the '
                     'retrieval and feed evaluations (0: all)')
  data = parser.add_argument_group('ingestion')
  data.add_argument('--split', choices=SPLITS, default=i.split,
                    help='how one data folder is cut into train and eval: by time (the latest '
                    'interactions are eval; the default, a feed is served on the future) or '
                    'by a stable hash (a random hold-out); pre-split data is used as given')
  data.add_argument('--eval-percent', type=int, default=i.eval_percent,
                    help='share of interactions held out when the data is not pre-split')
  data.add_argument('--eval-from', type=unix_time, default=i.eval_from, metavar='DATE',
                    help='with --split time: every interaction at or after this date '
                    '(YYYY-MM-DD, UTC, or a Unix time) is eval, instead of --eval-percent')
  data.add_argument('--rating-min', type=float, default=i.rating_min)
  data.add_argument('--rating-max', type=float, default=i.rating_max)


def unix_time(text: str) -> int:
  """A date (YYYY-MM-DD, UTC) or a Unix time, as a Unix time."""
  if text.lstrip('-').isdigit():
    return int(text)
  try:
    day = datetime.datetime.strptime(text, '%Y-%m-%d')
  except ValueError:
    raise argparse.ArgumentTypeError(
        f'{text!r}: expected a date YYYY-MM-DD or a Unix time') from None
  return int(day.replace(tzinfo=datetime.timezone.utc).timestamp())


def add_retraining_flags(parser: argparse.ArgumentParser) -> None:
  """Flags of scheduled retraining (docs/operations.md: scheduled retraining)."""
  group = parser.add_argument_group('retraining')
  group.add_argument('--no-warm-start', action='store_true',
                     help='train from scratch instead of from the served models')
  group.add_argument('--refit', action=argparse.BooleanOptionalAction, default=True,
                     help='once judged, train each candidate further on train + eval and push '
                     'that refit (the newest rows learnt; the next run\'s gates compare with '
                     'the candidate kept inside it); --no-refit pushes the candidates '
                     '(docs/quality.md, "The refit")')
  group.add_argument('--schema', default=None, metavar='SCHEMA_PBTXT',
                     help='validate the data against this curated schema (ImportSchemaGen) '
                     'instead of one inferred from the data of this run')


def add_beam_flags(parser: argparse.ArgumentParser) -> None:
  group = parser.add_argument_group('beam')
  group.add_argument('--beam-runner', choices=BEAM_RUNNERS, default='direct')
  group.add_argument('--beam-mode', choices=['auto', 'multi_processing', 'in_memory'],
                     default='auto',
                     help='DirectRunner mode; multi_processing runs one worker per core; auto: '
                     'in_memory when the local input folder holds less than '
                     f'{IN_MEMORY_BELOW_BYTES >> 20} MB, else multi_processing')
  group.add_argument('--beam-workers', type=int, default=0,
                     help='DirectRunner workers in multi_processing mode (0: one per core)')
  group.add_argument('--beam-arg', action='append', default=[], metavar='ARG',
                     help='extra Beam pipeline argument, repeatable, e.g. '
                     '--beam-arg=--project=P (see docs/kubeflow.md for each runner)')


def config_fields(cls) -> Callable[[str], Dict[str, Any]]:
  """An argparse ``type``: a JSON object of ``cls``'s fields, each checked against the type of
  its default, so a misspelt field or a wrong type stops the run before any work."""
  defaults = cls()
  names = [f.name for f in dataclasses.fields(cls)]

  def parse(text: str) -> Dict[str, Any]:
    try:
      values = json.loads(text)
    except json.JSONDecodeError as e:
      raise argparse.ArgumentTypeError(f'not JSON ({e}): {text!r}') from e
    if not isinstance(values, dict):
      raise argparse.ArgumentTypeError(f'expected a JSON object such as {{"epochs": 5}}, '
                                       f'got {text!r}')
    out = {}
    for key, value in values.items():
      if key not in names:
        raise argparse.ArgumentTypeError(f'{cls.__name__} has no field {key!r}; its fields: '
                                         f'{", ".join(names)}')
      expected = type(getattr(defaults, key))
      if expected is tuple and isinstance(value, list):
        value = tuple(value)
      elif expected is float and type(value) is int:
        value = float(value)
      if type(value) is not expected:
        raise argparse.ArgumentTypeError(f'{cls.__name__}.{key} is {expected.__name__}, got '
                                         f'{value!r}')
      out[key] = value
    return out

  parse.__name__ = f'{cls.__name__} JSON'  # how argparse names the type in its errors
  return parse


def configs_from_args(args: argparse.Namespace) -> Tuple[RetrievalConfig, RankingConfig,
                                                         GateConfig, IngestConfig]:
  retrieval = RetrievalConfig(
      epochs=args.epochs or args.retrieval_epochs, embedding_dim=args.embedding_dim,
      temperature=args.temperature, batch_size=args.retrieval_batch_size,
      learning_rate=args.retrieval_learning_rate, ensemble=args.retrieval_ensemble,
      index=args.index)
  retrieval = dataclasses.replace(retrieval, **getattr(args, 'retrieval_config', {}))
  ranking = RankingConfig(epochs=args.epochs or args.ranking_epochs,
                          batch_size=args.ranking_batch_size,
                          learning_rate=args.ranking_learning_rate)
  ranking = dataclasses.replace(ranking, **getattr(args, 'ranking_config', {}))
  gates = GateConfig(min_top_100=args.min_top_100, max_top_100_drop=args.max_top_100_drop,
                     max_rmse=args.max_rmse, max_rmse_increase=args.max_rmse_increase,
                     eval_max_users=args.eval_max_users,
                     beat_recent_popularity=args.beat_recent_popularity)
  ingest = IngestConfig(split=args.split, eval_percent=args.eval_percent,
                        eval_from=args.eval_from, rating_min=args.rating_min,
                        rating_max=args.rating_max)
  return retrieval, ranking, gates, ingest


def _flag_name(cls) -> str:
  """RetrievalConfig -> 'retrieval': the --<name>-config flag of a config class."""
  return cls.__name__[:-len('Config')].lower()


def config_from_flag(args: argparse.Namespace, cls):
  """``cls`` with the fields its --<name>-config JSON flag sets."""
  return dataclasses.replace(cls(), **getattr(args, f'{_flag_name(cls)}_config', {}))


def _folder_bytes(path: str) -> int:
  return sum(os.path.getsize(os.path.join(root, name))
             for root, _, names in os.walk(path) for name in names)


def beam_mode(args: argparse.Namespace) -> str:
  """The DirectRunner mode, with 'auto' resolved from the size of a local --data-dir."""
  if args.beam_mode != 'auto':
    return args.beam_mode
  data_dir = getattr(args, 'data_dir', None)
  if data_dir and os.path.isdir(data_dir) and _folder_bytes(data_dir) < IN_MEMORY_BELOW_BYTES:
    return 'in_memory'
  return 'multi_processing'


def beam_pipeline_args(args: argparse.Namespace) -> List[str]:
  """Beam arguments of the chosen runner; the user adds project, region etc. with --beam-arg."""
  if args.beam_runner == 'direct':
    if beam_mode(args) == 'in_memory':
      base = ['--direct_running_mode=in_memory', '--direct_num_workers=1']
    else:
      workers = getattr(args, 'beam_workers', 0) or os.cpu_count() or 1
      base = ['--direct_running_mode=multi_processing', f'--direct_num_workers={workers}']
    return ['--runner=DirectRunner'] + base + list(args.beam_arg)
  runner = {'dataflow': 'DataflowRunner', 'flink': 'FlinkRunner',
            'spark': 'SparkRunner'}[args.beam_runner]
  return [f'--runner={runner}'] + list(args.beam_arg)
