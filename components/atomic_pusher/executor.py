"""Pusher executor that publishes a model version whole (core/publish.py).

TFX's filesystem Pusher copies files straight into ``<base>/<version>/``: a push that fails
half-way (a full disk, a killed process) leaves a partial version that TF Serving, which picks
the highest numeric folder, would try to load. Here the publisher stages the copy in a hidden
folder beside the versions (TF Serving ignores non-numeric names): on a local disk it is
renamed into place only when complete (atomic); on an object store (gs://, s3://) it is copied
into the numeric folder with saved_model.pb last, so that an early poll fails to load and
retries rather than loading half a model. A failure removes what it wrote and leaves the
previous versions untouched. Versions are Unix timestamps, bumped past the newest existing
one so they always increase.
"""
import os
from typing import Any, Dict, List

from absl import logging
from tfx import types
from tfx.components.pusher import executor as pusher_executor
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

from core import publish as publisher

TEMP_PREFIX = publisher.STAGING_PREFIX


def next_version(base_directory: str) -> str:
  """A Unix-time version greater than every numeric version already in ``base_directory``."""
  return str(publisher.next_version(base_directory))


def publish(model_path: str, base_directory: str) -> str:
  """Publishes the SavedModel folder as ``base_directory/<new version>``; returns its path."""
  return publisher.publish_dir(model_path, base_directory, last=(publisher.SAVED_MODEL_PB,))


class Executor(pusher_executor.Executor):
  """Same inputs, outputs and blessing rules as TFX's Pusher; only the copy differs."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    self._log_startup(input_dict, output_dict, exec_properties)
    model_push = artifact_utils.get_single_instance(
        output_dict[standard_component_specs.PUSHED_MODEL_KEY])
    if not self.CheckBlessing(input_dict):
      self._MarkNotPushed(model_push)
      return
    destination = pusher_pb2.PushDestination()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.PUSH_DESTINATION_KEY],
                              destination)
    if destination.WhichOneof('destination') != 'filesystem':
      raise NotImplementedError('only filesystem push destinations are supported')
    serving_path = publish(self.GetModelPath(input_dict),
                           destination.filesystem.base_directory)
    logging.info('Model published to %s', serving_path)
    io_utils.copy_dir(self.GetModelPath(input_dict), model_push.uri)
    self._MarkPushed(model_push, pushed_destination=serving_path,
                     pushed_version=os.path.basename(serving_path))
