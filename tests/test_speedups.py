"""What makes the runs and the tools faster without changing their results."""
import os

import numpy as np
import tensorflow as tf
import tf_keras as keras


from models import tracing
from pipeline import component_processes, recommend


class _Scorer(tf.Module):
  """A module holding a Keras model already called (as the Trainers' serving modules do),
  exported through one signature."""

  def __init__(self):
    super().__init__()
    self.model = keras.Sequential([keras.layers.Dense(2, kernel_initializer='ones')])
    self.model(tf.zeros([1, 3]))

  @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name='x')])
  def score(self, x):
    return {'scores': self.model(x)}


def _export(path, save=tracing.save):
  module = _Scorer()
  save(module, path, signatures={'serving_default': module.score.get_concrete_function()})
  return module


def _functions(path):
  from tensorflow.core.protobuf import saved_model_pb2
  proto = saved_model_pb2.SavedModel()
  with open(os.path.join(path, 'saved_model.pb'), 'rb') as f:
    proto.ParseFromString(f.read())
  return [f.signature.name for f in proto.meta_graphs[0].graph_def.library.function]


def test_autograph_leaves_tf_keras_alone_once_the_models_are_imported():
  from tensorflow.python.autograph.impl import conversion
  assert conversion.is_allowlisted(keras.layers.Dense.call)
  tracing.keep_keras_out_of_autograph()  # idempotent
  from tensorflow.python.autograph.core import config
  assert sum(isinstance(rule, config.DoNotConvert) and rule.matches('tf_keras')
             for rule in config.CONVERSION_RULES) == 1
  # Our own layers are still converted (Keras converts a subclassed layer's call itself):
  # Python control flow on a tensor inside one works in a tf.function.

  class Clip(keras.layers.Layer):
    def call(self, x):
      if tf.reduce_sum(x) > 0:
        return x
      return -x

  layer = Clip()
  assert tf.function(layer)(tf.constant([-1.0, -2.0])).numpy().tolist() == [1.0, 2.0]


def test_an_export_without_layer_traces_answers_as_the_module_does(tmp_path):
  path = str(tmp_path / 'model')
  module = _export(path)
  x = tf.constant([[1.0, 2.0, 3.0]])
  loaded = tf.saved_model.load(path)
  np.testing.assert_allclose(loaded.signatures['serving_default'](x=x)['scores'].numpy(),
                             module.score(x)['scores'].numpy())
  assert not [name for name in _functions(path) if 'layer_call' in name]
  # What it leaves out: the layers' own functions, which a plain export traces and saves.
  plain = str(tmp_path / 'plain')
  _export(plain, save=tf.saved_model.save)
  assert [name for name in _functions(plain) if 'layer_call' in name]


def test_a_pushed_version_is_loaded_once_and_a_rewritten_one_again(tmp_path):
  path = str(tmp_path / 'model')
  _export(path)
  first = recommend.load(path)
  assert recommend.load(path) is first
  os.remove(os.path.join(path, 'saved_model.pb'))
  _export(path)
  os.utime(os.path.join(path, 'saved_model.pb'), ns=(1, 1))  # another file, whatever the clock
  assert recommend.load(path) is not first


def test_the_local_runner_builds_no_tfx_sdist_and_restores_tfx_after(monkeypatch):
  from tfx.utils import dependency_utils

  def build():
    raise AssertionError('the local runner built an sdist of TFX')

  monkeypatch.setattr(dependency_utils, 'build_ephemeral_package', build)
  args = ['--runner=DirectRunner', '--direct_running_mode=in_memory']
  with component_processes.local_beam_dependencies():
    assert dependency_utils.make_beam_dependency_flags(list(args)) == args
  try:
    dependency_utils.make_beam_dependency_flags(list(args))
  except AssertionError as e:
    assert 'sdist' in str(e)
  else:
    raise AssertionError('TFX\'s own dependency flags were not restored')
