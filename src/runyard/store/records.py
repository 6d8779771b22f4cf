"""Records the store passes around: fences, checkpoints, claims, outcomes, filters, and
the conversion of rows into the models of ``runyard.models``."""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .. import jsonutil
from ..errors import InvalidInput
from ..models import Item, ItemState, Run, RunStatus, StepRecord
from .tx import Later, Row, Tx

FAR_FUTURE = 4102444800.0  # 2100-01-01: "no deadline" for a suspended item


@dataclass(frozen=True, slots=True)
class Fence:
    """Who may write about an item: the owner and the epoch it claimed with."""

    run_id: str
    idx: int
    owner: str
    epoch: int

    def params(self) -> dict[str, Any]:
        """The parameters a fenced statement matches the item with."""
        return {"run_id": self.run_id, "idx": self.idx, "owner": self.owner, "epoch": self.epoch}


@dataclass(slots=True)
class Checkpoint:
    """A durable operation's record, with the side effects that commit with it."""

    position: int
    name: str
    kind: str
    result: str | None = None  # JSON text
    error: str | None = None  # JSON text; status "failed" when set
    status: str = "completed"
    attempts: int = 1
    started_at: float | None = None
    output: tuple[str | None, str] | None = None  # (dedupe key, JSON data)
    credit: tuple[str, float] | None = None  # (action, amount)
    sync_state: str | None = None  # JSON text

    def step_columns(self) -> dict[str, Any]:
        """The columns of its ``steps`` row, but the key (run, item, iteration, position)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "status": "failed" if self.error is not None else self.status,
            "result": self.result,
            "error": self.error,
            "attempts": self.attempts,
            "started_at": self.started_at,
        }


@dataclass(frozen=True, slots=True)
class CheckpointWrite:
    """An execution's checkpoints, written with others' in one transaction (the
    arguments of a ``checkpoint_txn`` job)."""

    fence: Fence
    iteration: int
    checkpoints: Sequence[Checkpoint]


@dataclass(frozen=True, slots=True)
class Outcome:
    """An item's outcome with its last checkpoints (the arguments of a
    ``complete_item_txn`` job). ``sole``: the item is its run's only input."""

    fence: Fence
    iteration: int
    pending: Sequence[Checkpoint]
    state: ItemState
    result: str | None
    error: str | None
    sole: bool = False

    @property
    def position(self) -> int:
        """The position of its last checkpoint (0: none)."""
        return max((cp.position for cp in self.pending), default=0)


@dataclass(frozen=True, slots=True)
class NewRunParams:
    """The parameters of ``insert_run`` for a new run, and of ``insert_item`` for each of
    its inputs."""

    run: dict[str, Any]
    items: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class MergedWrite:
    """Write jobs of one function that a store makes in one call when several share a
    transaction (see ``Store.merged_writes``): ``job`` is the function they were
    submitted with; ``many`` takes the transaction and each job's arguments, in order,
    and answers what each job would have, in that order."""

    job: Callable[..., object]
    many: Callable[[Tx, Sequence[tuple[Any, ...]]], Later[list[Any]]]


class Leases(NamedTuple):
    """What a heartbeat found: the items (run id, index, epoch) its worker still owns,
    and the statuses of its runs that want it to stop (PAUSED, CANCELED) by run id."""

    owned: set[tuple[str, int, int]]
    stops: dict[str, str]


class WaitResult(NamedTuple):
    """How a wait for an event resolved: ``kind`` is ``"event"`` (``event`` then holds
    the event's id and data), ``"timeout"``, ``"run_timeout"``, ``"suspended"`` or
    ``"fenced"``."""

    kind: str
    event: tuple[str, Any] | None = None


