"""Training: the trainer, distributed set-up, checkpoints and schedules."""
