"""Teach mode: the user's words on disk, learning them (classifier, then the voice), benchmarks."""
