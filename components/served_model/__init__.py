"""ServedModel: the model of one kind that production serves now, as a run's baseline."""
