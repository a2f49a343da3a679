"""What the Trainers record while fitting: per-epoch mean losses and TensorBoard logs.

A TFRS model's ``train_step`` returns its losses as plain tensors, not Keras metrics, so the
``loss`` Keras keeps for an epoch is the loss of that epoch's last batch. ``EpochMeanLoss``
averages the batch losses over each epoch and adds them to the epoch's logs as
``<name>_mean`` (``loss_mean``, ``total_loss_mean``, ``val_loss_mean``...), beside Keras' own
values, so the History, TensorBoard and the run report all see them.
"""
from typing import Dict, List, Optional

import tf_keras as keras

LOSS_KEYS = ('loss', 'total_loss', 'regularization_loss')
MEAN_SUFFIX = '_mean'


class EpochMeanLoss(keras.callbacks.Callback):
  """Adds each loss's mean over the epoch's batches to the epoch's logs.

  Validation batches (``on_test_batch_end`` during ``fit``) are averaged the same way, as
  ``val_<name>_mean``. Place it before the callbacks that should see the means (TensorBoard);
  Keras' own History comes last and records them.

  Args:
    keys: the loss names to average; names absent from a batch's logs are skipped.
  """

  def __init__(self, keys=LOSS_KEYS):
    super().__init__()
    self.keys = tuple(keys)
    self.history: Dict[str, List[float]] = {}
    self._sums: Dict[str, List[float]] = {}

  def _add(self, prefix: str, logs: Optional[Dict[str, float]]) -> None:
    for key in self.keys:
      if logs and key in logs:
        total = self._sums.setdefault(prefix + key, [0.0, 0])
        total[0] += float(logs[key])
        total[1] += 1

  def on_epoch_begin(self, epoch, logs=None):
    self._sums = {}

  def on_train_batch_end(self, batch, logs=None):
    self._add('', logs)

  def on_test_begin(self, logs=None):
    self._sums = {k: v for k, v in self._sums.items() if not k.startswith('val_')}

  def on_test_batch_end(self, batch, logs=None):
    self._add('val_', logs)

  def on_epoch_end(self, epoch, logs=None):
    means = {name + MEAN_SUFFIX: total / count for name, (total, count) in self._sums.items()
             if count}
    if logs is not None:
      logs.update(means)
    for name, value in means.items():
      self.history.setdefault(name, []).append(value)


def training_callbacks(fn_args) -> List[keras.callbacks.Callback]:
  """The callbacks both Trainers add: epoch mean losses, then TensorBoard logs.

  TensorBoard logs go to the Trainer's ``model_run_dir`` (what Vertex TensorBoard and a local
  ``tensorboard --logdir`` read); a caller without one (benchmarks' stand-in FnArgs) gets none.
  """
  callbacks: List[keras.callbacks.Callback] = [EpochMeanLoss()]
  log_dir = getattr(fn_args, 'model_run_dir', None)
  if log_dir:
    callbacks.append(keras.callbacks.TensorBoard(log_dir=log_dir, write_graph=False,
                                                 profile_batch=0))
  return callbacks
