"""How a service is instrumented, read from its code and manifests, so its dashboards and alerts query the
metrics it really exposes.

Known libraries bring known names: prometheus-fastapi-instrumentator, starlette_exporter,
prometheus_flask_exporter, express-prom-bundle, OpenTelemetry's HTTP server metrics. A service that defines its
own metrics with prometheus_client (Python), prom-client (Node) or client_golang (Go) is read for a counter with
a status label and a histogram. When nothing is found, the usual ``http_requests_total{code}`` names are used and
the output says they were assumed, not found.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from cortex.files import regular_file, walk_files


@dataclass(frozen=True)
class Instrumentation:
    """The series a service's dashboards and alerts use, and where that knowledge came from."""

    library: str
    requests: str
    """Counter of requests (every request counted once), queried with ``rate()``."""
    duration_bucket: str
    """Histogram buckets of request duration in seconds."""
    status_label: str
    error_values: str
    """Regular expression of the status label's values that are server errors."""
    evidence: str
    """``file:line`` where it was found, or why it was assumed."""
    detected: bool = True


PROFILES: dict[str, tuple[str, str, str, str]] = {
    "prometheus_fastapi_instrumentator": (
        "http_requests_total", "http_request_duration_seconds_bucket", "status", "5.."
    ),
    "starlette_exporter": (
        "starlette_requests_total", "starlette_request_duration_seconds_bucket", "status_code", "5.."
    ),
    "prometheus_flask_exporter": (
        "flask_http_request_total", "flask_http_request_duration_seconds_bucket", "status", "5.."
    ),
    "express-prom-bundle": (
        "http_request_duration_seconds_count", "http_request_duration_seconds_bucket", "status_code", "5.."
    ),
    "opentelemetry": (
        "http_server_request_duration_seconds_count",
        "http_server_request_duration_seconds_bucket",
        "http_response_status_code",
        "5..",
    ),
}  # fmt: skip
"""Library -> (requests series, duration buckets, status label, server-error values)."""
ASSUMED = Instrumentation(
    "none detected",
    "http_requests_total",
    "http_request_duration_seconds_bucket",
    "code",
    "5..",
    "no metrics library found in the code or manifests: the usual names are assumed",
    detected=False,
)

_MARKERS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("prometheus_fastapi_instrumentator", re.compile(r"\bprometheus_fastapi_instrumentator\b")),
    ("starlette_exporter", re.compile(r"\bstarlette_exporter\b")),
    ("prometheus_flask_exporter", re.compile(r"\bprometheus_flask_exporter\b")),
    ("express-prom-bundle", re.compile(r"express-prom-bundle")),
    ("opentelemetry", re.compile(r"\bopentelemetry\b|@opentelemetry/|go\.opentelemetry\.io/otel")),
)
_STATUS = ("code", "status_code", "status")
_PY_METRIC = re.compile(r"\b(Counter|Histogram)\(\s*['\"]([a-zA-Z_:][a-zA-Z0-9_:]*)['\"][^)]*?\[([^\]]*)\]", re.DOTALL)
_JS_METRIC = re.compile(
    r"new\s+(?:\w+\.)?(Counter|Histogram)\(\s*\{[^}]*?name:\s*['\"]([a-zA-Z_:][a-zA-Z0-9_:]*)['\"][^}]*?"
    r"labelNames:\s*\[([^\]]*)\]",
    re.DOTALL,
)
_GO_METRIC = re.compile(
    r"New(Counter|Histogram)Vec\(\s*prometheus\.\w+Opts\{[^}]*?Name:\s*\"([a-zA-Z_:][a-zA-Z0-9_:]*)\"[^}]*\}\s*,"
    r"\s*\[\]string\{([^}]*)\}",
    re.DOTALL,
)
_SOURCES = {".py": _PY_METRIC, ".js": _JS_METRIC, ".mjs": _JS_METRIC, ".ts": _JS_METRIC, ".go": _GO_METRIC}
_MANIFESTS = ("pyproject.toml", "package.json", "go.mod")


def _line(text: str, at: int) -> int:
    return text.count("\n", 0, at) + 1


def _own_metrics(root: Path) -> Instrumentation | None:
    """A service's own counter with a status label and its own histogram, from its code."""
    counter: tuple[str, str, str] | None = None
    histogram: str | None = None
    for path in walk_files(root):
        pattern = _SOURCES.get(path.suffix)
        if pattern is None or "test" in path.relative_to(root).parts[0]:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for m in pattern.finditer(text):
            kind, name = m.group(1), m.group(2)
            labels = re.findall(r"['\"]([a-zA-Z_][a-zA-Z0-9_]*)['\"]", m.group(3))
            where = f"{path.relative_to(root)}:{_line(text, m.start())}"
            status = next((s for s in _STATUS if s in labels), None)
            if kind == "Counter" and status and counter is None:
                python_total = path.suffix == ".py" and not name.endswith("_total")
                counter = (name + "_total" if python_total else name, status, where)
            elif kind == "Histogram" and histogram is None:
                histogram = name + "_bucket"
    if counter is None:
        return None
    return Instrumentation(
        "own metrics", counter[0], histogram or ASSUMED.duration_bucket, counter[1], "5..", counter[2]
    )


def detect(root: Path) -> Instrumentation:
    """How the service in ``root`` is instrumented (see the module's docstring)."""
    for path in [root / m for m in _MANIFESTS if regular_file(root / m)] + list(walk_files(root)):
        if path.suffix not in (".py", ".js", ".mjs", ".ts", ".go", ".toml", ".json", ".mod", ".txt"):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for library, marker in _MARKERS:
            m = marker.search(text)
            if m:
                series = PROFILES[library]
                return Instrumentation(library, *series, f"{path.relative_to(root)}:{_line(text, m.start())}")
    return _own_metrics(root) or ASSUMED