@dataclass(slots=True)
class Claimed:
    """An item a worker now owns, with what it needs to execute it."""

    fence: Fence
    kind: str
    workflow: str
    workflow_version: str
    input: Any
    custom_data: Any
    iteration: int
    generation: int
    attempt: int
    last_position: int
    parent_idx: int | None
    deadline_at: float | None
    sync_mode: str | None
    max_results: int | None
    options: dict[str, Any]
    run_error: Any
    flow_key: str | None = None
    #: How many items the run had when this one was claimed (its inputs and map
    #: elements): an input that is its run's only item ends the run with its outcome.
    run_items: int = 0
    #: The run's timeout, seconds (its deadline_at is when it started plus this).
    timeout_s: float | None = None
    history: dict[int, StepRecord] = field(default_factory=dict)
    #: Failed attempts already recorded by position (0: the workflow's body; a step's
    #: only since the body last failed), those that were rate limited apart.
    failed_attempts: dict[int, int] = field(default_factory=dict)
    limited_attempts: dict[int, int] = field(default_factory=dict)
    #: A step's failed attempts in every attempt of the body (its true count so far).
    all_failed_attempts: dict[int, int] = field(default_factory=dict)
    sync_state: Any = None

    def timeout_message(self) -> str:
        """The error of a run that ran out of time, naming its limit."""
        limit = f" of {self.timeout_s:g} s" if self.timeout_s is not None else ""
        return f"the run exceeded its timeout{limit}"


class Claims(list[Claimed]):
    """What a claim took, the flow-control keys its scan found with due items, to claim
    from next, and ``due_in``: seconds until its scan's first parked item comes due, by
    the database's clock (negative: due, not readied yet; None: none, or no scan) (see
    :meth:`~runyard.store.base.Store.claim_txn`)."""

    def __init__(
        self, claimed: list[Claimed], flow_keys: list[str], due_in: float | None = None
    ) -> None:
        super().__init__(claimed)
        self.flow_keys = flow_keys
        self.due_in = due_in


@dataclass(frozen=True, slots=True)
class RunFilter:
    """Which runs a list or a bulk action covers."""

    ids: Sequence[str] | None = None
    workflow: str | None = None
    prefix: str | None = None
    #: HTTP-target runs whose URL starts with this (bulk actions only).
    url_prefix: str | None = None
    statuses: Sequence[str] | None = None
    task_id: str | None = None
    schedule_id: str | None = None
    mode: str | None = None
    created_after: float | None = None
    created_before: float | None = None
    all: bool = False
    #: An action on one named run: nothing changing is an error (404 / 409), not an
    #: empty answer as for a bulk selection.
    single: bool = False

    def params(self) -> dict[str, Any]:
        prefix = None
        if self.prefix is not None:
            escaped = self.prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            prefix = escaped + "%"
        return {
            "ids": list(self.ids) if self.ids is not None else None,
            "workflow": self.workflow,
            "prefix": prefix,
            "url_prefix": self.url_prefix,
            "statuses": list(self.statuses) if self.statuses else None,
            "task_id": self.task_id,
            "schedule_id": self.schedule_id,
            "mode": self.mode,
            "created_after": self.created_after,
            "created_before": self.created_before,
        }

    @property
    def empty(self) -> bool:
        return (
            not self.all
            and self.ids is None
            and not (
                self.workflow
                or self.prefix
                or self.url_prefix
                or self.statuses
                or self.task_id
                or self.schedule_id
            )
        )


