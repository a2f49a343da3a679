"""Tests of the recommender (run with `make test`)."""
