"""Phase transitions as Grafana annotations (``CORTEX_GRAFANA_URL``): one per phase of a run, tagged ``cortex``,
the run id and the phase, so the dashboard shows where each run was when its graphs moved. Annotating never fails a
run: a Grafana that is away or refuses is counted and said in the report's notes, not retried."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx

TIMEOUT_S = 2.0


@dataclass
class Annotations:
    """Posts to ``{url}/api/annotations`` with a Bearer ``token``."""

    url: str
    token: str | None = None
    sent: int = 0
    failed: list[str] = field(default_factory=list)
    """Why each failed post failed (status or error), for the report."""

    async def phase(self, run_id: str, phase: int, name: str, at: float) -> None:
        """Annotate run ``run_id`` entering ``phase`` at ``at`` (Unix seconds)."""
        body = {
            "time": int(at * 1000),
            "tags": ["cortex", f"run:{run_id}", f"phase:{name}"],
            "text": f"Cortex run {run_id}: phase {phase} ({name})",
        }
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            async with httpx.AsyncClient(timeout=TIMEOUT_S) as client:
                answer = await client.post(f"{self.url.rstrip('/')}/api/annotations", json=body, headers=headers)
        except httpx.HTTPError as exc:
            self.failed.append(f"{name}: {type(exc).__name__}")
            return
        if answer.status_code >= 300:
            self.failed.append(f"{name}: HTTP {answer.status_code}")
        else:
            self.sent += 1
