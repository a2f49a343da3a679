"""run_summary without a pipeline: run.log keeps every component's lines while the console
shows progress."""
import io
import logging
import time

import tensorflow as tf
from absl import logging as absl_logging

from pipeline import run_summary


def _lines(path):
  with open(path) as f:
    return [line.rstrip('\n').split(' ', 4)[-1] for line in f if line.strip()]


def test_run_log_keeps_absl_info_after_a_savedmodel_export(tmp_path):
  log = tmp_path / 'out' / 'run.log'
  console = io.StringIO()
  root_handlers = list(logging.getLogger().handlers)
  with run_summary.progress_printer(str(log), str(tmp_path / 'none.sqlite'), stream=console):
    absl_logging.info('Component Transform is running.')
    # What the Transform and the Trainers do: TensorFlow's SavedModel export reads absl's
    # verbosity and sets it back, which used to pin the 'absl' logger at WARNING.
    tf.saved_model.save(tf.Module(), str(tmp_path / 'model'))
    absl_logging.info('Component Evaluator is running.')
    logging.getLogger('apache_beam').info('a Beam line')
    absl_logging.info('Model published')
  lines = _lines(log)
  expected = ['Component Transform is running.', 'Component Evaluator is running.',
              'a Beam line', 'Model published']
  assert [line for line in lines if line in expected] == expected  # all of them, in order
  assert 'Model published' not in console.getvalue()  # the console has progress lines only
  assert logging.getLogger().handlers == root_handlers  # restored


def test_run_log_survives_a_library_replacing_the_root_handlers(tmp_path):
  log = tmp_path / 'run.log'
  elsewhere = io.StringIO()
  with run_summary.progress_printer(str(log), str(tmp_path / 'none.sqlite'),
                                    stream=io.StringIO()):
    absl_logging.info('before the swap')
    file_handler = logging.getLogger().handlers[0]
    logging.getLogger().handlers = [logging.StreamHandler(elsewhere)]  # as a library might
    deadline = time.time() + 10
    while file_handler not in logging.getLogger().handlers and time.time() < deadline:
      time.sleep(0.1)  # the progress watcher polls every 2 s
    absl_logging.info('after the swap')
  assert [line for line in _lines(log) if 'the swap' in line] == ['before the swap',
                                                                   'after the swap']
