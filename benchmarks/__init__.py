"""Offline benchmarks: the seed split and the reference baselines the pipeline is compared to."""
