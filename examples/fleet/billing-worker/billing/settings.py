"""Settings of the billing worker.

Planted for the Cortex demo: the token below has the shape of a GitHub personal access token (it is not a real
one), left here so the secret scanner has something to find next to an unparsable manifest.
"""

GITHUB_TOKEN = "ghp_0123456789abcdefghijklmnopqrstuvwxyz"
STATEMENT_DAY = 1
