"""Benchmarks of the zoo, each run as `python -m benchmarks.NAME` from the repository root (see README.md here)."""
