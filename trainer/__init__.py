"""EarSight trainer: audio-description datasets, MT-Net, two-stage training, evaluation."""
