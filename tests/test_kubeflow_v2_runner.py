"""kubeflow_v2_runner.py compiles create_pipeline(...) to a valid Vertex AI PipelineJob.

Three compilations (no training, no cloud): a local data folder whose layout is read from
disk, a gs:// data folder whose layout comes from the flags, compiled with every read of a
gs:// path failing, and one with the Trainers on Vertex AI Training and --submit --schedule
going to a fake google.cloud.aiplatform that records its calls. The JSON is parsed strictly
into the KFP IR protos.
"""
import argparse
import contextlib
import io
import json

import pytest
import tensorflow as tf
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx.dsl.components.common import resolver as resolver_lib
from tfx.dsl.io import fileio
from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner

import kubeflow_v2_runner
from pipeline import pipeline as P
from core.configs import PIPELINE_NAME
from tests.helpers import MOVIELENS

IMAGE = 'europe-west1-docker.pkg.dev/proj/repo/woonkly-recommender:test'
ROOT = 'gs://bucket/root'

LOCAL_FLAGS = ['--data-dir', MOVIELENS]
GCS_FLAGS = ['--data-dir', 'gs://bucket/data', '--pre-split', '--no-users',
             '--serving-dir', 'gs://bucket/models', '--epochs', '2',
             '--beam-runner', 'dataflow', '--beam-arg=--project=proj',
             '--beam-arg=--region=europe-west1', '--beam-arg=--temp_location=gs://bucket/tmp']


def _no_gcs(real):
  def guarded(path, *args, **kwargs):
    paths = path if isinstance(path, (list, tuple)) else [path]
    if any(str(p).startswith('gs://') for p in paths):
      raise AssertionError(f'the compiler read {path}')
    return real(path, *args, **kwargs)
  return guarded


class FakeAiplatform:
  """google.cloud.aiplatform's init/PipelineJob as far as the runner uses them; records calls."""

  def __init__(self, raises=None):
    self.calls, self.raises = [], raises
    fake = self

    class PipelineJob:
      resource_name = 'projects/p/locations/r/pipelineJobs/job-1'

      def __init__(self, **kwargs):
        fake.record('PipelineJob', **kwargs)

      def submit(self, **kwargs):
        fake.record('submit', **kwargs)

      def create_schedule(self, **kwargs):
        fake.record('create_schedule', **kwargs)
        return argparse.Namespace(resource_name='projects/p/locations/r/schedules/s-1')

    self.PipelineJob = PipelineJob  # pylint: disable=invalid-name

  def record(self, name, **kwargs):
    if self.raises is not None:
      raise self.raises
    self.calls.append((name, kwargs))

  def init(self, **kwargs):
    self.record('init', **kwargs)


def _compile(tmp_path_factory, name, flags, **main_kwargs):
  """Compiles with the runner's own main(); returns (job dict, printed path, argv)."""
  output = str(tmp_path_factory.mktemp(name) / 'pipeline.json')
  argv = ['--image', IMAGE, '--pipeline-root', ROOT, '--output', output] + flags
  stdout = io.StringIO()
  with pytest.MonkeyPatch.context() as mp:
    for module, names in ((tf.io.gfile, ('exists', 'isdir', 'glob', 'listdir', 'stat')),
                          (fileio, ('exists', 'isdir', 'glob', 'listdir', 'stat', 'open'))):
      for fn in names:
        mp.setattr(module, fn, _no_gcs(getattr(module, fn)))
    with contextlib.redirect_stdout(stdout):
      assert kubeflow_v2_runner.main(argv, **main_kwargs) == 0
  with open(output) as f:
    return json.load(f), stdout.getvalue(), argv


@pytest.fixture(scope='module')
def local_job(tmp_path_factory):
  return _compile(tmp_path_factory, 'local', LOCAL_FLAGS)


@pytest.fixture(scope='module')
def gcs_job(tmp_path_factory):
  return _compile(tmp_path_factory, 'gcs', GCS_FLAGS)


SA = 'runner@proj.iam.gserviceaccount.com'
CRON = 'TZ=Europe/Madrid 15 3 * * *'
VERTEX_FLAGS = ['--data-dir', 'gs://bucket/data', '--spans',
                '--trainer-machine-type', 'n1-standard-8',
                '--trainer-accelerator-type', 'NVIDIA_TESLA_T4', '--trainer-accelerator-count', '2',
                '--submit', '--project', 'proj', '--region', 'europe-west4',
                '--service-account', SA, '--schedule', CRON]