def run_from_row(row: Row) -> Run:
    return Run(
        id=row["id"],
        workflow=row["workflow"],
        workflow_version=row["workflow_version"],
        mode=row["mode"],
        status=RunStatus(row["status"]),
        priority=row["priority"],
        input_count=row["input_count"],
        iteration=row["iteration"],
        result=jsonutil.loads(row["result"]),
        error=jsonutil.loads(row["error"]),
        progress=row["progress"],
        progress_message=row["progress_message"],
        credits=row["credits"],
        waiting_for=row["waiting_for"],
        task_id=row["task_id"],
        schedule_id=row["schedule_id"],
        parent_id=row["parent_id"],
        sync_mode=row["sync_mode"],
        max_results=row["max_results"],
        options=jsonutil.loads(row["options"]) or {},
        recovery_attempts=row["recovery_attempts"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        updated_at=row["updated_at"],
        not_before=row["not_before"],
        credits_by_action=jsonutil.loads(row["credits_by_action"]) or {},
        # (only get_run reads it; ``in`` on a sqlite3.Row looks at values, not keys)
        input=jsonutil.loads(row["input"]) if "input" in row.keys() else None,  # noqa: SIM118
        output_count=row["output_count"],
        truncated=bool(row["truncated"]),
    )


def item_from_row(row: Row) -> Item:
    return Item(
        run_id=row["run_id"],
        idx=row["idx"],
        kind=row["kind"],
        parent_idx=row["parent_idx"],
        name=row["name"],
        input=jsonutil.loads(row["input"]),
        custom_data=jsonutil.loads(row["custom_data"]),
        state=ItemState(row["state"]),
        result=jsonutil.loads(row["result"]),
        error=jsonutil.loads(row["error"]),
        attempt=row["attempt"],
        waiting_for=row["waiting_for"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
    )


def step_from_row(row: Row) -> StepRecord:
    return StepRecord(
        run_id=row["run_id"],
        item_idx=row["item_idx"],
        iteration=row["iteration"],
        position=row["position"],
        name=row["name"],
        kind=row["kind"],
        status=row["status"],
        result=jsonutil.loads(row["result"]),
        error=jsonutil.loads(row["error"]),
        attempts=row["attempts"],
        started_at=row["started_at"],
        completed_at=row["completed_at"],
    )


def cursor_encode(created_at: float, run_id: str) -> str:
    return f"{created_at!r}|{run_id}"


def cursor_decode(cursor: str) -> tuple[float, str]:
    """The ``(created_at, run id)`` of a cursor made by :func:`cursor_encode`; anything
    else (no run id, a time that is not a finite number) is refused, naming ``cursor``."""
    at, _, run_id = cursor.partition("|")
    try:
        created_at = float(at)
    except ValueError:
        created_at = math.nan
    if not run_id or not math.isfinite(created_at):
        raise InvalidInput(
            "cursor is not valid: give the next_cursor of a previous page",
            details=[{"field": "cursor", "error": "malformed"}],
        )
    return created_at, run_id


#: What a runs list may be sorted by; ``created_at`` (the default) walks an index.
RUN_SORTS = ("created_at", "started_at", "finished_at", "status")
_SORTED_PREFIX = "s."


class SortKey(NamedTuple):
    """Where a run stands in a list sorted by something other than ``created_at``: the
    status (sort by status), the time (started_at, finished_at; infinity while not yet
    set), then creation time and id, which make the order total."""

    text: str
    num: float
    created_at: float
    run_id: str


def sort_key(run: Run, sort: str) -> SortKey:
    num = {"started_at": run.started_at, "finished_at": run.finished_at}.get(sort, 0.0)
    text = str(run.status.value if isinstance(run.status, RunStatus) else run.status)
    return SortKey(
        text if sort == "status" else "",
        math.inf if num is None else num,
        run.created_at,
        run.id,
    )


def sorted_cursor_encode(sort: str, order: str, key: SortKey) -> str:
    """The cursor of a page sorted by ``sort``: the sort and order it belongs to, and the
    whole sort key of the last run given."""
    raw = jsonutil.dumps([sort, order, key.text, repr(key.num), repr(key.created_at), key.run_id])
    return _SORTED_PREFIX + base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def sorted_cursor_decode(cursor: str, sort: str, order: str) -> SortKey:
    """The sort key in a cursor made by :func:`sorted_cursor_encode` for this ``sort``
    and ``order``; any other cursor is refused, naming ``cursor``."""
    refused = InvalidInput(
        f"cursor is not valid for sort={sort}, order={order}: give the next_cursor of a "
        "previous page of the same list",
        details=[{"field": "cursor", "error": "malformed, or of another sort or order"}],
    )
    body = cursor.removeprefix(_SORTED_PREFIX)
    if body == cursor:
        raise refused
    try:
        decoded = jsonutil.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode())
        given_sort, given_order, text, num, at, run_id = decoded
        key = SortKey(str(text), float(num), float(at), str(run_id))
    except (ValueError, TypeError, UnicodeDecodeError):
        raise refused from None
    if (given_sort, given_order) != (sort, order) or not key.run_id:
        raise refused
    if math.isnan(key.num) or not math.isfinite(key.created_at):
        raise refused
    return key
