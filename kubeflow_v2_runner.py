"""Compiles the recommender pipeline to a Vertex AI Pipelines (Kubeflow V2) job definition.

    python kubeflow_v2_runner.py --image IMAGE --pipeline-root gs://BUCKET/root \\
        --output pipeline.json [--data-dir gs://BUCKET/data] [--serving-dir DIR] \\
        [--pre-split] [--no-users] [--spans] [--epochs N ...] \\
        [--beam-runner dataflow --beam-arg ...] \\
        [--trainer-machine-type n1-standard-8 [--trainer-accelerator-type NVIDIA_TESLA_T4]] \\
        [--submit --project P --region R [--service-account SA] [--schedule "0 3 * * *"]]

The pipeline is the same ``create_pipeline(...)`` the local runner runs; every component
runs in IMAGE (the repository's Dockerfile), which has the project installed, so user code
is referenced by dotted path. There is no metadata connection config: Vertex AI manages ML
Metadata. The compiler does not read the data directory: for a gs:// directory the layout
flags say which files are there; a local folder that exists is inspected (resolve_layout).

``--submit`` submits one run of the compiled file; with ``--schedule CRON`` it creates a
Vertex AI pipeline schedule of the compiled file instead (cron in UTC unless prefixed
``TZ=Area/City `` or ``CRON_TZ=Area/City ``; checked here before anything is compiled).
With ``--spans`` every scheduled run reads the newest span folder. The same by hand::

    from google.cloud import aiplatform
    aiplatform.init(project='PROJECT', location='REGION')
    job = aiplatform.PipelineJob(display_name='woonkly-recommender',
                                 template_path='pipeline.json',
                                 pipeline_root='gs://BUCKET/root')
    job.submit(service_account='SA@PROJECT.iam.gserviceaccount.com')  # or job.run()
    job.create_schedule(cron='TZ=Europe/Madrid 0 3 * * *',
                        display_name='woonkly-recommender-schedule',
                        max_concurrent_run_count=1)

``--trainer-machine-type`` (with an optional accelerator) runs both Trainers as Vertex AI
Training custom jobs in IMAGE (TFX's Vertex extension), on that machine.

docs/kubeflow.md covers building the image, Beam on Dataflow/Flink/Spark, and what can only
be checked on a cluster.
"""
import argparse
import importlib.util
import os
import re
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


# --- cron ---------------------------------------------------------------------------------

MONTHS = ('JAN', 'FEB', 'MAR', 'APR', 'MAY', 'JUN', 'JUL', 'AUG', 'SEP', 'OCT', 'NOV', 'DEC')
DAYS = ('SUN', 'MON', 'TUE', 'WED', 'THU', 'FRI', 'SAT')
# name, lowest, highest, names (the first name is worth `lowest`); 7 is Sunday too, as in cron.
CRON_FIELDS = (('minute', 0, 59, ()), ('hour', 0, 23, ()), ('day of month', 1, 31, ()),
               ('month', 1, 12, MONTHS), ('day of week', 0, 7, DAYS))
CRON_TZ = re.compile(r'^(CRON_TZ|TZ)=(\S*)\s+')


def _time_zone_known(name: str) -> bool:
  import zoneinfo
  if not zoneinfo.available_timezones():  # no tz database here: only the form is checked
    return bool(re.fullmatch(r'[A-Za-z_+-]+(/[A-Za-z0-9_+-]+)*', name))
  try:
    zoneinfo.ZoneInfo(name)
    return True
  except (zoneinfo.ZoneInfoNotFoundError, ValueError):
    return False


def _cron_value(text: str, field: str, low: int, high: int, names) -> int:
  if text.upper() in names:
    return low + names.index(text.upper())
  if not text.isdigit():
    allowed = f' or {names[0]}-{names[-1]}' if names else ''
    raise ValueError(f'{field} {text!r} is not a number{allowed}')
  if not low <= int(text) <= high:
    raise ValueError(f'{field} {text} is outside {low}-{high}')
  return int(text)


