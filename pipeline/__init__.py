"""Woonkly feed recommender: pipeline definition, configuration and command-line tools."""
