"""kubeflow_v2_runner.py compiles create_pipeline(...) to a valid Vertex AI PipelineJob.

Two compilations (no training, no cloud): a local data folder whose layout is read from disk,
and a gs:// data folder whose layout comes from the flags, compiled with every read of a gs://
path failing. The JSON is parsed strictly into the KFP IR protos.
"""
import contextlib
import io
import json

import pytest
import tensorflow as tf
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx.dsl.components.common import resolver as resolver_lib
from tfx.dsl.input_resolution.strategies import latest_artifact_strategy
from tfx.dsl.input_resolution.strategies import latest_blessed_model_strategy
from tfx.dsl.io import fileio
from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner

import kubeflow_v2_runner
from pipeline import pipeline as P
from pipeline.configs import PIPELINE_NAME
from tests.conftest import MOVIELENS

IMAGE = 'europe-west1-docker.pkg.dev/proj/repo/woonkly-recommender:test'
ROOT = 'gs://bucket/root'
ACCEPTED_STRATEGIES = (latest_blessed_model_strategy.LatestBlessedModelStrategy,
                       latest_artifact_strategy.LatestArtifactStrategy)
BLESSING_QUERY = ('schema_title="tfx.ModelBlessing" AND state=LIVE AND '
                  'metadata.blessed.number_value=1')

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


def _compile(tmp_path_factory, name, flags):
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
      assert kubeflow_v2_runner.main(argv) == 0
  with open(output) as f:
    return json.load(f), stdout.getvalue(), argv


@pytest.fixture(scope='module')
def local_job(tmp_path_factory):
  return _compile(tmp_path_factory, 'local', LOCAL_FLAGS)


@pytest.fixture(scope='module')
def gcs_job(tmp_path_factory):
  return _compile(tmp_path_factory, 'gcs', GCS_FLAGS)


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
  """Task names per component id: LatestBlessedModelStrategy resolvers compile to two."""
  expected = {}
  for node in pipeline.components:
    if isinstance(node, resolver_lib.Resolver):
      strategy = node.exec_properties[resolver_lib.RESOLVER_STRATEGY_CLASS]
      if strategy is latest_blessed_model_strategy.LatestBlessedModelStrategy:
        expected[node.id] = [f'{node.id}-model-blessing-resolver', f'{node.id}-model-resolver']
        continue
    expected[node.id] = [node.id]
  return expected


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


def test_resolvers_are_the_kinds_the_v2_compiler_accepts(job):
  job_dict, _, argv = job
  pipeline = kubeflow_v2_runner.build_pipeline(kubeflow_v2_runner.parse_args(argv))
  resolvers = [n for n in pipeline.components if isinstance(n, resolver_lib.Resolver)]
  assert resolvers
  for node in resolvers:
    assert node.exec_properties[resolver_lib.RESOLVER_STRATEGY_CLASS] in ACCEPTED_STRATEGIES
    for name in _expected_tasks(pipeline)[node.id]:
      executor = _executor(job_dict, name)
      assert set(executor) == {'resolver'}, name  # an MLMD query, not a container
      queries = executor['resolver']['outputArtifactQueries']
      if name.endswith('-model-blessing-resolver'):
        # As compiled by TFX 1.16: the query names the type only, not the evaluator that
        # produced the blessing (see docs/kubeflow.md).
        assert queries == {'model_blessing': {'filter': BLESSING_QUERY}}
      elif name.endswith('-model-resolver'):
        assert 'schema_title="tfx.Model"' in queries['model']['filter']
        assert "metadata['current_model_id']" in queries['model']['filter']
        inputs = _tasks(job_dict)[name]['inputs']['artifacts']
        assert inputs['input']['taskOutputArtifact']['producerTask'] == \
            f'{node.id}-model-blessing-resolver'


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
  the curated schema and warm-starts the trainers from the latest blessed models."""
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
  for trainer, resolver in ((P.RETRIEVAL_TRAINER, 'LatestBlessedRetrievalModel'),
                            (P.RANKING_TRAINER, 'LatestBlessedRankingModel')):
    base = tasks[trainer]['inputs']['artifacts']['base_model']
    assert base['taskOutputArtifact']['producerTask'] == f'{resolver}-model-resolver'


def test_spans_with_shared_tables_are_refused_for_v2(tmp_path, capsys):
  for span in (1, 2):
    (tmp_path / f'span-{span}').mkdir()
    (tmp_path / f'span-{span}' / 'interactions.csv').write_text('user_id,item_id\n1,2\n')
  (tmp_path / 'items.csv').write_text('item_id\n2\n')
  argv = ['--image', IMAGE, '--pipeline-root', ROOT, '--output', str(tmp_path / 'p.json'),
          '--data-dir', str(tmp_path)]
  assert kubeflow_v2_runner.main(argv) == 2
  assert 'every span folder needs its own items.csv' in capsys.readouterr().err
