"""The chaos harness: run a plan while injecting faults, then verify that nothing was lost or done twice."""
