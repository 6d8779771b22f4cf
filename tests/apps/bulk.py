"""A workflow for runs of many inputs: one checkpointed step per input."""

from __future__ import annotations

from runyard import Context, Runyard

yard = Runyard()


async def _double(x: int) -> int:
    return 2 * x


@yard.workflow
async def double(ctx: Context, x: int) -> int:
    """Twice ``x``, in a step."""
    doubled: int = await ctx.step("double", _double, x)
    return doubled
