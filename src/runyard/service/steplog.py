"""A run's step log as every door shows it (``GET /v1/runs/{id}/steps``, the dashboard's
run page): each checkpoint with its failed attempts, and the attempts still retrying."""

from __future__ import annotations

from ..models import Attempt, StepRecord
from ..schemas import AttemptOut, StepOut, ts
from .core import Core
from .reading import ReadMixin


def shape_step_log(
    steps: list[StepRecord], attempts: list[Attempt], terminal: bool, iteration: int
) -> list[StepOut]:
    """Each checkpoint with its failed attempts; a step that failed and has no checkpoint
    yet (it is backing off before its next attempt) is listed as ``retrying``. The failed
    attempts of the workflow's body (position 0) are listed as kind ``workflow``:
    ``retrying`` while the run goes on, ``retried`` once it has ended (its last failure,
    if it failed, is the run's error)."""
    failed: dict[tuple[int, int], list[Attempt]] = {}
    for a in attempts:
        failed.setdefault((a.item_idx, a.position), []).append(a)
    out = []
    seen: set[tuple[int, int]] = set()
    for s in steps:
        key = (s.item_idx, s.position)
        seen.add(key)
        mine = [a for a in failed.get(key, []) if a.name == s.name]
        out.append(StepOut.of(s, mine))
    for key, tries in failed.items():
        if key in seen:
            continue
        last = tries[-1]
        body = last.position == 0
        out.append(
            StepOut(
                item=last.item_idx,
                iteration=iteration,
                position=last.position,
                name=last.name,
                kind="workflow" if body else "step",
                status="retrying" if not terminal else "retried" if body else "failed",
                error=last.error,
                attempts=len(tries),
                started_at=ts(tries[0].started_at),
                failed_attempts=[AttemptOut.of(a) for a in tries],
            )
        )
    out.sort(key=lambda s: (s.iteration, s.item, s.position))
    return out


class StepLogMixin(ReadMixin):
    """The step log of one run."""

    core: Core

    async def step_log(self, run_id: str) -> list[StepOut]:
        """The run's steps with their attempts (:func:`shape_step_log`); RunNotFound for
        an unknown run."""
        run = await self.get_run(run_id)
        steps = await self.steps(run_id)
        attempts = await self.attempts(run_id)
        return shape_step_log(steps, attempts, run.terminal, run.iteration)
