"""Token helpers."""
