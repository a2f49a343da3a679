"""The bottom layer: names, configuration, metrics and artifact helpers every other layer
shares. It imports nothing of this project's above it (models, transforms, components,
pipeline), so that a change up there never reaches the code the Transform and Trainers run.
"""
