"""Benchmarks of the app: audio latency, key to sound end to end, a soak run, real photos."""
