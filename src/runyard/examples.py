"""Example workflows bundled with Runyard: ``runyard worker runyard.examples:yard``.

* ``enrich_companies``: a batch enrichment — many inputs, a fan-out per company,
  outputs, progress and credits.
* ``flaky_fetch``: a step that fails at random and is retried with backoff.
* ``approval``: waits (durably, holding no worker) for an approval event.
* ``sync_feed``: an incremental sync: each iteration emits only records not seen before.

They do their work locally (no network), so they run anywhere.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from typing import Any

from pydantic import BaseModel, Field

from . import Context, FlowControl, Runyard

yard = Runyard()


class Company(BaseModel):
    domain: str = Field(min_length=3, pattern=r"^[a-z0-9.-]+\.[a-z]{2,}$")


def _score(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:4], 16) % 100


async def _lookup_company(domain: str) -> dict[str, Any]:
    await asyncio.sleep(0.05)  # an upstream API call
    name = domain.split(".")[0].replace("-", " ").title()
    return {"name": name, "people": [f"{p}@{domain}" for p in ("ceo", "cto", "sales")]}


async def _lookup_person(email: str) -> dict[str, Any]:
    await asyncio.sleep(0.02)
    return {"email": email, "seniority": _score(email)}


@yard.workflow(
    retries=3,
    timeout=600,
    flow_control=FlowControl(key="company-api", rate=20, period=1, parallelism=8),
)
async def enrich_companies(ctx: Context, company: Company) -> dict[str, Any]:
    """Enrich one company (give many as `inputs`): profile, people, score."""
    page = await ctx.step("lookup", _lookup_company, company.domain)
    await ctx.charge("company_lookup", 1)
    await ctx.progress(0.3, "company found")
    people = await ctx.map("people", _lookup_person, page["people"], concurrency=2)
    await ctx.charge("person_lookup", len(people))
    record = {
        "domain": company.domain,
        "name": page["name"],
        "score": _score(company.domain),
        "people": len(people),
    }
    await ctx.emit(record, key=company.domain)
    await ctx.progress(1.0, "done")
    return record


def _unreliable(url: str, fail_rate: float) -> dict[str, Any]:
    if random.random() < fail_rate:
        raise ConnectionError(f"{url}: connection reset")
    return {"url": url, "status": 200}


@yard.workflow(retries=5)
def flaky_fetch(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Fetch a URL that fails now and then; the step is retried with backoff."""
    url = str(params.get("url", "https://example.com"))
    fail_rate = float(params.get("fail_rate", 0.5))
    return dict(ctx.step("fetch", _unreliable, url, fail_rate))


class Expense(BaseModel):
    amount: float = Field(gt=0)
    reason: str


@yard.workflow
async def approval(ctx: Context, expense: Expense) -> dict[str, Any]:
    """Wait for `approve:<run id>` (notify it with {"approved": true}); expire after a day."""
    await ctx.step("notify_manager", lambda: {"sent": True})
    decision = await ctx.wait_for_event("decision", f"approve:{ctx.run_id}", timeout=86400)
    approved = bool(decision.data and decision.data.get("approved"))
    if approved:
        await ctx.step("pay", lambda: {"paid": expense.amount})
    return {"approved": approved, "timed_out": decision.timed_out, "amount": expense.amount}


@yard.workflow
async def sync_feed(ctx: Context, feed: dict[str, Any] | None = None) -> dict[str, Any]:
    """Incremental sync of a feed that grows by 5 entries between iterations: continue
    the run to fetch only what is new (at most `max_results` per iteration)."""
    last = int(ctx.sync.state or 0)
    newest = last + 5
    limit = ctx.sync.max_results or 100
    emitted = 0
    for n in range(last + 1, min(newest, last + limit) + 1):
        await ctx.emit({"entry": n}, key=f"entry-{n}")
        emitted += 1
    await ctx.sync.save(last + emitted)
    return {"iteration": ctx.iteration, "new_entries": emitted, "cursor": last + emitted}
