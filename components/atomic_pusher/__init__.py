"""Model and segment publishing whose new versions are never half loaded (core/publish.py)."""
