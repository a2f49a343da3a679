"""Keras/TFRS models of the two stages, the code the Trainers run (run_fn) and the user
segments of a trained model."""
