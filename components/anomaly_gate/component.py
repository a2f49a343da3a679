"""AnomalyGate: passes the schema on only when the data has no anomalies.

ExampleValidator records anomalies but does not stop a run. Transform and the Trainers take
their schema from this gate, so an anomaly stops the run before any training, with a message
naming the split, the column and the problem.
"""
import os
from typing import Dict, List

import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx import v1 as tfx
from tfx.types import artifact_utils
from tfx.utils import io_utils


class DataAnomalyError(RuntimeError):
  """The examples do not match the schema."""


def read_anomalies(anomalies_uri: str, split_names: List[str]) -> Dict[str, Dict[str, str]]:
  """{split: {column: description}} of an ExampleAnomalies artifact."""
  found: Dict[str, Dict[str, str]] = {}
  for split in split_names:
    path = os.path.join(anomalies_uri, f'Split-{split}', 'SchemaDiff.pb')
    if not tf.io.gfile.exists(path):
      continue
    anomalies = anomalies_pb2.Anomalies()
    anomalies.ParseFromString(io_utils.read_bytes_file(path))
    for column, info in anomalies.anomaly_info.items():
      found.setdefault(split, {})[column] = f'{info.short_description}: {info.description}'
    if anomalies.HasField('dataset_anomaly_info'):
      info = anomalies.dataset_anomaly_info
      found.setdefault(split, {})['(dataset)'] = f'{info.short_description}: {info.description}'
  return found


def format_anomalies(found: Dict[str, Dict[str, str]]) -> str:
  lines = ['the data does not match the schema; training was not started:']
  for split, columns in sorted(found.items()):
    for column, text in sorted(columns.items()):
      lines.append(f'  split {split!r}, column {column!r}: {text}')
  return '\n'.join(lines)


@tfx.dsl.components.component
def AnomalyGate(
    anomalies: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleAnomalies],
    schema: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Schema],
    validated_schema: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.Schema],
) -> None:
  """Copies ``schema`` to ``validated_schema`` when ``anomalies`` is empty, else raises."""
  found = read_anomalies(anomalies.uri, artifact_utils.decode_split_names(anomalies.split_names))
  if found:
    raise DataAnomalyError(format_anomalies(found))
  io_utils.copy_dir(schema.uri, validated_schema.uri)