@pytest.fixture(scope='module')
def vertex_job(tmp_path_factory):
  """Trainers on Vertex AI Training, and a schedule created through the fake client."""
  fake = FakeAiplatform()
  return _compile(tmp_path_factory, 'vertex', VERTEX_FLAGS, aiplatform_module=fake), fake


@pytest.fixture(params=['local', 'gcs'])
def job(request):
  return request.getfixturevalue(f'{request.param}_job')


def _spec(job_dict):
  return json_format.ParseDict(job_dict['pipelineSpec'], pipeline_spec_pb2.PipelineSpec())


def _tasks(job_dict):
  return job_dict['pipelineSpec']['root']['dag']['tasks']


def _executor(job_dict, task_name):
  spec = job_dict['pipelineSpec']
  label = spec['components'][_tasks(job_dict)[task_name]['componentRef']['name']]['executorLabel']
  return spec['deploymentSpec']['executors'][label]


def _param(task, name):
  value = task['inputs']['parameters'][name]['runtimeValue']
  return value['constantValue']['stringValue'] if 'constantValue' in value else value['constant']


def _expected_tasks(pipeline):
  """Task names per component id: one task each (no resolver compiles to several)."""
  return {node.id: [node.id] for node in pipeline.components}


def test_writes_a_pipeline_job_and_prints_its_path(job):
  job_dict, printed, argv = job
  output = argv[argv.index('--output') + 1]
  assert printed.strip().splitlines()[-1] == output
  assert {'pipelineSpec', 'runtimeConfig'} <= set(job_dict)
  assert job_dict['displayName'] == PIPELINE_NAME
  runtime = json_format.ParseDict(job_dict['runtimeConfig'],
                                  pipeline_spec_pb2.PipelineJob.RuntimeConfig())
  assert runtime.gcs_output_directory == ROOT
  spec = _spec(job_dict)  # strict: unknown fields raise
  assert spec.pipeline_info.name == PIPELINE_NAME
  assert spec.sdk_version.startswith('tfx-1.16')


def test_every_component_is_a_task(job):
  job_dict, _, argv = job
  pipeline = kubeflow_v2_runner.build_pipeline(kubeflow_v2_runner.parse_args(argv))
  expected = _expected_tasks(pipeline)
  tasks = set(_spec(job_dict).root.dag.tasks)
  for component_id, names in expected.items():
    assert set(names) <= tasks, component_id
  assert tasks == {n for names in expected.values() for n in names}
  for name in (P.EXAMPLE_GEN, P.RETRIEVAL_TRAINER, P.RANKING_TRAINER, P.RETRIEVAL_EVALUATOR,
               P.RANKING_EVALUATOR, P.RETRIEVAL_PUSHER, P.RANKING_PUSHER):
    assert name in tasks


def test_containers_run_the_image_with_the_tfx_entrypoint(job):
  job_dict, _, _ = job
  containers = [e['container'] for e in
                job_dict['pipelineSpec']['deploymentSpec']['executors'].values()
                if 'container' in e]
  assert len(containers) >= 12
  for container in containers:
    assert container['image'] == IMAGE
    assert container['command'] == list(kubeflow_v2_dag_runner.KUBEFLOW_TFX_CMD)
  # User code is referenced by dotted path (installed in the image), not uploaded.
  paths = {c['args'][c['args'].index('--executor_class_path') + 1] for c in containers}
  assert 'components.interaction_example_gen.executor.Executor' in paths
  assert 'components.retrieval_evaluator.executor.Executor' in paths
  for trainer in (P.RETRIEVAL_TRAINER, P.RANKING_TRAINER):
    assert 'models.' in _param(_tasks(job_dict)[trainer], 'run_fn')
  assert _param(_tasks(job_dict)['Transform'], 'preprocessing_fn') == P.PREPROCESSING_FN


BASELINES = {  # consumer task, input key -> the kind of model it must be given, and which
    # output of the served-model step: trainers start from the served version, evaluators
    # compare with what the gates use (the candidate kept in a served refit).
    (P.RETRIEVAL_TRAINER, 'base_model'): ('retrieval', 'model'),
    (P.RETRIEVAL_EVALUATOR, 'baseline_model'): ('retrieval', 'gate_model'),
    (P.RANKING_TRAINER, 'base_model'): ('ranking', 'model'),
    (P.RANKING_EVALUATOR, 'baseline_model'): ('ranking', 'gate_model'),
}


