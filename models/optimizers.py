"""Adam whose sparse updates touch only the rows a batch looked up (lazy Adam).

Keras Adam, given the sparse gradient of an embedding table, still decays the moments of
every row and moves every row at every step, so a step costs as much as the table and a
training epoch grows as interactions x catalogue (`python -m benchmarks.optimizer_step`
measures it; benchmarks/SCALE.md has the figures). Lazy Adam keeps a row's moments as of
the last batch that looked it up and moves only the looked-up rows, so a step costs the same
at any catalogue size; dense variables get plain Adam. TF Addons had
``LazyAdam`` but is no longer maintained and does not support TF 2.16's Keras optimizers.
"""
import tensorflow as tf
import tf_keras as keras


class LazyAdam(keras.optimizers.Adam):
  """Adam for dense gradients; for ``tf.IndexedSlices`` (embedding lookups), Adam on the
  looked-up rows only. Keras merges duplicate row indices before ``update_step``."""

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    if self.amsgrad:
      raise ValueError('LazyAdam does not implement amsgrad')

  def update_step(self, gradient, variable):
    if not isinstance(gradient, tf.IndexedSlices):
      return super().update_step(gradient, variable)
    dtype = variable.dtype
    lr = tf.cast(self.learning_rate, dtype)
    step = tf.cast(self.iterations + 1, dtype)
    beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
    beta_2_power = tf.pow(beta_2, step)
    alpha = lr * tf.sqrt(1 - beta_2_power) / (1 - tf.pow(beta_1, step))
    epsilon = self.epsilon * tf.sqrt(1 - beta_2_power) if self.adaptive_epsilon else self.epsilon

    index = self._index_dict[self._var_key(variable)]
    m, v = self._momentums[index], self._velocities[index]
    rows, grad = gradient.indices, gradient.values
    m_rows = beta_1 * tf.gather(m, rows) + (1 - beta_1) * grad
    v_rows = beta_2 * tf.gather(v, rows) + (1 - beta_2) * tf.square(grad)
    m.scatter_update(tf.IndexedSlices(m_rows, rows))
    v.scatter_update(tf.IndexedSlices(v_rows, rows))
    variable.scatter_sub(tf.IndexedSlices(alpha * m_rows / (tf.sqrt(v_rows) + epsilon), rows))


def adam(learning_rate: float, lazy: bool) -> keras.optimizers.Optimizer:
  """The trainers' optimizer: lazy on embedding tables, or Keras Adam everywhere."""
  return LazyAdam(learning_rate) if lazy else keras.optimizers.Adam(learning_rate)


def without_add_rewrites() -> None:
  """Turns off Grappler's arithmetic optimizer in this process before a trainer builds its
  functions.

  Its AddOpsRewrite can turn a sum into AccumulateNV2, which TensorFlow lowers to a temporary
  variable kept in the step's resource container under the node's name. The 10M
  RankingTrainer failed at its first validation call with AlreadyExistsError on such a
  variable (``ArithmeticOptimizer/AddOpsRewrite_add_3/tmp_var``, an open TensorFlow fault:
  tensorflow/tensorflow#23780), most likely left behind by a call that stopped early (Keras
  ends each pass at the end of its dataset) and met again by the next function with a node of
  that name. The rewrite saves a few additions a step; the run at stake is the whole epoch.
  """
  tf.config.optimizer.set_experimental_options({'arithmetic_optimization': False})
