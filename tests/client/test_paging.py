"""``list_runs`` lists every run (all cursor pages), on both clients, against a real server;
``page_runs`` is the one-page call."""

from __future__ import annotations

import asyncio

from mixopt.client import AsyncClient, MixoptClient


def _runs(n: int) -> list[dict]:
    return [{"mixture": {"a": i / n, "b": 1 - i / n}, "metrics": {"l": float(i)}} for i in range(n)]


def test_list_runs_returns_every_run_across_pages(live_server, admin_token):
    c = MixoptClient(live_server, admin_token)
    pid = c.create_project("many", domains=["a", "b"]).id
    ids = c.add_runs(pid, _runs(1050))
    assert [r.id for r in c.list_runs(pid)] == ids  # 1,000 a page by default: two pages
    assert [r.id for r in c.list_runs(pid, page_size=300)] == ids
    page = c.page_runs(pid, limit=3)
    assert len(page.data) == 3 and page.count == 1050 and page.next_cursor
    assert len(c.list_runs(pid, status="succeeded", page_size=400)) == 1050

    async def listed() -> list[int]:
        async with AsyncClient(live_server, admin_token) as ac:
            return [r.id for r in await ac.list_runs(pid, page_size=300)]

    assert asyncio.run(listed()) == ids
