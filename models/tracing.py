"""Two settings of how the models' Keras code is traced and exported: minutes, not results.

* **AutoGraph leaves tf_keras alone.** AutoGraph rewrites the Python source of every function
  a ``tf.function`` calls, unless a rule of its own lists the function's module. Keras 2 was
  on that list as ``keras`` (tf.keras up to TF 2.15); TFRS needs Keras 2 as the separate
  ``tf_keras`` package (TF_USE_LEGACY_KERAS), which is not, so every trace re-wrote Keras'
  own internals (``Layer.__call__``, the optimizer, the metrics): 6,600 conversions, 25 to
  30 s of the ranking Trainer on the tests' sample, most of it in its first training step,
  when its whole epoch of arithmetic takes under a second. With the rule Keras' internals are
  traced as plain Python again, as they were written to be; the ``call`` of our own layers
  and models is still converted (Keras converts subclassed layers itself). The traced graphs
  are the same: both Trainers' train and test functions have the same ops, op type by op
  type, and the feed built from the same two models scores the same.
  (The optimizer step is not XLA-compiled on a CPU: Keras uses its ``_update_step_xla``, which
  exports list among their untraced functions, only when there is a GPU.)
* **``save``: a SavedModel without Keras' layer traces.** ``tf.saved_model.save`` of a module
  that holds Keras layers also traces each layer's ``call`` for reloading it as a Keras
  object. Nothing does: the Evaluator, the feed builder, the serving checks, TF Serving and
  the CLIs call the exported signatures. Leaving the traces out makes the ranking export
  five times faster (18 s to 3.6 s on the tests' sample), its SavedModel a third smaller and
  every load of it twice as fast (7 s to 3 s); the signatures are the same functions.

models/__init__.py imports this module, so whatever imports the models (the Trainers, the
feed builder, the tests) traces with the rule.
"""
import tensorflow as tf


def keep_keras_out_of_autograph() -> None:
  """Adds ``tf_keras`` to AutoGraph's do-not-convert rules (once per process)."""
  from tensorflow.python.autograph.core import config  # no public setting for this
  rules = tuple(config.CONVERSION_RULES)
  if not any(isinstance(rule, config.DoNotConvert) and rule.matches('tf_keras')
             for rule in rules):
    config.CONVERSION_RULES = (config.DoNotConvert('tf_keras'),) + rules


def save(module: tf.Module, export_dir: str, signatures=None, options=None) -> None:
  """``tf.saved_model.save`` without the Keras layer traces nothing loads (module docstring)."""
  from tf_keras.src.saving.legacy.saved_model import utils as keras_saving  # no public switch
  with keras_saving.keras_option_scope(save_traces=False):
    tf.saved_model.save(module, export_dir, signatures=signatures, options=options)


keep_keras_out_of_autograph()
