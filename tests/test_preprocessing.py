"""preprocessing_fn through tf.Transform's Beam implementation on a few rows."""
import tempfile

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

from core import features as F
from transforms.preprocessing import preprocessing_fn

RAW_SPEC = {
    F.USER_ID: tf.io.FixedLenFeature([], tf.string),
    F.ITEM_ID: tf.io.FixedLenFeature([], tf.string),
    F.RATING: tf.io.FixedLenFeature([], tf.float32),
    'item__genres': tf.io.VarLenFeature(tf.string),
    'item__year': tf.io.VarLenFeature(tf.float32),
    'user__country': tf.io.FixedLenFeature([], tf.string),
}
ROWS = [
    {F.USER_ID: 'u1', F.ITEM_ID: '10', F.RATING: 5.0, 'item__genres': ['Action|Comedy'],
     'item__year': [1990.0], 'user__country': 'ES'},
    {F.USER_ID: 'u1', F.ITEM_ID: '20', F.RATING: 3.0, 'item__genres': ['Drama'],
     'item__year': [], 'user__country': 'ES'},
    {F.USER_ID: 'u2', F.ITEM_ID: '10', F.RATING: 1.0, 'item__genres': ['Comedy'],
     'item__year': [2000.0], 'user__country': 'FR'},
]


@pytest.fixture(scope='module')
def transformed():
  metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(RAW_SPEC))
  with tempfile.TemporaryDirectory() as tmp, tft_beam.Context(temp_dir=tmp):
    (data, _), transform_fn = (ROWS, metadata) | tft_beam.AnalyzeAndTransformDataset(
        lambda inputs: preprocessing_fn(inputs, {'numeric_buckets': 2}),
        output_record_batches=False)
    out_dir = tempfile.mkdtemp()
    _ = transform_fn | tft_beam.WriteTransformFn(out_dir)
  return data, tft.TFTransformOutput(out_dir)


def test_ids_get_vocabulary_indices(transformed):
  data, output = transformed
  users = output.vocabulary_by_name(F.vocabulary_name(F.USER_ID))
  assert sorted(users) == [b'u1', b'u2']
  assert [r[F.transformed_name(F.USER_ID)] for r in data] == [
      users.index(b'u1'), users.index(b'u1'), users.index(b'u2')]


def test_multi_valued_column_is_split_on_the_separator(transformed):
  data, output = transformed
  vocab = output.vocabulary_by_name(F.vocabulary_name('item__genres'))
  assert sorted(vocab) == [b'Action', b'Comedy', b'Drama']
  first = sorted(vocab[i] for i in data[0]['item__genres_xf'])
  assert first == [b'Action', b'Comedy']
  assert len(data[1]['item__genres_xf']) == 1


def test_numbers_are_scaled_and_missing_ones_get_the_mean(transformed):
  data, _ = transformed
  z = [r['item__year_xf'] for r in data]
  assert z[0] == pytest.approx(-1.0) and z[2] == pytest.approx(1.0)
  assert z[1] == pytest.approx(0.0)  # missing -> mean -> z-score 0
  buckets = [r['item__year_bucket_xf'] for r in data]
  assert buckets[1] == 2  # the "missing" bucket is past the 2 real ones
  assert buckets[0] != buckets[2]


def test_rating_passes_through_and_item_counts_are_stored(transformed):
  data, output = transformed
  assert [r[F.RATING_XF] for r in data] == [5.0, 3.0, 1.0]
  with tf.io.gfile.GFile(output.vocabulary_file_by_name(F.ITEM_COUNT_VOCAB)) as f:
    counts = dict(reversed(line.split()) for line in f.read().splitlines())
  assert counts == {'10': '2', '20': '1'}


def test_schema_records_embedding_sizes(transformed):
  _, output = transformed
  schema = {f.name: f for f in output.transformed_metadata.schema.feature}
  assert schema['item__year_bucket_xf'].int_domain.max == 2
  assert np.isclose(output.vocabulary_size_by_name(F.vocabulary_name(F.ITEM_ID)), 2)
