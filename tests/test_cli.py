"""Runner flags -> Beam arguments (no pipeline run)."""
import argparse

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
  assert cli.beam_pipeline_args(parse('--beam-runner', 'dataflow', '--beam-arg=--project=p')) \
      == ['--runner=DataflowRunner', '--project=p']
