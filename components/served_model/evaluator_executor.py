"""TFX's Evaluator executor without an empty baseline.

The ranking baseline is a ServedModel artifact, which is empty while nothing of its kind is
served. TFX's Evaluator would try to load it; without it, the Evaluator judges on the
absolute thresholds only (its change thresholds need a baseline), as on a first run.
"""
from typing import Any, Dict, List

from tfx import types
from tfx.components.evaluator import executor as evaluator_executor
from tfx.types import standard_component_specs

from core import served

BASELINE = standard_component_specs.BASELINE_MODEL_KEY


class Executor(evaluator_executor.Executor):
  """Same inputs, outputs and blessing as TFX's Evaluator; an empty baseline is dropped."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    input_dict = dict(input_dict)
    baselines = served.holding_models(input_dict.pop(BASELINE, None))
    if baselines:
      input_dict[BASELINE] = baselines
    super().Do(input_dict, output_dict, exec_properties)
