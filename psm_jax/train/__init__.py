"""Training: the train state and step, per-model tasks, the loop, checkpoints, the CLI."""
