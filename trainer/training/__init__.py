"""Training: the two stages of Algorithm 1, options and presets, plumbing, weight averaging."""