def test_each_baseline_is_the_served_model_of_its_own_kind(job):
  """Each trainer's base model and each evaluator's baseline come from a step that reads the
  serving folder of that kind; no metadata query ("latest blessed model", which cannot tell
  the evaluators' blessings apart) is left, and the served-model steps are never cached."""
  job_dict, _, argv = job
  pipeline = kubeflow_v2_runner.build_pipeline(kubeflow_v2_runner.parse_args(argv))
  assert not [n for n in pipeline.components if isinstance(n, resolver_lib.Resolver)]
  executors = job_dict['pipelineSpec']['deploymentSpec']['executors']
  assert not [label for label, e in executors.items() if 'resolver' in e]
  args = kubeflow_v2_runner.parse_args(argv)
  serving = (args.serving_dir or ROOT + '/serving').rstrip('/')
  tasks = _tasks(job_dict)
  for (consumer, key), (kind, output) in BASELINES.items():
    producer = tasks[consumer]['inputs']['artifacts'][key]['taskOutputArtifact']
    assert producer['outputArtifactKey'] == output
    step = producer['producerTask']
    assert _param(tasks[step], 'served_dir') == f'{serving}/{kind}', (consumer, step)
    assert _executor_class(job_dict, step) == 'components.served_model.executor.Executor'
    assert 'cachingOptions' not in tasks[step], step  # reads the serving folder at run time
  assert {tasks[c]['inputs']['artifacts'][k]['taskOutputArtifact']['producerTask']
          for c, k in BASELINES} == {P.SERVED_RETRIEVAL, P.SERVED_RANKING}
  # Caching stays on everywhere else; the ranking Evaluator is TFX's, with the executor
  # that leaves out an empty baseline.
  assert tasks[P.RANKING_TRAINER]['cachingOptions'] == {'enableCache': True}
  assert _executor_class(job_dict, P.RANKING_EVALUATOR) == \
      'components.served_model.evaluator_executor.Executor'


def test_local_folder_layout_is_read_from_disk(local_job):
  job_dict, _, _ = local_job
  tasks = _tasks(job_dict)
  gen = tasks[P.EXAMPLE_GEN]
  assert _param(gen, 'input_base') == MOVIELENS
  splits = {s['name']: s['pattern'] for s in json.loads(_param(gen, 'input_config'))['splits']}
  assert splits == {'train': 'interactions.csv', 'eval': 'interactions.csv',
                    'items': 'items.csv', 'users': 'users.csv'}
  push = json.loads(_param(tasks[P.RETRIEVAL_PUSHER], 'push_destination'))
  assert push['filesystem']['base_directory'] == ROOT + '/serving/retrieval'
  args = _executor(job_dict, P.EXAMPLE_GEN)['container']['args']
  assert '--runner=DirectRunner' in args
  # The DirectRunner counts the cores of the machine that runs the component.
  assert '--direct_num_workers=0' in args


def test_gcs_folder_layout_comes_from_the_flags(gcs_job):
  job_dict, _, _ = gcs_job
  tasks = _tasks(job_dict)
  gen = tasks[P.EXAMPLE_GEN]
  assert _param(gen, 'input_base') == 'gs://bucket/data'
  splits = {s['name']: s['pattern'] for s in json.loads(_param(gen, 'input_config'))['splits']}
  assert splits == {'train': 'train/interactions.csv', 'eval': 'eval/interactions.csv',
                    'items': 'items.csv', 'users': 'train/interactions.csv'}
  for task, kind in ((P.RETRIEVAL_PUSHER, 'retrieval'), (P.RANKING_PUSHER, 'ranking')):
    push = json.loads(_param(tasks[task], 'push_destination'))
    assert push['filesystem']['base_directory'] == f'gs://bucket/models/{kind}'
  config = json.loads(_param(tasks[P.RETRIEVAL_TRAINER], 'custom_config'))
  assert config['retrieval']['epochs'] == 2
  for name in (P.EXAMPLE_GEN, 'Transform', P.RANKING_EVALUATOR):
    args = _executor(job_dict, name)['container']['args']
    assert '--runner=DataflowRunner' in args and '--project=proj' in args
    assert '--temp_location=gs://bucket/tmp' in args
    assert not any(a.startswith('--direct_') for a in args)


