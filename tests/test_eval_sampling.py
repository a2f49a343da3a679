"""--eval-max-users bounds the feed evaluation as well as the retrieval evaluation."""
from pipeline import pipeline as P
from core.configs import GateConfig
from pipeline.data_layout import resolve_layout


def test_eval_max_users_reaches_both_evaluations(tiny_tables, tmp_path):
  built = P.create_pipeline(
      pipeline_name='t', pipeline_root=str(tmp_path / 'root'), data_dir=str(tiny_tables),
      layout=resolve_layout(str(tiny_tables)), serving_dir=str(tmp_path / 'serving'),
      gates=GateConfig(eval_max_users=7))
  nodes = {c.id: c for c in built.components}
  assert nodes[P.FEED_BUILDER].exec_properties['max_eval_users'] == 7
  assert nodes[P.RETRIEVAL_EVALUATOR].exec_properties['max_users'] == 7
