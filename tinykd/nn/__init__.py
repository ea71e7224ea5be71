"""Layers of the student networks: each a ``*_forward`` / ``*_backward`` pair of plain functions."""
