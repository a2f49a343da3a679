"""Custom TFX components of the recommender, one folder each (component, executor)."""
