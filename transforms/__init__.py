"""The data: ingestion (Beam, run by InteractionExampleGen) and the tf.Transform code of the
recommender (referenced by dotted path from the pipeline)."""
