"""Settings of the payments API.

Planted for the Cortex demo: the key below is the documented AWS example key (not a real credential), left
here so the secret scanner has something to find.
"""

AWS_ACCESS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
REGION = "eu-west-1"
