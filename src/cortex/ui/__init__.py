"""``cortex ui``: the operator's web view of runs, their findings and plans, and the catalog (``app.py``)."""
