"""Keras/TFRS models of the two stages and the code the Trainers run (run_fn)."""
