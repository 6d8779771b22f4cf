"""``runyard schedules``: cron and one-off fires of a workflow or a task, through the HTTP
API (``ls``, ``show``, ``create``, ``update``, ``pause``, ``resume``, ``delete``,
``trigger``, ``backfill``)."""

from __future__ import annotations

from typing import Any

import typer

from ..client import ScheduleChanges, ScheduleOptions
from ..schedule_schemas import ScheduleOut
from . import output
from .common import ApiKeyOption, JsonOption, UrlOption, make_client, parse_json

app = typer.Typer(
    help="Schedules: a workflow or task fired on a cron or once at a time.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

OVERLAPS = ("skip", "buffer_one", "buffer_all", "cancel_other", "allow_all")

CronOption = typer.Option(
    None, "--cron", help="5 fields (0 9 * * 1-5), or 6 with seconds first (*/10 * * * * *)"
)
AtOption = typer.Option(None, "--at", help="A one-off fire time, ISO 8601 (no zone: UTC)")
TimezoneOption = typer.Option(None, "--timezone", "--tz", help="IANA name (default UTC)")
OverlapOption = typer.Option(
    None, "--overlap", help="When the previous run still goes: " + ", ".join(OVERLAPS)
)
CatchupOption = typer.Option(
    None, "--catchup-window", help="Seconds (>= 10): missed fires younger than this still run"
)
OptionsOption = typer.Option(
    None, "--options", help='Run options as JSON, e.g. {"retries": 2, "timeout": 600}'
)
RemainingOption = typer.Option(None, "--remaining-actions", help="Stop after this many fires")
JitterOption = typer.Option(None, "--jitter", help="Delay each fire by up to this many seconds")
PauseOnFailureOption = typer.Option(
    None, "--pause-on-failure/--no-pause-on-failure", help="Pause when a run fails"
)


def _overlap(value: str | None) -> Any:
    if value is not None and value not in OVERLAPS:
        raise typer.BadParameter(f"must be one of {', '.join(OVERLAPS)}", param_hint="--overlap")
    return value


def _settings(
    out: ScheduleChanges | ScheduleOptions,
    *,
    task_id: str | None,
    timezone: str | None,
    options: str | None,
    overlap: str | None,
    catchup_window: float | None,
    pause_on_failure: bool | None,
    remaining_actions: int | None,
    jitter: float | None,
) -> None:
    """The settings given on the command line, into ``out`` (the others left out)."""
    run_options = parse_json(options, "--options")
    if run_options is not None and not isinstance(run_options, dict):
        raise typer.BadParameter("must be a JSON object", param_hint="--options")
    if task_id is not None:
        out["task_id"] = task_id
    if timezone is not None:
        out["timezone"] = timezone
    if run_options is not None:
        out["options"] = run_options
    if overlap is not None:
        out["overlap"] = _overlap(overlap)
    if catchup_window is not None:
        out["catchup_window"] = catchup_window
    if pause_on_failure is not None:
        out["pause_on_failure"] = pause_on_failure
    if remaining_actions is not None:
        out["remaining_actions"] = remaining_actions
    if jitter is not None:
        out["jitter"] = jitter


def _when_cron(s: ScheduleOut) -> str:
    if s.cron:
        return f"{s.cron} ({s.timezone})"
    return f"at {output.when(s.at)}"


def _state(s: ScheduleOut) -> str:
    return "[yellow]paused[/yellow]" if s.paused else "[green]active[/green]"


def _show(s: ScheduleOut, as_json: bool) -> None:
    if as_json:
        output.print_json(s)
        return
    pairs = [
        ("id", s.id),
        ("state", _state(s) + (f" ({output.short(s.note, 200)})" if s.note else "")),
        ("target", f"task {s.task_id}" if s.task_id else f"workflow {s.workflow}"),
        ("when", output.short(_when_cron(s), 200)),
        ("description", output.short(s.description, 200)),
        ("input", output.short(s.input, 200)),
        ("options", output.short(s.options or None, 200)),
        ("overlap", s.overlap),
        ("catch-up window", f"{s.catchup_window:g} s"),
        ("pause on failure", "yes" if s.pause_on_failure else "no"),
        ("remaining actions", "-" if s.remaining_actions is None else str(s.remaining_actions)),
        ("jitter", f"{s.jitter:g} s"),
        ("next fire", output.when(s.next_fire_at)),
        ("created", output.when(s.created_at)),
        ("updated", output.when(s.updated_at)),
    ]
    if s.counters is not None:
        c = s.counters
        pairs.append(("fires", f"{c.fired} fired, {c.skipped} skipped, {c.failed} failed"))
    output.fields(pairs)
    if s.next_fires:
        output.table(["next fires"], ([output.when(t)] for t in s.next_fires))
    if s.recent_fires:
        output.table(
            ["fired at", "run", "outcome"],
            (
                [output.when(f.fire_at), f.run_id or "-", output.status(f.outcome)]
                for f in s.recent_fires
            ),
        )


@app.command("ls")
def ls(
    limit: int = typer.Option(50, "--limit", "-n", min=1, max=100),
    cursor: str = typer.Option(None, "--cursor"),
    as_json: bool = JsonOption,
    url: str = UrlOption,
    api_key: str = ApiKeyOption,
) -> None:
    """List schedules. With --json: {"items": [...], "next_cursor": ...}."""
    with make_client(url, api_key) as client:
        page = client.list_schedules(cursor=cursor, limit=limit)
    if as_json:
        output.print_json(page)
        return
    output.table(
        ["id", "state", "target", "when", "next fire"],
        (
            [
                s.id,
                _state(s),
                s.task_id or s.workflow or "-",
                output.short(_when_cron(s), 40),
                output.when(s.next_fire_at),
            ]
            for s in page.items
        ),
    )
    output.more(page.next_cursor)


@app.command("show")
def show(
    schedule_id: str = typer.Argument(...),
    as_json: bool = JsonOption,
    url: str = UrlOption,
    api_key: str = ApiKeyOption,
) -> None:
    """A schedule: its next 10 fire times, last 10 fires and counters."""
    with make_client(url, api_key) as client:
        _show(client.get_schedule(schedule_id), as_json)


@app.command("create")
def create(
    workflow: str = typer.Option(None, "--workflow", help="The workflow each fire starts"),
    task_id: str = typer.Option(None, "--task", help="Or a saved task each fire executes"),
    input: str = typer.Option(None, "--input", "-i", help="Each fire's input, as JSON"),
    cron: str = CronOption,
    at: str = AtOption,
    timezone: str = TimezoneOption,
    options: str = OptionsOption,
    overlap: str = OverlapOption,
    catchup_window: float = CatchupOption,
    pause_on_failure: bool = PauseOnFailureOption,
    remaining_actions: int = RemainingOption,
    jitter: float = JitterOption,
    schedule_id: str = typer.Option(None, "--id", help="Its id (default: chosen by the server)"),
    paused: bool = typer.Option(False, "--paused", help="Create it paused"),
    note: str = typer.Option(None, "--note", help="Why it is paused"),
    as_json: bool = JsonOption,
    url: str = UrlOption,
    api_key: str = ApiKeyOption,
) -> None:
    """Create a schedule: --workflow (with --input) or --task, on --cron or --at."""
    given: ScheduleOptions = {}
    _settings(
        given,
        task_id=task_id,
        timezone=timezone,
        options=options,
        overlap=overlap,
        catchup_window=catchup_window,
        pause_on_failure=pause_on_failure,
        remaining_actions=remaining_actions,
        jitter=jitter,
    )
    if schedule_id is not None:
        given["schedule_id"] = schedule_id
    if paused:
        given["paused"] = True
    if note is not None:
        given["note"] = note
    with make_client(url, api_key) as client:
        schedule = client.create_schedule(
            workflow, parse_json(input, "--input"), cron=cron, at=at, **given
        )
    _show(schedule, as_json)


@app.command("update")
def update(
    schedule_id: str = typer.Argument(...),
    workflow: str = typer.Option(None, "--workflow"),
    task_id: str = typer.Option(None, "--task"),
    input: str = typer.Option(None, "--input", "-i", help="A new input (JSON)"),
    cron: str = CronOption,
    at: str = AtOption,
    timezone: str = TimezoneOption,
    options: str = OptionsOption,
    overlap: str = OverlapOption,
    catchup_window: float = CatchupOption,
    pause_on_failure: bool = PauseOnFailureOption,
    remaining_actions: int = RemainingOption,
    jitter: float = JitterOption,
    as_json: bool = JsonOption,
    url: str = UrlOption,
    api_key: str = ApiKeyOption,
) -> None:
    """Change the settings given, from the next fire on."""
    changes: ScheduleChanges = {}
    _settings(
        changes,
        task_id=task_id,
        timezone=timezone,
        options=options,
        overlap=overlap,
        catchup_window=catchup_window,
        pause_on_failure=pause_on_failure,
        remaining_actions=remaining_actions,
        jitter=jitter,
    )
    if workflow is not None:
        changes["workflow"] = workflow
    if input is not None:
        changes["input"] = parse_json(input, "--input")
    if cron is not None:
        changes["cron"] = cron
    if at is not None:
        changes["at"] = at
    if not changes:
        raise typer.BadParameter("give at least one setting to change")
    with make_client(url, api_key) as client:
        _show(client.update_schedule(schedule_id, **changes), as_json)


@app.command("pause")
def pause(
    schedule_id: str = typer.Argument(...),
    note: str = typer.Option(None, "--note", help="Why (shown with the schedule)"),
    as_json: bool = JsonOption,
    url: str = UrlOption,
    api_key: str = ApiKeyOption,
) -> None:
    """Pause a schedule: no fire until it is resumed."""
    with make_client(url, api_key) as client:
        schedule = client.pause_schedule(schedule_id, note)
    if as_json:
        output.print_json(schedule)
    else:
        output.console.print(f"paused schedule {schedule.id}", highlight=False)


@app.command("resume")
def resume(
    schedule_id: str = typer.Argument(...),
    as_json: bool = JsonOption,
    url: str = UrlOption,
    api_key: str = ApiKeyOption,
) -> None:
    """Resume a paused schedule (missed fires: as its catch-up window says)."""
    with make_client(url, api_key) as client:
        schedule = client.resume_schedule(schedule_id)
    if as_json:
        output.print_json(schedule)
    else:
        nxt = output.when(schedule.next_fire_at)
        output.console.print(f"resumed schedule {schedule.id}; next fire {nxt}", highlight=False)


@app.command("delete")
def delete(
    schedule_id: str = typer.Argument(...),
    url: str = UrlOption,
    api_key: str = ApiKeyOption,
) -> None:
    """Delete a schedule (its runs stay)."""
    with make_client(url, api_key) as client:
        client.delete_schedule(schedule_id)
    output.console.print(f"deleted schedule {schedule_id}", highlight=False)


@app.command("trigger")
def trigger(
    schedule_id: str = typer.Argument(...),
    overlap: str = typer.Option(
        None, "--overlap", help="This fire's policy (default: the schedule's)"
    ),
    as_json: bool = JsonOption,
    url: str = UrlOption,
    api_key: str = ApiKeyOption,
) -> None:
    """Fire a schedule now."""
    with make_client(url, api_key) as client:
        fire = client.trigger_schedule(schedule_id, overlap=_overlap(overlap))
    if as_json:
        output.print_json(fire)
    elif fire.run_id:
        output.console.print(
            f"started run [bold]{fire.run_id}[/bold] ({output.status(fire.outcome)})"
        )
    else:
        output.console.print(f"fire {fire.outcome} (overlap policy)", highlight=False)


@app.command("backfill")
def backfill(
    schedule_id: str = typer.Argument(...),
    start: str = typer.Option(..., "--start", help="The range's start (included), ISO 8601"),
    end: str = typer.Option(..., "--end", help="The range's end (excluded), ISO 8601"),
    overlap: str = typer.Option(None, "--overlap", help="The backfill's policy"),
    as_json: bool = JsonOption,
    url: str = UrlOption,
    api_key: str = ApiKeyOption,
) -> None:
    """Start the fires of a past range not started yet (asking twice starts nothing more)."""
    with make_client(url, api_key) as client:
        done = client.backfill_schedule(schedule_id, start, end, overlap=_overlap(overlap))
    if as_json:
        output.print_json(done)
        return
    output.console.print(
        f"{len(done.fires)} fires in range: {done.created} started, "
        f"{done.existing} already started before",
        highlight=False,
    )
    output.table(
        ["fire time", "run", "outcome"],
        ([output.when(f.fire_at), f.run_id or "-", output.status(f.outcome)] for f in done.fires),
    )
