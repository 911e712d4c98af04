"""Printing receipts.

Planted for the Cortex demo: the shell command below interpolates a path (bandit B602, a real issue in
real code), so the static analysis has something to find.
"""

import subprocess


def print_receipt(path: str) -> int:
    """Send a receipt file to the default printer."""
    return subprocess.call(f"lp {path}", shell=True)
