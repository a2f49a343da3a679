"""run_summary: run.log keeps every component's lines while the console shows progress."""
import io
import json
import logging
import os
import re
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


def test_run_log_of_the_shared_run_has_every_component_in_order(tiny_run):
  out, _, _ = tiny_run
  with open(os.path.join(out, 'metrics.json')) as f:
    components = list(json.load(f)['components'])
  with open(os.path.join(out, 'run.log')) as f:
    log = f.read()
  started = re.findall(r'INFO absl Component (\w+) is running\.', log)
  assert started == components  # the local runner launches them one at a time, in this order
  for node in components:
    assert f'Component {node} is finished.' in log


def test_warm_start_lines_word_both_cases():
  summary = {'warm_start': {'retrieval': {'from_version': '17', 'rows_kept': 900,
                                          'rows_new': 12},
                            'ranking': None}}
  assert run_summary.warm_start_lines(summary) == [
      'retrieval trainer: warm start from version 17 (900 embedding rows kept, 12 new)',
      'ranking trainer: trained from scratch (nothing served yet, or --no-warm-start)']
  assert run_summary.warm_start_lines({}) == []


def test_refit_lines_say_what_the_pushed_models_learnt():
  components = {'RetrievalTrainer': {'state': 'COMPLETE', 'seconds': 1.0}}
  assert run_summary.refit_lines({'refit': {'models': {}, 'seconds': 61.4},
                                  'components': components}) == [
      'refit: the models to push learnt train + eval, starting from the judged ones (61 s)']
  assert run_summary.refit_lines({'refit': None, 'components': components}) == [
      'refit: off (--no-refit): the models to push are the judged ones']
  assert run_summary.refit_lines({'components': components}) == []  # written before refits
