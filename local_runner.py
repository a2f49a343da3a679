"""Runs the recommender pipeline on this machine with TFX's LocalDagRunner and Beam (or, with
--component-processes, each component in a process of its own: pipeline/component_processes.py).

    python local_runner.py [--data-dir DIR] [--output-dir OUT] [--epochs N] ...

OUT receives the pipeline root, the ML Metadata store, serving/ (the pushed models) and
metrics.json; the run ends with a short summary and exits non-zero when it failed.

Everything stays on this machine: the data, the output and the schema are local paths, and
Beam runs here (DirectRunner). URLs (gs://, s3://...) and remote Beam runners are refused
before anything is created; kubeflow_v2_runner.py runs the same pipeline on object stores and
Dataflow/Flink/Spark.
"""
import argparse
import logging
import os
import re
import sys
import time
import warnings

# Before TensorFlow is first imported: TFRS needs Keras 2, and TF's C++ log is noise here.
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA_DIR = os.path.join(HERE, 'data', 'movielens-100k')
DEFAULT_OUTPUT_DIR = os.path.join(HERE, 'out')
URL = re.compile(r'^[A-Za-z][A-Za-z0-9+.-]*://')


def refusal(args: argparse.Namespace):
  """Why this runner cannot run these arguments (one line), or None.

  The local runner keeps the pipeline root and the metadata on this machine's disk and turns
  paths into absolute local paths: a gs://bucket/dir would become ./gs:/bucket/dir, and remote
  Beam workers (Dataflow, Flink, Spark) would write the artifacts to their own disks.
  """
  for flag, value in (('--data-dir', args.data_dir), ('--output-dir', args.output_dir),
                      ('--schema', args.schema)):
    if value and URL.match(value):
      return (f'{flag} {value}: the local runner needs local folders and files; use '
              'kubeflow_v2_runner.py for object stores (gs://, s3://...)')
  if args.beam_runner != 'direct':
    return (f'--beam-runner {args.beam_runner}: the local runner keeps its artifacts on this '
            f'machine\'s disk, which {args.beam_runner} workers cannot see; use '
            'kubeflow_v2_runner.py for Dataflow, Flink or Spark')
  return None


