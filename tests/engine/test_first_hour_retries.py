"""Issue 18, item 6: how a step's retries compose with its workflow's, and true counts.

Each attempt of the workflow's body gives each step its own retries (as a new workflow
attempt does in Temporal, DBOS or Inngest): ``retries=2`` on both makes 3 x 3 = 9
attempts of the step. The step log shows every one with its workflow attempt and its
step attempt, the step's ``attempts`` is 9, and the run's error says so (both backends,
a real in-process worker)."""

from __future__ import annotations

import asyncio

from runyard import Context, RetryPolicy, RunStatus, Runyard
from runyard.service import shape_step_log as step_log
from tests.conftest import running_worker

QUICK = RetryPolicy(max_attempts=3, backoff_s=0.01, jitter=False)


def test_a_step_retried_in_each_workflow_attempt_reports_every_attempt(yard: Runyard) -> None:
    calls: list[int] = []

    def broken() -> None:
        calls.append(1)
        raise ConnectionError(f"boom {len(calls)}")

    @yard.workflow(retries=QUICK)
    async def doomed(ctx: Context) -> None:
        await ctx.step("first", lambda: "fine")
        await ctx.step("x", broken, retries=QUICK)

    async def main() -> None:
        async with running_worker(yard):
            run = await (await yard.start("doomed")).wait(timeout=30)
        assert run.status is RunStatus.FAILED
        assert len(calls) == 9
        assert run.error["message"] == (
            "step 'x' failed after 3 attempts (in workflow attempt 3 of 3; 9 attempts in "
            "all): boom 9"
        )
        tries = await yard.attempts(run.id)
        step_tries = [(a.workflow_attempt, a.attempt) for a in tries if a.position == 2]
        assert step_tries == [(w, s) for w in (1, 2, 3) for s in (1, 2, 3)]
        assert [a.error["message"] for a in tries if a.position == 2] == [
            f"boom {n}" for n in range(1, 10)
        ]
        body_tries = [(a.workflow_attempt, a.attempt) for a in tries if a.position == 0]
        assert body_tries == [(1, 1), (2, 2)]
        steps = await yard.steps(run.id)
        assert [(s.name, s.status, s.attempts) for s in steps] == [
            ("first", "completed", 1),
            ("x", "failed", 9),
        ]
        # The step log (GET /v1/runs/{id}/steps, `runyard runs steps`) as the server
        # shapes it: the step with its 9 attempts, each numbered in its workflow attempt.
        log = step_log(steps, tries, True, 1)
        x = next(s for s in log if s.name == "x")
        assert x.attempts == 9 and len(x.failed_attempts) == 9
        assert [(a.workflow_attempt, a.attempt) for a in x.failed_attempts] == step_tries
        body = next(s for s in log if s.kind == "workflow")
        assert [a.workflow_attempt for a in body.failed_attempts] == [1, 2]

    asyncio.run(main())


def test_a_step_that_succeeds_in_a_later_workflow_attempt_counts_all(yard: Runyard) -> None:
    calls: list[int] = []

    def wobbly() -> str:
        calls.append(1)
        if len(calls) <= 4:
            raise TimeoutError(f"call {len(calls)} timed out")
        return "through"

    @yard.workflow(retries=QUICK)
    async def patient(ctx: Context) -> str:
        return str(await ctx.step("wobbly", wobbly, retries=QUICK))

    async def main() -> None:
        async with running_worker(yard):
            h = await yard.start("patient")
            assert await h.result(timeout=30) == "through"
        assert len(calls) == 5
        [step] = await yard.steps(h.id)
        assert (step.status, step.attempts) == ("completed", 5)
        tries = [(a.position, a.workflow_attempt, a.attempt) for a in await yard.attempts(h.id)]
        assert tries == [(1, 1, 1), (1, 1, 2), (1, 1, 3), (0, 1, 1), (1, 2, 1)]

    asyncio.run(main())


def test_without_workflow_retries_the_message_is_plain(yard: Runyard) -> None:
    def broken() -> None:
        raise ValueError("nope")

    @yard.workflow
    async def once(ctx: Context) -> None:
        await ctx.step("y", broken, retries=QUICK)

    async def main() -> None:
        async with running_worker(yard):
            run = await (await yard.start("once")).wait(timeout=30)
        assert run.error["message"] == "step 'y' failed after 3 attempts: nope"
        assert [a.attempt for a in await yard.attempts(run.id)] == [1, 2, 3]
        assert (await yard.steps(run.id))[0].attempts == 3

    asyncio.run(main())