def check_cron(text: str) -> str:
  """``text`` if it is a 5-field cron schedule Vertex AI accepts, else ValueError (one line).

  An optional ``TZ=Area/City `` or ``CRON_TZ=Area/City `` prefix names an IANA time zone;
  each field is ``*``, a value, a range ``a-b``, either with ``/step``, or a comma-separated
  list of those; months and weekdays may be names (JAN, MON). No @daily-style macros.
  """
  rest = text.strip()
  prefix = CRON_TZ.match(rest)
  if prefix:
    if not _time_zone_known(prefix.group(2)):
      raise ValueError(f'unknown time zone {prefix.group(2)!r} (an IANA name such as '
                       'Europe/Madrid)')
    rest = rest[prefix.end():]
  fields = rest.split()
  if len(fields) != 5:
    raise ValueError(f'expected 5 fields (minute hour day-of-month month day-of-week), got '
                     f'{len(fields)}')
  for value, (field, low, high, names) in zip(fields, CRON_FIELDS):
    for item in value.split(','):
      base, slash, step = item.partition('/')
      if slash and not (step.isdigit() and 1 <= int(step) <= high - low + 1):
        raise ValueError(f'{field} step {step!r} in {item!r} is not in 1-{high - low + 1}')
      if base == '*':
        continue
      if not base:
        raise ValueError(f'{field} {value!r} has an empty item')
      start, dash, end = base.partition('-')
      first = _cron_value(start, field, low, high, names)
      if dash:
        last = _cron_value(end, field, low, high, names)
        if last < first:
          raise ValueError(f'{field} range {base!r} runs backwards')
      elif slash:
        raise ValueError(f'{field} step in {item!r} needs a range or * before the /')
  return text


def _cron_type(text: str) -> str:
  try:
    return check_cron(text)
  except ValueError as e:
    raise argparse.ArgumentTypeError(f'{text!r} is not a cron schedule: {e}') from e


# --- flags ---------------------------------------------------------------------------------

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
                      help='service account the run (and the training jobs) use')
  submit.add_argument('--schedule', type=_cron_type, default=None, metavar='CRON',
                      help='with --submit: create a Vertex AI pipeline schedule of the compiled '
                      'pipeline instead of one run, e.g. "TZ=Europe/Madrid 15 3 * * *" (UTC '
                      'without TZ=); with --spans each run reads the newest span')
  training = parser.add_argument_group(
      'trainers on Vertex AI Training (TFX\'s Vertex extension; needs --project and --region)')
  training.add_argument('--trainer-machine-type', default=None, metavar='TYPE',
                        help='run both Trainers as Vertex AI custom jobs on this machine type, '
                        'e.g. n1-standard-8; without it they run in their pipeline step')
  training.add_argument('--trainer-accelerator-type', default=None, metavar='TYPE',
                        help='accelerator of each Trainer\'s machine, e.g. NVIDIA_TESLA_T4')
  training.add_argument('--trainer-accelerator-count', type=int, default=None, metavar='N',
                        help='accelerators per Trainer machine; 1 when only a type is given')
  args = parser.parse_args(argv)
  if args.schedule and not args.submit:
    parser.error('--schedule needs --submit (with --project and --region)')
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
  _check_trainer_flags(parser, args)
  return args


def _accelerator_types():
  """AcceleratorType names of the installed Vertex AI client, or None without it."""
  try:
    from google.cloud.aiplatform_v1.types import AcceleratorType
  except ImportError:
    return None
  return [a.name for a in AcceleratorType if a.name != 'ACCELERATOR_TYPE_UNSPECIFIED']


def _check_trainer_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
  if args.trainer_machine_type is None:
    if args.trainer_accelerator_type or args.trainer_accelerator_count is not None:
      parser.error('--trainer-accelerator-type/--trainer-accelerator-count need '
                   '--trainer-machine-type')
    return
  if not (args.project and args.region):
    parser.error('--trainer-machine-type needs --project and --region (the training jobs\' '
                 'project and Vertex AI region)')
  if args.trainer_accelerator_count is not None:
    if not args.trainer_accelerator_type:
      parser.error('--trainer-accelerator-count needs --trainer-accelerator-type')
    if args.trainer_accelerator_count < 1:
      parser.error('--trainer-accelerator-count must be at least 1')
  if args.trainer_accelerator_type:
    known = _accelerator_types()
    if known is not None and args.trainer_accelerator_type not in known:
      parser.error(f'--trainer-accelerator-type {args.trainer_accelerator_type}: not a Vertex '
                   f'AI accelerator type; one of {", ".join(known)}')


def vertex_training(args: argparse.Namespace):
  """create_pipeline's ``vertex_training``: the Trainers' Vertex AI CustomJob, or None.

  One worker pool of one replica on the requested machine, running IMAGE (the project is
  installed there; TFX sets the container's command to its run_executor entry point).
  """
  if not args.trainer_machine_type:
    return None
  machine = {'machine_type': args.trainer_machine_type}
  if args.trainer_accelerator_type:
    machine['accelerator_type'] = args.trainer_accelerator_type
    machine['accelerator_count'] = args.trainer_accelerator_count or 1
  job_spec = {'worker_pool_specs': [{'machine_spec': machine, 'replica_count': 1,
                                     'container_spec': {'image_uri': args.image}}]}
  if args.service_account:
    job_spec['service_account'] = args.service_account
  return {'project': args.project, 'region': args.region, 'job_spec': job_spec}


