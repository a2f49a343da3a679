"""tf.Transform code of the recommender (referenced by dotted path from the pipeline)."""
