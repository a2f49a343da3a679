"""Compiles the recommender pipeline to a Vertex AI Pipelines (Kubeflow V2) job definition.

    python kubeflow_v2_runner.py --image IMAGE --pipeline-root gs://BUCKET/root \\
        --output pipeline.json [--data-dir gs://BUCKET/data] [--serving-dir DIR] \\
        [--pre-split] [--no-users] [--epochs N ...] [--beam-runner dataflow --beam-arg ...]

The pipeline is the same ``create_pipeline(...)`` the local runner runs; every component
runs in IMAGE (the repository's Dockerfile), which has the project installed, so user code
is referenced by dotted path. There is no metadata connection config: Vertex AI manages ML
Metadata. The compiler does not read the data directory: for a gs:// directory the layout
flags say which files are there; a local folder that exists is inspected (resolve_layout).

Submit the compiled file with google-cloud-aiplatform (or pass --submit here)::

    from google.cloud import aiplatform
    aiplatform.init(project='PROJECT', location='REGION')
    job = aiplatform.PipelineJob(display_name='woonkly-recommender',
                                 template_path='pipeline.json',
                                 pipeline_root='gs://BUCKET/root')
    job.submit(service_account='SA@PROJECT.iam.gserviceaccount.com')  # or job.run()

and schedule it (a Vertex AI pipeline schedule; cron in UTC unless prefixed TZ=...)::

    job.create_schedule(cron='TZ=Europe/Madrid 0 3 * * *',
                        display_name='woonkly-recommender-nightly')

docs/kubeflow.md covers building the image, Beam on Dataflow/Flink/Spark, and what can only
be checked on a cluster.
"""
import argparse
import importlib.util
import os
import sys

# Before TensorFlow is first imported: TFRS needs Keras 2.
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# Where the Dockerfile puts the project; the image carries the MovieLens sample, so a run
# without --data-dir trains on it (as local_runner.py does).
IMAGE_WORKDIR = '/pipeline'
IMAGE_DATA_DIR = IMAGE_WORKDIR + '/data/movielens-100k'


def _is_url(path: str) -> bool:
  return '://' in path


def _importable(module: str) -> bool:
  try:
    return importlib.util.find_spec(module) is not None
  except ImportError:  # a parent package is missing
    return False


