"""Retries of a workflow's body (``@yard.workflow(retries=...)``) and of rate-limited steps.

A body that raises runs again after its policy's backoff, its completed steps replayed,
until its attempts are spent; each failed attempt is recorded at position 0, so the
count survives the worker, and the item waits out the backoff handed back, holding no
worker. ``RateLimited`` waits its ``retry_after`` without spending the step's attempts,
up to ``RetryPolicy.max_rate_limited_attempts``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from runyard import Context, NonRetryableError, RateLimited, RetryPolicy, RunStatus, Runyard
from tests.conftest import make_yard, running_worker
from tests.waiting import wait_until_async


def test_a_body_that_fails_twice_succeeds_on_its_third_attempt(yard: Runyard) -> None:
    calls = {"fetch": 0, "body": 0}

    def fetch() -> str:
        calls["fetch"] += 1
        return "page"

    @yard.workflow(retries=3)
    async def flaky_body(ctx: Context) -> str:
        page = await ctx.step("fetch", fetch)
        calls["body"] += 1
        if calls["body"] < 3:
            raise ConnectionError(f"upstream reset {calls['body']}")
        return str(await ctx.step("parse", lambda: page.upper()))

    async def main() -> None:
        async with running_worker(yard):
            h = await yard.start("flaky_body")
            assert await h.result(timeout=20) == "PAGE"
        assert calls == {"fetch": 1, "body": 3}
        steps = await yard.steps(h.id)
        assert [(s.position, s.name, s.status) for s in steps] == [
            (1, "fetch", "completed"),
            (2, "parse", "completed"),
        ]
        tries = await yard.attempts(h.id)
        assert [(a.position, a.name, a.attempt) for a in tries] == [
            (0, "flaky_body", 1),
            (0, "flaky_body", 2),
        ]
        assert [a.error["message"] for a in tries] == ["upstream reset 1", "upstream reset 2"]
        assert tries[0].error["type"] == "ConnectionError" and tries[0].error["traceback"]

    asyncio.run(main())


def test_a_body_that_always_fails_ends_failed_after_its_attempts(yard: Runyard) -> None:
    calls = 0

    @yard.workflow(retries=2)
    async def doomed(ctx: Context) -> None:
        nonlocal calls
        await ctx.step("setup", lambda: None)
        calls += 1
        raise RuntimeError(f"boom {calls}")

    async def main() -> None:
        nonlocal calls
        async with running_worker(yard):
            h = await yard.start("doomed")
            run = await h.wait(timeout=20)
            assert run.status is RunStatus.FAILED
            assert run.error["message"] == "boom 3" and run.error["type"] == "RuntimeError"
            assert calls == 3
            assert [a.attempt for a in await yard.attempts(h.id)] == [1, 2]
            # A run's own retries option overrides the workflow's.
            calls = 0
            h2 = await yard.start("doomed", retries=0)
            run2 = await h2.wait(timeout=20)
            assert run2.status is RunStatus.FAILED and run2.error["message"] == "boom 1"
            assert await yard.attempts(h2.id) == []

    asyncio.run(main())


def test_non_retryable_failures_are_not_retried(yard: Runyard) -> None:
    calls = {"body": 0, "step": 0}

    def refuse() -> None:
        calls["step"] += 1
        raise NonRetryableError("bad request")

    @yard.workflow(retries=3)
    async def final(ctx: Context, where: str) -> None:
        if where == "step":
            await ctx.step("call", refuse)
        calls["body"] += 1
        raise NonRetryableError("account closed")

    async def main() -> None:
        async with running_worker(yard):
            run = await (await yard.start("final", "body")).wait(timeout=20)
            assert run.status is RunStatus.FAILED and run.error["code"] == "non_retryable"
            assert run.error["message"] == "account closed" and calls["body"] == 1
            assert await yard.attempts(run.id) == []
            # A step that failed with NonRetryableError does not retry the body either.
            run2 = await (await yard.start("final", "step")).wait(timeout=20)
            assert run2.status is RunStatus.FAILED and run2.error["code"] == "step_failed"
            assert "bad request" in run2.error["message"]
            assert calls == {"body": 1, "step": 1}
            # Its one attempt is in the step log (the body's is not: it ran once).
            assert [(a.position, a.attempt) for a in await yard.attempts(run2.id)] == [(1, 1)]

    asyncio.run(main())


def test_a_failed_step_runs_again_with_its_retries_on_the_next_body_attempt(
    yard: Runyard,
) -> None:
    calls = 0

    def wobbly() -> str:
        nonlocal calls
        calls += 1
        if calls <= 3:
            raise TimeoutError(f"call {calls} timed out")
        return "through"

    @yard.workflow(retries=1)
    async def patient(ctx: Context) -> str:
        await ctx.step("first", lambda: "once")
        return str(await ctx.step("wobbly", wobbly))  # 2 attempts per body attempt

    async def main() -> None:
        async with running_worker(yard):
            h = await yard.start("patient")
            assert await h.result(timeout=20) == "through"
        assert calls == 4
        steps = await yard.steps(h.id)
        # 2 attempts in the body's first attempt, 2 in its second: 4 in all.
        assert [(s.name, s.status, s.attempts) for s in steps] == [
            ("first", "completed", 1),
            ("wobbly", "completed", 4),
        ]
        tries = [(a.position, a.attempt) for a in await yard.attempts(h.id)]
        assert tries == [(2, 1), (2, 2), (0, 1), (2, 1)]

    asyncio.run(main())


def test_the_attempt_count_is_stored_and_the_backoff_holds_no_worker(db_url: str) -> None:
    """The body's next attempt is due 2 s after its failure: meanwhile the only slot of
    the worker runs another run, and a worker of a fresh process (here: a fresh Runyard
    on the same database) that takes over still stops after 3 attempts in all."""
    policy = RetryPolicy(max_attempts=3, backoff_s=2.0, multiplier=1.0, jitter=False)
    bodies: list[str] = []

    def define(yard: Runyard, which: str) -> None:
        @yard.workflow(name="slow_doom", retries=policy)
        async def slow_doom(ctx: Context) -> None:
            bodies.append(which)
            raise RuntimeError(f"attempt {len(bodies)} on {which}")

        @yard.workflow(name="quick")
        async def quick(ctx: Context) -> str:
            return "done"

    first, second = make_yard(db_url), make_yard(db_url)
    define(first, "first")
    define(second, "second")

    async def main() -> None:
        async with running_worker(first, concurrency=1):
            h = await first.start("slow_doom")
            await wait_until_async(lambda: bodies, timeout=10, what="the workflow's body ran")
            t0 = time.monotonic()
            assert await (await first.start("quick")).result(timeout=5) == "done"
            assert time.monotonic() - t0 < 1.5, "the backoff held the worker's only slot"
            run = await h.get()
            assert run.status is RunStatus.RUNNING and run.waiting_for == "retry:workflow"
        assert bodies == ["first"]
        async with running_worker(second, concurrency=1):
            run = await second.wait(h.id, timeout=20)
        assert run.status is RunStatus.FAILED and run.error["message"] == "attempt 3 on second"
        assert bodies == ["first", "second", "second"]
        assert [a.attempt for a in await second.attempts(h.id)] == [1, 2]

    try:
        asyncio.run(main())
    finally:
        first.close()
        second.close()


def test_rate_limited_steps_wait_beyond_their_retries(yard: Runyard) -> None:
    calls = 0

    def limited() -> str:
        nonlocal calls
        calls += 1
        if calls <= 4:
            raise RateLimited("slow down", retry_after=0.05)
        return "served"

    @yard.workflow
    async def polite(ctx: Context) -> str:
        return str(await ctx.step("call", limited, retries=1))

    async def main() -> None:
        async with running_worker(yard):
            h = await yard.start("polite")
            assert await h.result(timeout=20) == "served"
        assert calls == 5
        tries = await yard.attempts(h.id)
        assert [(a.attempt, a.error["code"]) for a in tries] == [
            (n, "rate_limited") for n in (1, 2, 3, 4)
        ]
        assert (await yard.steps(h.id))[0].attempts == 5

    asyncio.run(main())


def test_rate_limited_attempts_are_bounded(yard: Runyard) -> None:
    calls: dict[str, int] = {"inline": 0, "handed_back": 0}

    def always_limited(which: str, retry_after: float) -> None:
        calls[which] += 1
        raise RateLimited(f"still busy ({calls[which]})", retry_after=retry_after)

    @yard.workflow
    async def hopeless(ctx: Context, which: str) -> Any:
        # A wait longer than a second hands the item back: the count of rate-limited
        # attempts is then read back from the database.
        retry_after = 0.01 if which == "inline" else 1.1
        limit = 5 if which == "inline" else 2
        policy = RetryPolicy(max_attempts=3, max_rate_limited_attempts=limit)
        return await ctx.step("call", always_limited, which, retry_after, retries=policy)

    async def main() -> None:
        async with running_worker(yard):
            for which, limit in (("inline", 5), ("handed_back", 2)):
                run = await (await yard.start("hopeless", which)).wait(timeout=20)
                assert run.status is RunStatus.FAILED and run.error["code"] == "step_failed"
                assert f"after {limit} attempts: still busy ({limit})" in run.error["message"]
                assert calls[which] == limit

    asyncio.run(main())


def test_a_body_that_raises_rate_limited_waits_and_runs_again(yard: Runyard) -> None:
    """Without any retries configured: RateLimited is retried after its retry_after."""
    calls = 0

    @yard.workflow
    async def throttled(ctx: Context) -> int:
        nonlocal calls
        await ctx.step("setup", lambda: None)
        calls += 1
        if calls < 3:
            raise RateLimited("quota", retry_after=0.05)
        return calls

    async def main() -> None:
        async with running_worker(yard):
            h = await yard.start("throttled")
            assert await h.result(timeout=20) == 3
        tries = await yard.attempts(h.id)
        assert [(a.position, a.attempt, a.error["code"]) for a in tries] == [
            (0, 1, "rate_limited"),
            (0, 2, "rate_limited"),
        ]

    asyncio.run(main())
