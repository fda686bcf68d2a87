"""Training: train states and pure train steps (more with issue 5)."""
