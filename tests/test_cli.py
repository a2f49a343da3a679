"""Runner flags -> Beam arguments (no pipeline run)."""
import argparse
import os

import pytest

from pipeline import cli


def parse(*argv):
  parser = argparse.ArgumentParser()
  parser.add_argument('--data-dir')
  cli.add_beam_flags(parser)
  return parser.parse_args(list(argv))


def test_auto_beam_mode_runs_small_local_inputs_in_memory(tmp_path, monkeypatch):
  (tmp_path / 'interactions.csv').write_text('user_id,item_id\n1,2\n')
  args = parse('--data-dir', str(tmp_path))
  assert cli.beam_mode(args) == 'in_memory'
  assert '--direct_running_mode=in_memory' in cli.beam_pipeline_args(args)
  # Past the threshold, or where the folder cannot be measured (gs://...), one worker per core.
  monkeypatch.setattr(cli, 'IN_MEMORY_BELOW_BYTES', 8)
  assert cli.beam_mode(args) == 'multi_processing'
  assert cli.beam_mode(parse('--data-dir', 'gs://bucket/data')) == 'multi_processing'
  # An explicit mode wins.
  monkeypatch.setattr(cli, 'IN_MEMORY_BELOW_BYTES', 64 << 20)
  explicit = parse('--data-dir', str(tmp_path), '--beam-mode', 'multi_processing')
  assert '--direct_running_mode=multi_processing' in cli.beam_pipeline_args(explicit)
  assert f'--direct_num_workers={os.cpu_count() or 1}' in cli.beam_pipeline_args(explicit)
  # Tests and small machines fix the number of workers, whatever the cores.
  fixed = parse('--data-dir', str(tmp_path), '--beam-mode', 'multi_processing',
                '--beam-workers', '2')
  assert '--direct_num_workers=2' in cli.beam_pipeline_args(fixed)
  assert cli.beam_pipeline_args(parse('--beam-runner', 'dataflow', '--beam-arg=--project=p')) \
      == ['--runner=DataflowRunner', '--project=p']


def model_args(*argv):
  parser = argparse.ArgumentParser()
  cli.add_model_flags(parser)
  return parser.parse_args(list(argv))


def test_config_json_sets_any_field_and_rejects_unknown_ones_and_wrong_types(capsys):
  import pytest
  args = model_args('--temperature', '0.3', '--retrieval-config',
                    '{"embedding_l2": 50, "temperature": 0.25, "hidden_units": [64, 32]}',
                    '--ranking-config', '{"engagement_weight": 2, "engagement_loss": "binary"}')
  retrieval, ranking, _, _ = cli.configs_from_args(args)
  assert retrieval.embedding_l2 == 50.0 and isinstance(retrieval.embedding_l2, float)
  assert retrieval.temperature == 0.25  # the JSON wins over the named flag
  assert retrieval.hidden_units == (64, 32)
  assert ranking.engagement_weight == 2.0 and ranking.engagement_loss == 'binary'
  feed = cli.config_from_flag(model_args('--feed-config', '{"retrieval_weight": 10}'),
                              cli.FeedConfig)
  assert feed.retrieval_weight == 10.0 and feed.k == cli.FeedConfig().k
  transform = cli.config_from_flag(model_args('--transform-config',
                                              '{"numeric_buckets": 20}'), cli.TransformConfig)
  assert transform.numeric_buckets == 20 and transform.vocab_top_k == 100_000
  defaults = cli.configs_from_args(model_args())
  assert defaults[0].embedding_l2 == cli.RetrievalConfig().embedding_l2
  for bad, message in (('{"embeding_l2": 5}', "no field 'embeding_l2'"),
                       ('{"epochs": 2.5}', 'RetrievalConfig.epochs is int'),
                       ('{"mask_seen": "yes"}', 'RetrievalConfig.mask_seen is bool'),
                       ('[1]', 'expected a JSON object'),
                       ('{epochs: 2}', 'not JSON')):
    with pytest.raises(SystemExit):
      model_args('--retrieval-config', bad)
    assert message in capsys.readouterr().err


def test_sweep_rejects_a_misspelt_variant_before_training(capsys):
  """benchmarks/sweep.py checks --variant as the runners check --ranking-config."""
  from benchmarks import sweep
  with pytest.raises(SystemExit):
    sweep.main(['--pipeline-root', '/nonexistent', '--stage', 'ranking',
                '--variant', '{"epochs": 3}', '--variant', '{"engagment_weight": 2}'])
  assert "RankingConfig has no field 'engagment_weight'" in capsys.readouterr().err
