"""TF Serving warm-up requests: ``<export_dir>/assets.extra/tf_serving_warmup_requests``.

TF Serving replays these requests when it loads a model version, before the version takes
traffic, so the first real requests do not pay for graph initialisation (table loading,
kernel selection). The file is a TFRecord of ``PredictionLog`` protos, each holding a
``PredictRequest`` for one signature. TF Serving reads at most 1,000 records.

    write_warmup_requests(export_dir, 'recommend', {'user_id': np.array(['1', '2'])})

Call it after ``tf.saved_model.save`` (the folder must exist; saving again does not remove
assets.extra/). The Pusher copies the whole export folder, warm-up file included.
"""
import os
from typing import Dict, List

import numpy as np
import tensorflow as tf

WARMUP_DIR = 'assets.extra'
WARMUP_FILE = 'tf_serving_warmup_requests'
MAX_RECORDS = 1000  # TF Serving ignores records beyond this.


def warmup_path(export_dir: str) -> str:
  return os.path.join(export_dir, WARMUP_DIR, WARMUP_FILE)


def write_warmup_requests(export_dir: str, signature_name: str,
                          inputs: Dict[str, np.ndarray], num: int = 1,
                          model_name: str = '') -> str:
  """Writes ``num`` identical PredictRequests for ``signature_name``; returns the file path.

  Args:
    export_dir: the SavedModel folder (holding saved_model.pb).
    signature_name: the signature the requests call ('recommend', 'retrieve', 'rank', ...).
    inputs: input name -> array with the batch dimension first (all the same batch size);
      str arrays become DT_STRING tensors.
    num: how many records (TF Serving runs each once; 1..1000).
    model_name: optional ModelSpec.name (TF Serving does not need it for warm-up).
  """
  from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2
  if not 1 <= num <= MAX_RECORDS:
    raise ValueError(f'num must be in 1..{MAX_RECORDS}, got {num}')
  if not inputs:
    raise ValueError('inputs must name at least one input tensor')
  if not tf.io.gfile.exists(os.path.join(export_dir, 'saved_model.pb')):
    raise ValueError(f'{export_dir} holds no saved_model.pb; save the model first')
  sizes = {name: len(np.asarray(value)) for name, value in inputs.items()}
  if len(set(sizes.values())) != 1:
    raise ValueError(f'inputs have different batch sizes: {sizes}')
  request = predict_pb2.PredictRequest(
      model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature_name))
  for name, value in inputs.items():
    value = np.asarray(value)
    if value.dtype.kind in ('U', 'O'):
      value = np.array([str(v).encode() if not isinstance(v, bytes) else v
                        for v in value.ravel()], dtype=object).reshape(value.shape)
    request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
  record = prediction_log_pb2.PredictionLog(
      predict_log=prediction_log_pb2.PredictLog(request=request)).SerializeToString()
  path = warmup_path(export_dir)
  tf.io.gfile.makedirs(os.path.dirname(path))
  with tf.io.TFRecordWriter(path) as writer:
    for _ in range(num):
      writer.write(record)
  return path


def read_warmup_requests(export_dir: str) -> List[object]:
  """The PredictRequests in ``export_dir``'s warm-up file ([] when there is none)."""
  from tensorflow_serving.apis import prediction_log_pb2
  path = warmup_path(export_dir)
  if not tf.io.gfile.exists(path):
    return []
  requests = []
  for record in tf.data.TFRecordDataset([path]).as_numpy_iterator():
    log = prediction_log_pb2.PredictionLog.FromString(record)
    requests.append(log.predict_log.request)
  return requests
