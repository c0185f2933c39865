"""The training engine: setup in one place, the training step, validation, checkpoints and logs."""
