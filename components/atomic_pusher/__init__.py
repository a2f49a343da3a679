"""A Pusher executor whose new versions appear all at once, or not at all."""
