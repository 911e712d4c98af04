"""The optional online OSV lookup, against a local HTTP server that speaks the osv.dev protocol and serves real
records (the bundled ones), and its fallback when the API does not answer."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from cortex.toolset.security import BUNDLED

from .jsonhttp import JSONHandler
from .test_security import _run

pytestmark = pytest.mark.timeout(60)


class OsvServer:
    """``POST /v1/querybatch`` and ``GET /v1/vulns/{id}`` over a directory of OSV records. Like osv.dev it answers
    each query with ids only; unlike it, it does not check the version (the audit evaluates ranges itself)."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.records = {r["id"]: r for r in records}
        self.requests: list[str] = []
        self.bad_id = False
        server = self

        class Handler(JSONHandler):
            def do_POST(self) -> None:
                server.requests.append(self.path)
                results = [{"vulns": server.matching(q["package"])} for q in self.body()["queries"]]
                self.reply(200, {"results": results})

            def do_GET(self) -> None:
                server.requests.append(self.path)
                record = server.records.get(self.path.removeprefix("/v1/vulns/"))
                self.reply(200, record) if record else self.reply(404, {"message": "Bug not found"})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def matching(self, package: dict[str, str]) -> list[dict[str, str]]:
        if self.bad_id:
            return [{"id": "../../admin"}]
        return [
            {"id": r["id"], "modified": r.get("modified", "")}
            for r in self.records.values()
            if any(a["package"]["name"].lower() == package["name"].lower() for a in r.get("affected", []))
        ]


@pytest.fixture
def osv_server() -> Iterator[OsvServer]:
    records = [json.loads(p.read_text()) for p in sorted(BUNDLED.rglob("*.json"))]
    server = OsvServer(records)
    thread = threading.Thread(target=server.httpd.serve_forever, daemon=True)
    thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


def ids(out: dict[str, Any]) -> set[str]:
    return {f["id"] for f in out["findings"]}


def test_online_records_find_what_an_empty_offline_database_cannot(osv_server: OsvServer, tmp_path: Path) -> None:
    empty = tmp_path / "osv"
    empty.mkdir()
    offline = _run("security.dependency-audit", "payments-api", osv=str(empty))
    assert ids(offline) == set() and offline["online"] == {"api": None}

    online = _run("security.dependency-audit", "payments-api", osv=str(empty), osv_api=osv_server.url)
    assert ids(online) == {"PYSEC-2018-28", "PYSEC-2023-74", "PYSEC-2021-142"}  # ranges evaluated here, not there
    assert online["online"] == {
        "api": osv_server.url,
        "queried": 2,
        "records_fetched": 4,
    }  # flask and pytest: ranges, not pins
    assert "/v1/querybatch" in osv_server.requests


def test_records_held_offline_are_not_fetched_again(osv_server: OsvServer) -> None:
    out = _run("security.dependency-audit", "web-frontend", osv_api=osv_server.url)
    assert len(ids(out)) == 4 and out["online"] == {"api": osv_server.url, "queried": 3, "records_fetched": 0}
    assert osv_server.requests == ["/v1/querybatch"]


def test_an_api_that_does_not_answer_leaves_the_offline_result(tmp_path: Path) -> None:
    out = _run("security.dependency-audit", "auth-lib", osv_api="http://127.0.0.1:9")  # discard port: refused
    assert ids(out) == {"PYSEC-2022-202"}
    assert out["online"]["error"].startswith("ConnectError") and "offline database only" in out["online"]["error"]


def test_a_malformed_advisory_id_from_the_api_is_refused(osv_server: OsvServer, tmp_path: Path) -> None:
    osv_server.bad_id = True
    out = _run("security.dependency-audit", "auth-lib", osv_api=osv_server.url)
    assert "malformed advisory id '../../admin'" in out["online"]["error"]
    assert not any(r.startswith("/v1/vulns") for r in osv_server.requests)  # never put into a URL
