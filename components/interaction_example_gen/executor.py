"""InteractionExampleGen executor: the TFX glue of transforms/ingestion.py.

Why a custom executor: CsvExampleGen reads one table and infers numeric-looking ids as
integers. This one reads the ingestion options and the input config, has
transforms.ingestion.build_splits read, check and join interactions.csv, items.csv and
users.csv, and writes its four splits (``train``, ``eval``, ``items``, ``users``) and the
description of the train/eval cut into the Examples artifact.
"""
import json
import os
from typing import Any, Dict, Tuple

import apache_beam as beam
import tensorflow as tf
from google.protobuf import json_format
from google.protobuf import struct_pb2
from tfx.components.example_gen import utils as example_gen_utils
from tfx.components.example_gen import write_split
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.components.util import examples_utils
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from core import features as F
from transforms.ingestion import DEFAULT_OPTIONS, build_splits, input_files


def options_from_custom_config(exec_properties: Dict[str, Any]) -> Dict[str, Any]:
  """Ingestion options, packed by the component as a Struct inside example_gen CustomConfig."""
  options = dict(DEFAULT_OPTIONS)
  raw = exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY)
  if raw:
    config = example_gen_pb2.CustomConfig()
    proto_utils.json_to_proto(raw, config)
    struct = struct_pb2.Struct()
    if config.custom_config.Unpack(struct):
      options.update(json_format.MessageToDict(struct))
  return options


@beam.ptransform_fn
def WriteExamples(examples: beam.PCollection, split_uri: str) -> beam.pvalue.PDone:
  """Writes a split as gzipped TFRecords where each worker is, without TFX's shuffle.

  TFX's WriteSplit reshuffles every split before writing it; on the local Beam runner that
  is a group-by-key held in the runner's memory, i.e. every example of the run at once
  (docs/quality.md). Record order carries no meaning here: the Trainers shuffle
  (models/data.py::rebatched) and the rest aggregates.
  """
  return (examples
          | 'Serialize' >> beam.ParDo(write_split.MaybeSerialize())
          | 'Write' >> beam.io.WriteToTFRecord(
              os.path.join(split_uri, write_split.DEFAULT_TF_RECORD_FILE_NAME),
              file_name_suffix='.gz'))


# Beside the splits in the Examples artifact: how train and eval were cut (record_split).
SPLIT_FILE = 'split.json'


def record_split(examples, path: str) -> None:
  """Copies the split's description into the Examples artifact's properties ('split' and,
  for a time split, 'eval_from'), where the run summary and the metadata store read it."""
  with tf.io.gfile.GFile(path) as f:
    described = json.loads(f.read())
  examples.set_string_custom_property('split', described['split'])
  for key in ('eval_percent', 'eval_from'):
    if key in described:
      examples.set_int_custom_property(key, int(described[key]))


class Executor(BaseExampleGenExecutor):
  """FileBasedExampleGen executor with the recommender's join and split rules."""

  def Do(self, input_dict, output_dict, exec_properties) -> None:
    """BaseExampleGenExecutor.Do, writing the splits with WriteExamples (no shuffle)."""
    self._log_startup(input_dict, output_dict, exec_properties)
    input_config, output_config = example_gen_pb2.Input(), example_gen_pb2.Output()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY],
                              input_config)
    proto_utils.json_to_proto(exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY],
                              output_config)
    outputs = output_dict[standard_component_specs.EXAMPLES_KEY]
    artifact_utils.get_single_instance(outputs).split_names = (
        artifact_utils.encode_split_names(
            example_gen_utils.generate_output_split_names(input_config, output_config)))
    examples = artifact_utils.get_single_instance(outputs)
    described = os.path.join(examples.uri, SPLIT_FILE)
    with self._make_beam_pipeline() as pipeline:
      splits, split = self.GenerateExamplesByBeam(pipeline, exec_properties)
      for name, split_examples in splits.items():
        _ = split_examples | f'WriteSplit[{name}]' >> WriteExamples(
            artifact_utils.get_split_uri(outputs, name))
      _ = (split | 'SplitJson' >> beam.Map(json.dumps, sort_keys=True)
           | 'WriteSplitJson' >> beam.io.WriteToText(described, shard_name_template=''))
    record_split(examples, described)
    payload = exec_properties.get(standard_component_specs.OUTPUT_DATA_FORMAT_KEY)
    if payload:
      for artifact in outputs:
        examples_utils.set_payload_format(artifact, payload)

  def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
    raise NotImplementedError('InteractionExampleGen builds all splits in GenerateExamplesByBeam')

  def GenerateExamplesByBeam(self, pipeline: beam.Pipeline, exec_properties: Dict[str, Any]
                             ) -> Tuple[Dict[str, beam.PCollection], beam.PCollection]:
    """build_splits on the component's input: (the splits, the split's description)."""
    input_config = example_gen_pb2.Input()
    proto_utils.json_to_proto(
        exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config)
    input_base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
    patterns = {split.name: split.pattern for split in input_config.splits}
    files = {name: input_files(input_base, pattern) for name, pattern in patterns.items()}
    # A 'users' split reading the interaction files means "no users.csv".
    if files.get(F.USERS) in (files[F.TRAIN], files[F.EVAL]):
      files.pop(F.USERS)
    files['interactions'] = sorted(set(files[F.TRAIN]) | set(files[F.EVAL]))
    return build_splits(pipeline, files, options_from_custom_config(exec_properties))
