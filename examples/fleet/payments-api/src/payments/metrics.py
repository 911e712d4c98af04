"""The API's own Prometheus metrics: requests by route and status code, and their latency."""

from prometheus_client import Counter, Histogram

REQUESTS = Counter("payments_requests", "Requests served, by route and status code.", ["route", "status_code"])
LATENCY = Histogram("payments_request_seconds", "Time to serve a request.", ["route"])


def observe(route: str, status_code: int, seconds: float) -> None:
    """Count one request and its duration."""
    REQUESTS.labels(route=route, status_code=str(status_code)).inc()
    LATENCY.labels(route=route).observe(seconds)