def test_missing_required_flags_is_a_usage_error(capsys):
  with pytest.raises(SystemExit) as exit_info:
    kubeflow_v2_runner.parse_args(['--data-dir', 'gs://bucket/data'])
  assert exit_info.value.code == 2
  err = capsys.readouterr().err
  assert 'required' in err
  for flag in ('--image', '--pipeline-root', '--output'):
    assert flag in err


def test_relative_missing_data_dir_and_incomplete_submit_are_usage_errors(capsys):
  base = ['--image', IMAGE, '--pipeline-root', ROOT, '--output', 'p.json']
  with pytest.raises(SystemExit):
    kubeflow_v2_runner.parse_args(base + ['--data-dir', 'no/such/folder'])
  assert 'absolute path' in capsys.readouterr().err
  with pytest.raises(SystemExit):
    kubeflow_v2_runner.parse_args(base + ['--submit', '--project', 'p'])
  assert '--region' in capsys.readouterr().err


def test_default_data_dir_is_the_sample_in_the_image():
  args = kubeflow_v2_runner.parse_args(['--image', IMAGE, '--pipeline-root', ROOT,
                                        '--output', 'p.json'])
  assert args.data_dir == '/pipeline/data/movielens-100k'


def test_spans_schema_and_warm_start_compile(tmp_path_factory):
  """Scheduled retraining on Vertex: every run reads the newest span, validates it against
  the curated schema and warm-starts the trainers from the served models."""
  job_dict, _, _ = _compile(tmp_path_factory, 'spans', [
      '--data-dir', 'gs://bucket/data', '--spans', '--schema', 'gs://bucket/schema.pbtxt'])
  _spec(job_dict)
  tasks = _tasks(job_dict)
  gen = tasks[P.EXAMPLE_GEN]
  splits = {s['name']: s['pattern'] for s in json.loads(_param(gen, 'input_config'))['splits']}
  assert splits == {'train': 'span-{SPAN}/interactions.csv',
                    'eval': 'span-{SPAN}/interactions.csv',
                    'items': 'span-{SPAN}/items.csv', 'users': 'span-{SPAN}/users.csv'}
  assert 'range_config' not in gen['inputs']['parameters']  # the latest span at run time
  assert _param(tasks[P.SCHEMA_GEN], 'schema_file') == 'gs://bucket/schema.pbtxt'
  for trainer, step in ((P.RETRIEVAL_TRAINER, P.SERVED_RETRIEVAL),
                        (P.RANKING_TRAINER, P.SERVED_RANKING)):
    base = tasks[trainer]['inputs']['artifacts']['base_model']
    assert base['taskOutputArtifact']['producerTask'] == step


def test_spans_with_shared_tables_are_refused_for_v2(tmp_path, capsys):
  for span in (1, 2):
    (tmp_path / f'span-{span}').mkdir()
    (tmp_path / f'span-{span}' / 'interactions.csv').write_text('user_id,item_id\n1,2\n')
  (tmp_path / 'items.csv').write_text('item_id\n2\n')
  argv = ['--image', IMAGE, '--pipeline-root', ROOT, '--output', str(tmp_path / 'p.json'),
          '--data-dir', str(tmp_path)]
  assert kubeflow_v2_runner.main(argv) == 2
  assert 'every span folder needs its own items.csv' in capsys.readouterr().err


# --- trainers on Vertex AI Training ----------------------------------------------------------

VERTEX_TRAINER_EXECUTOR = 'tfx.extensions.google_cloud_ai_platform.trainer.executor.GenericExecutor'
PLAIN_TRAINER_EXECUTOR = 'tfx.components.trainer.executor.GenericExecutor'


def _executor_class(job_dict, task_name):
  args = _executor(job_dict, task_name)['container']['args']
  return args[args.index('--executor_class_path') + 1]


