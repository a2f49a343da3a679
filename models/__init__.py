"""Keras/TFRS models of the two stages, the code the Trainers run (run_fn) and the user
segments of a trained model."""

# Whatever imports the models traces their Keras code with AutoGraph leaving tf_keras' own
# internals alone (models/tracing.py: the traced graphs are the same, minutes faster).
from models import tracing  # noqa: E402,F401