def parse_args(argv=None) -> argparse.Namespace:
  from pipeline import cli
  parser = argparse.ArgumentParser(
      description='Compile the Woonkly recommender pipeline for Vertex AI Pipelines '
      '(Kubeflow V2).',
      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  required = parser.add_argument_group('required')
  required.add_argument('--image', required=True,
                        help='container image of every component, e.g. '
                        'REGION-docker.pkg.dev/PROJECT/REPO/woonkly-recommender:TAG')
  required.add_argument('--pipeline-root', required=True,
                        help='gs:// folder for the artifacts of every run')
  required.add_argument('--output', required=True,
                        help='the PipelineJob JSON to write (.json; .yaml writes the spec only)')
  parser.add_argument('--data-dir', default=IMAGE_DATA_DIR,
                      help='input folder, as the components see it (gs://..., /gcs/... or '
                      'a folder in the image); default: the MovieLens sample in the image')
  parser.add_argument('--serving-dir', default=None,
                      help='where the Pushers write the blessed models '
                      '(default: PIPELINE_ROOT/serving)')
  layout = parser.add_argument_group(
      'input layout (used when --data-dir is not an existing local folder; a local folder '
      'is inspected instead)')
  layout.add_argument('--pre-split', action='store_true',
                      help='DIR/train/interactions.csv and DIR/eval/interactions.csv instead '
                      'of DIR/interactions.csv split by hash')
  layout.add_argument('--no-users', action='store_true',
                      help='there is no DIR/users.csv')
  layout.add_argument('--implicit', action='store_true',
                      help='interactions.csv has no rating column (implicit feedback)')
  layout.add_argument('--spans', action='store_true',
                      help='DIR/span-<N>/ folders, each with the tables above; every run '
                      'reads the latest span')
  parser.add_argument('--display-name', default=None,
                      help='display name of the job (default: the pipeline name)')
  parser.add_argument('--no-cache', action='store_true',
                      help='re-run every component even if its inputs did not change')
  cli.add_model_flags(parser)
  cli.add_retraining_flags(parser)
  cli.add_beam_flags(parser)
  submit = parser.add_argument_group('submission (optional; needs google-cloud-aiplatform)')
  submit.add_argument('--submit', action='store_true',
                      help='after compiling, submit a run to Vertex AI Pipelines')
  submit.add_argument('--project', help='GCP project of the run (with --submit)')
  submit.add_argument('--region', help='Vertex AI region of the run (with --submit)')
  submit.add_argument('--service-account', default=None,
                      help='service account the run uses (with --submit)')
  args = parser.parse_args(argv)
  if args.submit:
    if not (args.project and args.region):
      parser.error('--submit needs --project and --region')
    if not _importable('google.cloud.aiplatform'):
      parser.error('--submit needs google-cloud-aiplatform (pip install google-cloud-aiplatform)')
  if not _is_url(args.data_dir) and not os.path.isabs(args.data_dir):
    if os.path.isdir(args.data_dir):
      args.data_dir = os.path.abspath(args.data_dir)
    else:
      parser.error(f'--data-dir {args.data_dir}: give a URL (gs://...) or an absolute path')
  return args


def input_layout(args: argparse.Namespace):
  """The InputLayout: read from a local folder that exists, else taken from the flags.

  With spans, each run reads the latest span when it starts (what a schedule wants), and
  every table must be in the span folders: the V2 ExampleGen driver needs ``{SPAN}`` in
  every pattern.
  """
  import dataclasses
  from pipeline.configs import InputLayout
  from pipeline.data_layout import SPAN_DIR, LayoutError, resolve_layout
  if not _is_url(args.data_dir) and os.path.isdir(args.data_dir):
    if not args.data_dir.startswith(('/gcs/', IMAGE_WORKDIR + '/')):
      print(f'note: {args.data_dir} is read by the components on Vertex AI, where only '
            f'/gcs/BUCKET/... mounts and folders in the image exist', file=sys.stderr)
    layout = resolve_layout(args.data_dir)
  else:
    if args.pre_split:
      train, eval_ = 'train/interactions.csv', 'eval/interactions.csv'
    else:
      train = eval_ = 'interactions.csv'
    prefix = SPAN_DIR + '/' if args.spans else ''
    layout = InputLayout(train=prefix + train, eval=prefix + eval_, items=prefix + 'items.csv',
                         users=None if args.no_users else prefix + 'users.csv',
                         implicit=args.implicit)
  if layout.shared_tables:
    raise LayoutError(f'{args.data_dir}: on Kubeflow V2 every span folder needs its own '
                      'items.csv (and users.csv): the V2 ExampleGen driver needs {SPAN} in '
                      'every pattern')
  return dataclasses.replace(layout, span=None)


def beam_args(args: argparse.Namespace):
  """pipeline.cli's Beam arguments; the DirectRunner sizes itself on the worker.

  cli.beam_pipeline_args counts the cores of this machine; 0 makes Beam count the cores of
  the machine that runs the component. 'auto' means multi_processing here: the size of a
  folder on this machine says nothing about the machines the components run on.
  """
  from pipeline import cli
  if args.beam_mode == 'auto':
    args = argparse.Namespace(**dict(vars(args), beam_mode='multi_processing'))
  result = cli.beam_pipeline_args(args)
  own = len(result) - len(args.beam_arg)  # the user's --beam-arg values come last
  for i in range(own):
    if result[i].startswith('--direct_num_workers=') and args.beam_mode == 'multi_processing':
      result[i] = '--direct_num_workers=0'
  return result


def build_pipeline(args: argparse.Namespace):
  from pipeline import cli
  from pipeline.configs import PIPELINE_NAME
  from pipeline.pipeline import create_pipeline
  retrieval, ranking, gates, ingest = cli.configs_from_args(args)
  root = args.pipeline_root.rstrip('/')
  return create_pipeline(
      pipeline_name=PIPELINE_NAME,
      pipeline_root=root,
      data_dir=args.data_dir,
      layout=input_layout(args),
      serving_dir=args.serving_dir or root + '/serving',
      retrieval=retrieval, ranking=ranking, gates=gates, ingest=ingest,
      metadata_connection_config=None,
      beam_pipeline_args=beam_args(args),
      enable_cache=not args.no_cache,
      num_segments=args.segments,
      warm_start=not args.no_warm_start,
      schema_path=args.schema)


def compile_pipeline(args: argparse.Namespace) -> str:
  """Writes the PipelineJob file and returns its path."""
  from tfx import v1 as tfx
  output = args.output if _is_url(args.output) else os.path.abspath(args.output)
  runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
      config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
          default_image=args.image, display_name=args.display_name),
      output_dir=os.path.dirname(output),
      output_filename=os.path.basename(output))
  runner.run(build_pipeline(args))
  return output


def submit(args: argparse.Namespace, template: str) -> None:
  """Submits one run of the compiled file (caching as compiled)."""
  from google.cloud import aiplatform  # pylint: disable=import-outside-toplevel
  from pipeline.configs import PIPELINE_NAME
  aiplatform.init(project=args.project, location=args.region)
  job = aiplatform.PipelineJob(display_name=args.display_name or PIPELINE_NAME,
                               template_path=template, pipeline_root=args.pipeline_root)
  job.submit(service_account=args.service_account)
  print(f'Submitted: {job.resource_name}')


def main(argv=None) -> int:
  args = parse_args(argv)
  from pipeline.data_layout import LayoutError
  try:
    output = compile_pipeline(args)
  except LayoutError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  print(output)
  if args.submit:
    submit(args, output)
  return 0


if __name__ == '__main__':
  sys.exit(main())
