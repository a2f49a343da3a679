"""ServedModel executor: TFX glue over core/served.py."""
import os
from typing import Any, Dict, List

from absl import logging
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import path_utils

from core import served


class Executor(base_executor.BaseExecutor):
  """Copies the served version into ``<model uri>/Format-Serving`` (nothing when none)."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    model = artifact_utils.get_single_instance(output_dict['model'])
    served_dir = exec_properties['served_dir']
    # The driver's reading when there was one (local runs), so that the copy is the version
    # the cache was keyed on; otherwise (Vertex AI) the latest version now.
    version = served.snapshot(served_dir, path_utils.serving_model_dir(model.uri),
                              exec_properties.get(served.SERVED_VERSION))
    model.set_string_custom_property(served.SERVED_VERSION, version or '')
    model.set_string_custom_property(
        served.SERVED_PATH, os.path.join(served_dir, version) if version else '')
    logging.info('Served under %s: %s', served_dir, f'version {version}' if version else
                 'nothing yet (no baseline)')
