"""Optional online OSV lookup (https://osv.dev API, or any server speaking its protocol).

Off by default: the audit needs no network. When ``CORTEX_OSV_API`` names an API base URL, the audit asks
``POST /v1/querybatch`` which advisories concern each pinned package version, fetches the full record of every id
it does not already hold with ``GET /v1/vulns/{id}``, and evaluates the ranges itself, exactly as for the offline
database. An API that does not answer leaves the offline result standing and says so in the task output.
"""

from __future__ import annotations

import re
from typing import Any

import httpx

BATCH = 1000
"""Queries per ``querybatch`` request (the limit osv.dev documents)."""
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
"""What an advisory id looks like; anything else from the API is refused before it goes into a URL."""


async def fetch_records(
    api: str, packages: list[tuple[str, str, str]], known: set[str], *, timeout_s: float = 20.0
) -> list[dict[str, Any]]:
    """Full OSV records for the advisories the API lists for ``packages`` ((ecosystem, name, version) triples),
    except the ids in ``known``. Raises ``httpx.HTTPError`` when the API fails."""
    ids: set[str] = set()
    async with httpx.AsyncClient(base_url=api.rstrip("/"), timeout=timeout_s) as http:
        for start in range(0, len(packages), BATCH):
            chunk = packages[start : start + BATCH]
            queries = [{"package": {"ecosystem": e, "name": n}, "version": v} for e, n, v in chunk]
            reply = await http.post("/v1/querybatch", json={"queries": queries})
            reply.raise_for_status()
            for result in reply.json().get("results", []):
                ids.update(v["id"] for v in result.get("vulns", []) if isinstance(v, dict) and "id" in v)
        records = []
        for vuln_id in sorted(ids - known):
            if not _ID.match(vuln_id):
                raise httpx.DecodingError(f"the OSV API returned a malformed advisory id {vuln_id!r}")
            reply = await http.get(f"/v1/vulns/{vuln_id}")
            reply.raise_for_status()
            records.append(reply.json())
    return records