def parse_args(argv=None) -> argparse.Namespace:
  from pipeline import cli
  parser = argparse.ArgumentParser(
      description='Run the Woonkly two-stage recommender pipeline locally.',
      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  parser.add_argument('--data-dir', default=DEFAULT_DATA_DIR,
                      help='input folder (see docs/data.md: layout)')
  parser.add_argument('--output-dir', default=DEFAULT_OUTPUT_DIR,
                      help='pipeline root, metadata, serving/ and metrics.json go here')
  parser.add_argument('--span', type=int, default=None,
                      help='with DIR/span-<N>/ folders: the span to train on (default: latest)')
  parser.add_argument('--if-new-data', action='store_true',
                      help='do nothing when a finished run already trained on exactly this '
                      'span (same files); for schedules')
  parser.add_argument('--no-cache', action='store_true',
                      help='re-run every component even if its inputs did not change')
  parser.add_argument('--component-processes', action='store_true',
                      help='run each component in a process of its own, as Kubeflow runs each '
                      'in a pod, so that its memory goes back to the system when it ends '
                      '(the runner process otherwise keeps what the trainers and evaluators '
                      'allocated); costs a Python + TensorFlow start per component, 5-10 s '
                      'each: for large data, not MovieLens-100K')
  cli.add_model_flags(parser)
  cli.add_retraining_flags(parser)
  cli.add_beam_flags(parser)
  for action in parser._actions:  # pylint: disable=protected-access; the shared flag's help
    if '--beam-runner' in action.option_strings:
      action.help = ('only direct here; dataflow, flink and spark through '
                     'kubeflow_v2_runner.py')
  return parser.parse_args(argv)


# Interpreter options of a component's own process: the warnings main() silences in this one.
QUIET_WARNINGS = ('-W', 'ignore::FutureWarning', '-W', 'ignore::DeprecationWarning')


def runner(args: argparse.Namespace, paths):
  """TFX's LocalDagRunner, or with --component-processes one process per component, which
  logs to this run's log and sets up Beam as this process does (local_beam_dependencies)."""
  if not args.component_processes:
    from tfx import v1 as tfx
    return tfx.orchestration.LocalDagRunner()
  from pipeline.component_processes import ComponentProcessRunner
  return ComponentProcessRunner(
      log_path=paths.log_path, local_beam_dependencies=True, python_options=QUIET_WARNINGS,
      env={name: os.environ[name] for name in ('TF_USE_LEGACY_KERAS', 'TF_CPP_MIN_LOG_LEVEL')})


def main(argv=None) -> int:
  args = parse_args(argv)
  refused = refusal(args)
  if refused:
    print(f'error: {refused}', file=sys.stderr)
    return 2
  warnings.filterwarnings('ignore', category=FutureWarning)
  warnings.filterwarnings('ignore', category=DeprecationWarning)
  from pipeline import cli, report, run_summary
  from core.configs import PIPELINE_NAME, FeedConfig, TransformConfig
  from pipeline.data_layout import LayoutError, resolve_layout
  from pipeline.component_processes import fail_unfinished_executions, local_beam_dependencies
  from pipeline.pipeline import create_pipeline
  from tfx import v1 as tfx

  try:
    layout = resolve_layout(args.data_dir, span=args.span)
    if args.schema and not os.path.isfile(args.schema):
      raise LayoutError(f'--schema {args.schema}: no such file')
  except LayoutError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  retrieval, ranking, gates, ingest = cli.configs_from_args(args)
  out = os.path.abspath(args.output_dir)
  paths = run_summary.OutputPaths(out)
  os.makedirs(out, exist_ok=True)
  metadata_config = tfx.orchestration.metadata.sqlite_metadata_connection_config(
      paths.metadata_path)
  pipeline = create_pipeline(
      pipeline_name=PIPELINE_NAME,
      pipeline_root=paths.pipeline_root,
      data_dir=os.path.abspath(args.data_dir),
      layout=layout,
      serving_dir=paths.serving_dir,
      retrieval=retrieval, ranking=ranking, gates=gates, ingest=ingest,
      feed=cli.config_from_flag(args, FeedConfig),
      transform=cli.config_from_flag(args, TransformConfig),
      metadata_connection_config=metadata_config,
      beam_pipeline_args=cli.beam_pipeline_args(args),
      enable_cache=not args.no_cache,
      num_segments=args.segments,
      warm_start=not args.no_warm_start,
      refit=args.refit,
      schema_path=os.path.abspath(args.schema) if args.schema else None)
  lock = run_summary.acquire_run_lock(out)
  if lock is None:
    print(f'error: another run is using {out}; wait for it to finish or choose another '
          '--output-dir', file=sys.stderr)
    return 3
  if args.if_new_data:
    done_by = run_summary.already_trained(paths.metadata_path, os.path.abspath(args.data_dir),
                                          layout)
    if done_by:
      what = f'span {layout.span}' if layout.span is not None else args.data_dir
      print(f'Nothing new: {what} was already trained on by run {done_by}; serving/ is as '
            'that run left it')
      lock.close()
      return 0
  if os.path.exists(paths.metadata_path):
    # Holding the lock, this is the only run on the store: what is still running there was
    # left by a run that was killed.
    fail_unfinished_executions(metadata_config, 'abandoned: the run that started it was '
                               'stopped before it finished')
  started = time.time()
  error = None
  span = f' (span {layout.span})' if layout.span is not None else ''
  print(f'Running {PIPELINE_NAME} on {args.data_dir}{span} -> {out}')
  with run_summary.progress_printer(paths.log_path, paths.metadata_path):
    try:
      with local_beam_dependencies():
        runner(args, paths).run(pipeline)
    except Exception as e:  # pylint: disable=broad-except; reported with its component
      logging.exception('The pipeline run failed')
      error = e
  summary = run_summary.summarize(paths, started=started, error=error, span=layout.span)
  print(run_summary.format_summary(summary, paths))
  try:
    print(f'  report: {report.build_report(out)}')
  except Exception:  # pylint: disable=broad-except; the run's result stands without it
    logging.exception('Could not build the report')
    print('  report: not built (see run.log)')
  lock.close()
  return 0 if error is None else 1


if __name__ == '__main__':
  code = main()
  sys.stdout.flush()
  sys.stderr.flush()
  # Skip interpreter teardown: TensorFlow's function finalizers print spurious
  # "Exception ignored" tracebacks at shutdown. Everything was written and closed above.
  os._exit(code)
