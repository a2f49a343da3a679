"""AnomalyGate: stops the run before training when the ExampleValidator found anomalies."""
