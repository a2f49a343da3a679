"""Runs the recommender pipeline on this machine with TFX's LocalDagRunner and Beam.

    python local_runner.py [--data-dir DIR] [--output-dir OUT] [--epochs N] ...

OUT receives the pipeline root, the ML Metadata store, serving/ (the pushed models) and
metrics.json; the run ends with a short summary and exits non-zero when it failed.
"""
import argparse
import dataclasses
import logging
import os
import sys
import time
import warnings

# Before TensorFlow is first imported: TFRS needs Keras 2, and TF's C++ log is noise here.
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA_DIR = os.path.join(HERE, 'data', 'movielens-100k')
DEFAULT_OUTPUT_DIR = os.path.join(HERE, 'out')


def parse_args(argv=None) -> argparse.Namespace:
  from pipeline.configs import GateConfig, RankingConfig, RetrievalConfig
  r, k, g = RetrievalConfig(), RankingConfig(), GateConfig()
  parser = argparse.ArgumentParser(
      description='Run the Woonkly two-stage recommender pipeline locally.',
      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  parser.add_argument('--data-dir', default=DEFAULT_DATA_DIR,
                      help='input folder (see README: input layout)')
  parser.add_argument('--output-dir', default=DEFAULT_OUTPUT_DIR,
                      help='pipeline root, metadata, serving/ and metrics.json go here')
  parser.add_argument('--epochs', type=int, default=None,
                      help='epochs of both trainers (default: each stage its own)')
  parser.add_argument('--retrieval-epochs', type=int, default=r.epochs)
  parser.add_argument('--ranking-epochs', type=int, default=k.epochs)
  parser.add_argument('--embedding-dim', type=int, default=r.embedding_dim,
                      help='retrieval embedding size')
  parser.add_argument('--temperature', type=float, default=r.temperature)
  parser.add_argument('--retrieval-batch-size', type=int, default=r.batch_size)
  parser.add_argument('--retrieval-learning-rate', type=float, default=r.learning_rate)
  parser.add_argument('--ranking-batch-size', type=int, default=k.batch_size)
  parser.add_argument('--ranking-learning-rate', type=float, default=k.learning_rate)
  parser.add_argument('--index', choices=['brute_force', 'scann'], default=r.index)
  parser.add_argument('--min-top-100', type=float, default=g.min_top_100,
                      help='retrieval is pushed only if its eval top_100 is at least this')
  parser.add_argument('--max-rmse', type=float, default=g.max_rmse,
                      help='ranking is pushed only if its eval RMSE is at most this')
  parser.add_argument('--beam-runner', choices=['direct'], default='direct')
  parser.add_argument('--beam-mode', choices=['multi_processing', 'in_memory'],
                      default='multi_processing',
                      help='DirectRunner mode; multi_processing uses one worker per core')
  parser.add_argument('--no-cache', action='store_true',
                      help='re-run every component even if its inputs did not change')
  return parser.parse_args(argv)


def configs_from_args(args: argparse.Namespace):
  from pipeline.configs import GateConfig, RankingConfig, RetrievalConfig
  retrieval = RetrievalConfig(
      epochs=args.epochs or args.retrieval_epochs, embedding_dim=args.embedding_dim,
      temperature=args.temperature, batch_size=args.retrieval_batch_size,
      learning_rate=args.retrieval_learning_rate, index=args.index)
  ranking = RankingConfig(epochs=args.epochs or args.ranking_epochs,
                          batch_size=args.ranking_batch_size,
                          learning_rate=args.ranking_learning_rate)
  gates = dataclasses.replace(GateConfig(), min_top_100=args.min_top_100,
                              max_rmse=args.max_rmse)
  return retrieval, ranking, gates


def beam_args(args: argparse.Namespace):
  if args.beam_mode == 'in_memory':
    return ['--direct_running_mode=in_memory', '--direct_num_workers=1']
  return ['--direct_running_mode=multi_processing', f'--direct_num_workers={os.cpu_count() or 1}']


def main(argv=None) -> int:
  args = parse_args(argv)
  warnings.filterwarnings('ignore', category=FutureWarning)
  warnings.filterwarnings('ignore', category=DeprecationWarning)
  from pipeline import run_summary
  from pipeline.configs import PIPELINE_NAME
  from pipeline.data_layout import LayoutError, resolve_layout
  from pipeline.pipeline import create_pipeline
  from tfx import v1 as tfx

  try:
    layout = resolve_layout(args.data_dir)
  except LayoutError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  retrieval, ranking, gates = configs_from_args(args)
  out = os.path.abspath(args.output_dir)
  paths = run_summary.OutputPaths(out)
  os.makedirs(out, exist_ok=True)
  pipeline = create_pipeline(
      pipeline_name=PIPELINE_NAME,
      pipeline_root=paths.pipeline_root,
      data_dir=os.path.abspath(args.data_dir),
      layout=layout,
      serving_dir=paths.serving_dir,
      retrieval=retrieval, ranking=ranking, gates=gates,
      metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
          paths.metadata_path),
      beam_pipeline_args=beam_args(args),
      enable_cache=not args.no_cache)
  started = time.time()
  error = None
  print(f'Running {PIPELINE_NAME} on {args.data_dir} -> {out}')
  with run_summary.progress_printer(paths.log_path):
    try:
      tfx.orchestration.LocalDagRunner().run(pipeline)
    except Exception as e:  # pylint: disable=broad-except; reported with its component
      logging.exception('The pipeline run failed')
      error = e
  summary = run_summary.summarize(paths, started=started, error=error)
  print(run_summary.format_summary(summary, paths))
  return 0 if error is None else 1


if __name__ == '__main__':
  sys.exit(main())
