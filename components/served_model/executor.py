"""ServedModel executor: TFX glue over core/served.py."""
from typing import Any, Dict, List

from absl import logging
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import path_utils

from core import served


class Executor(base_executor.BaseExecutor):
  """Copies the served version into ``<model uri>/Format-Serving`` and what the gates compare
  with (the candidate kept in a served refit, else the same version) into ``gate_model``'s
  (nothing when nothing is served)."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    served_dir = exec_properties['served_dir']
    # The driver's reading when there was one (local runs), so that the copy is the version
    # the cache was keyed on; otherwise (Vertex AI) the latest version now.
    version = exec_properties.get(served.SERVED_VERSION)
    if version is None:
      version = served.latest_served(served_dir) or ''
    for key, for_gates in (('model', False), ('gate_model', True)):
      if key not in output_dict:
        continue
      artifact = artifact_utils.get_single_instance(output_dict[key])
      path = served.snapshot(served_dir, path_utils.serving_model_dir(artifact.uri), version,
                             for_gates=for_gates)
      artifact.set_string_custom_property(served.SERVED_VERSION, version if path else '')
      artifact.set_string_custom_property(served.SERVED_PATH, path or '')
      logging.info('Served under %s (%s): %s', served_dir, key, path or 'nothing yet')
