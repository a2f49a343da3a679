"""ServingCheck: loads a model in a fresh process, calls its signatures, blesses or not."""