def test_trainers_run_on_the_requested_vertex_machine(vertex_job):
  (job_dict, _, _), _ = vertex_job
  _spec(job_dict)
  for trainer, kind in ((P.RETRIEVAL_TRAINER, 'retrieval'), (P.RANKING_TRAINER, 'ranking')):
    assert _executor_class(job_dict, trainer) == VERTEX_TRAINER_EXECUTOR
    # The step itself still runs in the image (it launches the custom job from there).
    assert _executor(job_dict, trainer)['container']['image'] == IMAGE
    config = json.loads(_param(_tasks(job_dict)[trainer], 'custom_config'))
    assert config['ai_platform_enable_vertex'] is True
    assert config['ai_platform_vertex_region'] == 'europe-west4'
    args = config['ai_platform_training_args']
    assert args['project'] == 'proj'
    assert args['job_spec'] == {
        'worker_pool_specs': [{
            'machine_spec': {'machine_type': 'n1-standard-8',
                             'accelerator_type': 'NVIDIA_TESLA_T4', 'accelerator_count': 2},
            'replica_count': 1,
            'container_spec': {'image_uri': IMAGE}}],
        'service_account': SA}
    # The run_fn's own keys are unchanged.
    assert kind in config and len(config['code']) == 16
    assert 'models.' in _param(_tasks(job_dict)[trainer], 'run_fn')


def test_trainers_are_plain_without_the_flags(job):
  job_dict, _, _ = job
  for trainer in (P.RETRIEVAL_TRAINER, P.RANKING_TRAINER):
    assert _executor_class(job_dict, trainer) == PLAIN_TRAINER_EXECUTOR
    config = json.loads(_param(_tasks(job_dict)[trainer], 'custom_config'))
    assert not [k for k in config if k.startswith('ai_platform')]


@pytest.mark.parametrize('flags,message', [
    (['--trainer-accelerator-type', 'NVIDIA_TESLA_T4'], 'need --trainer-machine-type'),
    (['--trainer-machine-type', 'n1-standard-8'], '--trainer-machine-type needs --project'),
    (['--trainer-machine-type', 'n1-standard-8', '--project', 'p', '--region', 'r',
      '--trainer-accelerator-type', 'NVIDIA_TESLA_T5'], 'not a Vertex AI accelerator type'),
    (['--trainer-machine-type', 'n1-standard-8', '--project', 'p', '--region', 'r',
      '--trainer-accelerator-count', '1'], 'needs --trainer-accelerator-type'),
])
def test_bad_trainer_flags_are_usage_errors(capsys, flags, message):
  with pytest.raises(SystemExit) as exit_info:
    kubeflow_v2_runner.parse_args(['--image', IMAGE, '--pipeline-root', ROOT,
                                   '--output', 'p.json'] + flags)
  assert exit_info.value.code == 2
  assert message in capsys.readouterr().err.strip().splitlines()[-1]


# --- submission and schedules (a fake google.cloud.aiplatform) -------------------------------

def test_schedule_is_created_for_the_compiled_file(vertex_job):
  (job_dict, printed, argv), fake = vertex_job
  output = argv[argv.index('--output') + 1]
  assert [name for name, _ in fake.calls] == ['init', 'PipelineJob', 'create_schedule']
  assert fake.calls[0][1] == {'project': 'proj', 'location': 'europe-west4'}
  assert fake.calls[1][1] == {'display_name': PIPELINE_NAME, 'template_path': output,
                              'pipeline_root': ROOT}
  assert fake.calls[2][1] == {'cron': CRON, 'display_name': f'{PIPELINE_NAME}-schedule',
                              'max_concurrent_run_count': 1, 'service_account': SA}
  assert printed.strip().splitlines() == [
      output, f'Scheduled ({CRON}): projects/p/locations/r/schedules/s-1']
  # Compiled with --spans: every scheduled run reads the newest span (no range_config).
  gen = _tasks(job_dict)[P.EXAMPLE_GEN]
  assert 'range_config' not in gen['inputs']['parameters']
  assert '{SPAN}' in _param(gen, 'input_config')


def _args(tmp_path, *flags):
  return kubeflow_v2_runner.parse_args(['--image', IMAGE, '--pipeline-root', ROOT,
                                        '--output', str(tmp_path / 'p.json'),
                                        '--submit', '--project', 'proj', '--region', 'r',
                                        *flags])


