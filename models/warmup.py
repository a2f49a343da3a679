"""TF Serving warm-up requests: ``<export_dir>/assets.extra/tf_serving_warmup_requests``.

TF Serving replays these requests when it loads a model version, before the version takes
traffic, so the first real requests do not pay for graph initialisation (table loading,
kernel selection). The file is a TFRecord of ``PredictionLog`` protos, each holding a
``PredictRequest`` for one signature. TF Serving reads at most 1,000 records.

    write_warmup_requests(export_dir, 'recommend', {'user_id': np.array(['1', '2'])})
    write_warmup(export_dir, {'recommend': {...}, 'serving_default': {...}})  # several

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
  """Warm-up requests for one signature (``write_warmup`` for several)."""
  return write_warmup(export_dir, {signature_name: inputs}, num=num, model_name=model_name)


def write_warmup(export_dir: str, requests: Dict[str, Dict[str, np.ndarray]], num: int = 1,
                 model_name: str = '') -> str:
  """Writes ``num`` PredictRequests per signature; returns the file path.

  Args:
    export_dir: the SavedModel folder (holding saved_model.pb).
    requests: signature name ('recommend', 'retrieve', 'rank', 'serving_default', ...) ->
      input name -> array with the batch dimension first (all the same batch size within a
      request); str and bytes arrays become DT_STRING tensors. Every signature a client may
      call should have one, so that none pays for its first call.
    num: records per signature (TF Serving runs each once; at most 1,000 in all).
    model_name: optional ModelSpec.name (TF Serving does not need it for warm-up).
  """
  from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2
  if not requests:
    raise ValueError('requests must name at least one signature')
  if not 1 <= num * len(requests) <= MAX_RECORDS:
    raise ValueError(f'{num} records for each of {len(requests)} signatures: the total must '
                     f'be in 1..{MAX_RECORDS}')
  if not tf.io.gfile.exists(os.path.join(export_dir, 'saved_model.pb')):
    raise ValueError(f'{export_dir} holds no saved_model.pb; save the model first')
  records = []
  for signature_name, inputs in requests.items():
    if not inputs:
      raise ValueError(f'{signature_name}: inputs must name at least one input tensor')
    sizes = {name: len(np.asarray(value)) for name, value in inputs.items()}
    if len(set(sizes.values())) != 1:
      raise ValueError(f'{signature_name}: inputs have different batch sizes: {sizes}')
    request = predict_pb2.PredictRequest(
        model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature_name))
    for name, value in inputs.items():
      value = np.asarray(value)
      if value.dtype.kind in ('U', 'O', 'S'):
        value = np.array([str(v).encode() if not isinstance(v, bytes) else v
                          for v in value.ravel()], dtype=object).reshape(value.shape)
      request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    records.append(prediction_log_pb2.PredictionLog(
        predict_log=prediction_log_pb2.PredictLog(request=request)).SerializeToString())
  path = warmup_path(export_dir)
  tf.io.gfile.makedirs(os.path.dirname(path))
  with tf.io.TFRecordWriter(path) as writer:
    for record in records:
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
