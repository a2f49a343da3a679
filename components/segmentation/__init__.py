"""UserSegmenter: user segments found in the retrieval model's user embeddings, described by what they engage with."""