def input_layout(args: argparse.Namespace):
  """The InputLayout: read from a local folder that exists, else taken from the flags.

  With spans, each run reads the latest span when it starts (what a schedule wants), and
  every table must be in the span folders: the V2 ExampleGen driver needs ``{SPAN}`` in
  every pattern.
  """
  import dataclasses
  from core.configs import InputLayout
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
  from core.configs import PIPELINE_NAME, FeedConfig, TransformConfig
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
      feed=cli.config_from_flag(args, FeedConfig),
      transform=cli.config_from_flag(args, TransformConfig),
      metadata_connection_config=None,
      beam_pipeline_args=beam_args(args),
      enable_cache=not args.no_cache,
      num_segments=args.segments,
      warm_start=not args.no_warm_start,
      refit=args.refit,
      schema_path=args.schema,
      vertex_training=vertex_training(args))


def never_cached(job: dict, task_names) -> dict:
  """Turns Vertex AI's cache off for these tasks of a compiled PipelineJob (a dict).

  The ServedModel steps read the serving directory, which none of their inputs shows: a
  cached result would be the baseline of the run that first computed it. (Locally their TFX
  driver keys the cache on the served version; Vertex AI runs no TFX driver for them.)
  """
  tasks = job['pipelineSpec']['root']['dag']['tasks']
  for name in task_names:
    tasks[name].pop('cachingOptions', None)
  return job


def compile_pipeline(args: argparse.Namespace) -> str:
  """Writes the PipelineJob file and returns its path."""
  from tfx import v1 as tfx
  from tfx.dsl.io import fileio
  from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner
  from components.served_model.component import ServedModel
  output = args.output if _is_url(args.output) else os.path.abspath(args.output)
  runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
      config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
          default_image=args.image, display_name=args.display_name),
      output_dir=os.path.dirname(output),
      output_filename=os.path.basename(output))
  pipeline = build_pipeline(args)
  job = never_cached(runner.run(pipeline, write_out=False),
                     [n.id for n in pipeline.components if isinstance(n, ServedModel)])
  fileio.makedirs(os.path.dirname(output))
  # TFX's own writer (JSON, or the spec alone as YAML), as runner.run(write_out=True) does.
  kubeflow_v2_dag_runner._write_pipeline_spec_to_file(  # pylint: disable=protected-access
      job, f'This is converted from TFX pipeline from tfx-{tfx.__version__}.', output)
  return output


def _aiplatform():
  from google.cloud import aiplatform  # pylint: disable=import-outside-toplevel
  return aiplatform


def submit(args: argparse.Namespace, template: str, aiplatform_module=None) -> int:
  """Submits one run of the compiled file, or with --schedule creates a schedule of it.

  ``aiplatform_module``: google.cloud.aiplatform (the default) or a stand-in with the same
  ``init``/``PipelineJob`` API (the tests' fake). Returns the exit code; missing Google Cloud
  credentials are one line on stderr, nothing submitted.
  """
  from google.auth import exceptions as auth_exceptions  # pylint: disable=import-outside-toplevel
  from core.configs import PIPELINE_NAME
  aiplatform = aiplatform_module or _aiplatform()
  display_name = args.display_name or PIPELINE_NAME
  try:
    aiplatform.init(project=args.project, location=args.region)
    job = aiplatform.PipelineJob(display_name=display_name, template_path=template,
                                 pipeline_root=args.pipeline_root)
    if args.schedule:
      schedule = job.create_schedule(cron=args.schedule,
                                     display_name=f'{display_name}-schedule',
                                     max_concurrent_run_count=1,
                                     service_account=args.service_account)
      print(f'Scheduled ({args.schedule}): {schedule.resource_name}')
    else:
      job.submit(service_account=args.service_account)
      print(f'Submitted: {job.resource_name}')
  except auth_exceptions.DefaultCredentialsError as e:
    first = (str(e).strip().splitlines() or [''])[0]
    print(f'error: no Google Cloud credentials to submit with (run `gcloud auth '
          f'application-default login` or set GOOGLE_APPLICATION_CREDENTIALS): {first}',
          file=sys.stderr)
    return 1
  return 0


def main(argv=None, aiplatform_module=None) -> int:
  """Compiles (and with --submit submits or schedules); ``aiplatform_module``: see submit."""
  args = parse_args(argv)
  from pipeline.data_layout import LayoutError
  try:
    output = compile_pipeline(args)
  except LayoutError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  print(output)
  if args.submit:
    return submit(args, output, aiplatform_module)
  return 0


if __name__ == '__main__':
  sys.exit(main())