def test_submit_without_schedule_submits_one_run(tmp_path, capsys):
  fake = FakeAiplatform()
  assert kubeflow_v2_runner.submit(_args(tmp_path), 'p.json', aiplatform_module=fake) == 0
  assert [name for name, _ in fake.calls] == ['init', 'PipelineJob', 'submit']
  assert fake.calls[2][1] == {'service_account': None}
  assert capsys.readouterr().out == 'Submitted: projects/p/locations/r/pipelineJobs/job-1\n'


def test_missing_credentials_are_one_line_and_nothing_submitted(tmp_path, capsys):
  from google.auth import exceptions as auth_exceptions
  fake = FakeAiplatform(raises=auth_exceptions.DefaultCredentialsError(
      'Your default credentials were not found.\nTo set up Application Default Credentials, '
      'see https://cloud.google.com/docs/authentication/external/set-up-adc'))
  args = _args(tmp_path, '--schedule', '0 3 * * *')
  assert kubeflow_v2_runner.submit(args, 'p.json', aiplatform_module=fake) == 1
  assert fake.calls == []
  captured = capsys.readouterr()
  assert captured.out == ''
  assert captured.err == ('error: no Google Cloud credentials to submit with (run `gcloud auth '
                          'application-default login` or set GOOGLE_APPLICATION_CREDENTIALS): '
                          'Your default credentials were not found.\n')


@pytest.mark.parametrize('cron,reason', [
    ('0 3 * *', 'expected 5 fields'),
    ('0 3 * * * *', 'expected 5 fields'),
    ('60 3 * * *', 'minute 60 is outside 0-59'),
    ('0 24 * * *', 'hour 24 is outside 0-23'),
    ('0 3 0 * *', 'day of month 0 is outside 1-31'),
    ('0 3 * 13 *', 'month 13 is outside 1-12'),
    ('0 3 * * 8', 'day of week 8 is outside 0-7'),
    ('0 3 * FOO *', "month 'FOO' is not a number or JAN-DEC"),
    ('*/0 3 * * *', "minute step '0'"),
    ('*/61 * * * *', "minute step '61'"),
    ('5/10 * * * *', 'needs a range or *'),
    ('0 5-2 * * *', "hour range '5-2' runs backwards"),
    ('0 1,,2 * * *', 'empty item'),
    ('TZ=Mars/Olympus 0 3 * * *', "unknown time zone 'Mars/Olympus'"),
    ('@daily', 'expected 5 fields'),
])
def test_bad_cron_is_one_usage_line_and_nothing_is_called(tmp_path, capsys, cron, reason):
  fake = FakeAiplatform()
  output = tmp_path / 'p.json'
  with pytest.raises(SystemExit) as exit_info:
    kubeflow_v2_runner.main(['--image', IMAGE, '--pipeline-root', ROOT, '--output', str(output),
                             '--submit', '--project', 'p', '--region', 'r', '--schedule', cron],
                            aiplatform_module=fake)
  assert exit_info.value.code == 2
  last = capsys.readouterr().err.strip().splitlines()[-1]
  assert f'error: argument --schedule: {cron!r} is not a cron schedule: ' in last
  assert reason in last
  assert fake.calls == [] and not output.exists()


@pytest.mark.parametrize('cron', [
    '0 3 * * *', '15 3 * * *', '*/15 * * * *', '0 0-23/2 * * *', '0 9 1,15 * MON-FRI',
    '30 2 * JAN,jul sun', '0 3 * * 7', 'TZ=Europe/Madrid 0 3 * * *',
    'CRON_TZ=America/New_York 1 * * * *', '0-59/5 * 1-31 1-12 0-6',
])
def test_cron_schedules_vertex_accepts(cron):
  assert kubeflow_v2_runner.check_cron(cron) == cron


def test_schedule_without_submit_and_submit_without_region_are_usage_errors(capsys):
  base = ['--image', IMAGE, '--pipeline-root', ROOT, '--output', 'p.json']
  with pytest.raises(SystemExit) as exit_info:
    kubeflow_v2_runner.parse_args(base + ['--schedule', '0 3 * * *'])
  assert exit_info.value.code == 2
  assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
      'error: --schedule needs --submit (with --project and --region)')
  with pytest.raises(SystemExit) as exit_info:
    kubeflow_v2_runner.parse_args(base + ['--submit', '--region', 'r', '--schedule', '0 3 * * *'])
  assert exit_info.value.code == 2
  assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
      'error: --submit needs --project and --region')
