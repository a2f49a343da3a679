"""RetrievalEvaluator: top-k accuracy of a retrieval model over the whole catalogue, and its blessing."""
