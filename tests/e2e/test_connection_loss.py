"""PostgreSQL connections killed under load: the store reconnects, nothing is lost, no
step runs twice (RELIABILITY.md rule 9). PostgreSQL only: SQLite has no connection to lose."""

from __future__ import annotations

import asyncio
import collections
import random

import psycopg

from runyard import Context, RunStatus
from tests.conftest import PG_ADMIN_URL, make_yard, running_worker


def test_killed_connections_lose_nothing(pg_db_url: str) -> None:
    pg_url = pg_db_url
    seed = random.randrange(1_000_000)
    print(f"seed={seed}")
    rng = random.Random(seed)
    yard = make_yard(pg_url, db_retry_s=30.0)
    executions: collections.Counter[tuple[str, str]] = collections.Counter()

    async def work(name: str) -> int:
        await asyncio.sleep(rng.uniform(0, 0.02))
        return len(name)

    @yard.workflow
    async def three(ctx: Context, n: int) -> int:
        total = 0
        for name in ("a", "b", "c"):
            executions[(ctx.run_id, name)] += 1
            total += await ctx.step(name, work, name)
        return total + n

    dbname = pg_url.rsplit("/", 1)[1]

    def kill_connections() -> int:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            rows = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND application_name LIKE 'runyard%%'",
                (dbname,),
            ).fetchall()
        return len(rows)

    async def main() -> None:
        async with running_worker(yard, concurrency=8):
            handles = [await yard.start("three", i) for i in range(60)]
            killed = 0
            for _ in range(10):
                await asyncio.sleep(0.3)
                killed += await asyncio.to_thread(kill_connections)
            runs = [await h.wait(timeout=60) for h in handles]
        assert killed > 0
        assert all(r.status is RunStatus.SUCCEEDED for r in runs)
        assert [r.result for r in runs] == [3 + i for i in range(60)]
        for h in handles:
            steps = await yard.steps(h.id)
            assert [s.name for s in steps] == ["a", "b", "c"]

    try:
        asyncio.run(main())
    finally:
        yard.close()
    # A lost connection makes the store retry the write, not the step: every step ran
    # exactly once.
    assert len(executions) == 180 and set(executions.values()) == {1}
