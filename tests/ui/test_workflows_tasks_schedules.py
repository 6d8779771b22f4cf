"""Workflows, tasks and schedules in the dashboard (both backends, a real server and worker
process, Debian's chromium): a run started from the form built from the workflow's input
schema (errors next to their fields, then the run's page), a task saved, edited and
executed, a schedule paused with a note, resumed and triggered; a read key sees none of
the actions and its POSTs are refused; screenshots of every page at both widths. And the
form builder itself on the schemas pydantic writes."""

from __future__ import annotations

import re
from typing import Any

import httpx
from playwright.sync_api import Page, expect

from runyard.ui.schema_form import build_form, place_errors, read_input
from tests.ui.conftest import UiServer, shot


def _csrf(page: Page) -> str:
    token = page.evaluate("JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRF-Token']")
    assert isinstance(token, str)
    return token


def _field_error(html: str, field: str) -> str:
    """The error shown under a field of a form page."""
    match = re.search(rf'id="field-{field}-error"[^>]*>(.*?)</div>\s*</div>', html, re.S)
    assert match, f"no error under {field}"
    return match.group(1)


def _run_id(page: Page) -> str:
    match = re.search(r"/ui/runs/([^/?#]+)$", page.url)
    assert match, page.url
    return match.group(1)


def test_start_a_workflow_from_its_schema_form(signed_in: Page, ui_server: UiServer) -> None:
    page = signed_in
    page.goto(ui_server.url + "/ui/workflows")
    expect(page.get_by_role("heading", name="Workflows")).to_be_visible()
    for name in ("enrich_companies", "flaky_fetch", "approval", "sync_feed"):
        row = page.locator(f"tr[data-workflow='{name}']")
        expect(row).to_be_visible()
        expect(row.locator("td.num")).to_have_text("1")  # the worker serving it
    shot(page, "workflows")

    page.get_by_role("link", name="approval", exact=True).click()
    expect(page.get_by_role("heading", name="approval")).to_be_visible()
    expect(page.locator("#input-schema")).to_contain_text('"exclusiveMinimum": 0')
    expect(page.locator("#workers tbody tr")).to_have_count(1)
    # Every bad field is named next to it at once: a number below the minimum, a
    # required field left empty; what was typed stays.
    page.get_by_label("Amount").fill("-3")
    page.get_by_role("button", name="Start run").click()
    amount = page.locator("[data-field='amount'] .field-error")
    reason = page.locator("[data-field='reason'] .field-error")
    expect(amount).to_contain_text("less than or equal to the minimum of 0")
    expect(reason).to_have_text("required")
    expect(page.get_by_label("Amount")).to_have_value("-3")
    expect(page.get_by_label("Amount")).to_have_attribute("aria-invalid", "true")
    page.get_by_label("Amount").fill("twelve")
    page.get_by_label("Reason").fill("team lunch")
    page.get_by_role("button", name="Start run").click()
    expect(amount).to_have_text("must be a number")
    shot(page, "workflow-form-errors")

    page.get_by_label("Amount").fill("12.5")
    page.get_by_role("button", name="Start run").click()
    expect(page).to_have_url(re.compile(r"/ui/runs/run_[^/]+$"))
    run_id = _run_id(page)
    with ui_server.api() as api:
        run = api.get(f"/v1/runs/{run_id}").json()
    assert run["workflow"] == "approval"
    assert run["input"] == {"amount": 12.5, "reason": "team lunch"}

    # A free-form input is one JSON text area; JSON that does not parse is named there.
    page.goto(ui_server.url + "/ui/workflows/flaky_fetch")
    shot(page, "workflow")
    page.get_by_label("Input (JSON)").fill('{"fail_rate": 0,')
    page.get_by_role("button", name="Start run").click()
    expect(page.locator("[data-field='input'] .field-error")).to_contain_text("not JSON")
    page.get_by_label("Input (JSON)").fill('{"fail_rate": 0, "url": "https://example.org"}')
    page.get_by_role("button", name="Start run").click()
    expect(page).to_have_url(re.compile(r"/ui/runs/run_[^/]+$"))
    with ui_server.api() as api:
        done = api.get(f"/v1/runs/{_run_id(page)}/result", params={"timeout": 20}).json()
    assert done["result"] == {"url": "https://example.org", "status": 200}


def test_tasks_save_edit_and_execute(signed_in: Page, ui_server: UiServer) -> None:
    page = signed_in
    page.goto(ui_server.url + "/ui/tasks")
    expect(page.get_by_role("heading", name="Tasks")).to_be_visible()
    form = page.locator("form[action='/ui/tasks']")
    form.get_by_label("Workflow").select_option("enrich_companies")
    form.get_by_label("Name").fill("Enrich Acme")
    form.get_by_label("Input").fill('{"domain": "NOT A DOMAIN"}')
    form.get_by_label("Run options").fill('{"retries": -1}')
    form.get_by_role("button", name="Save task").click()
    # Both bad fields named: the options by the wire model, then (once they pass) the
    # input by the workflow's schema.
    expect(page.locator("[data-field='options'] .field-error")).to_contain_text("retries")
    form.get_by_label("Run options").fill('{"retries": 1}')
    form.get_by_role("button", name="Save task").click()
    expect(page.locator("[data-field='input'] .field-error")).to_contain_text("input.domain")
    form.get_by_label("Input").fill('{"domain": "acme.example.com"}')
    form.get_by_role("button", name="Save task").click()
    expect(page.get_by_role("heading", name="Enrich Acme")).to_be_visible()
    expect(page.get_by_role("status")).to_have_text("Task saved")
    task_id = page.locator("dl .mono").first.inner_text()
    expect(page.locator("#task-input")).to_contain_text("acme.example.com")
    expect(page.locator("#task-options")).to_contain_text('"retries": 1')
    shot(page, "task")

    # Edit: a name and input; JSON that does not parse is named next to its field.
    edit = page.locator(f"form[action='/ui/tasks/{task_id}']")
    edit.get_by_label("Name").fill("Enrich Initech")
    edit.get_by_label("Input", exact=True).fill('{"domain": ')
    edit.get_by_role("button", name="Save changes").click()
    expect(page.locator("[data-field='input'] .field-error")).to_contain_text("not JSON")
    edit.get_by_label("Input", exact=True).fill('{"domain": "initech.example.com"}')
    edit.get_by_role("button", name="Save changes").click()
    expect(page.get_by_role("heading", name="Enrich Initech")).to_be_visible()
    with ui_server.api() as api:
        task = api.get(f"/v1/tasks/{task_id}").json()
    assert task["name"] == "Enrich Initech"
    assert task["input"] == {"domain": "initech.example.com"}
    assert task["options"] == {"retries": 1}

    page.get_by_role("button", name="Execute task").click()
    expect(page).to_have_url(re.compile(r"/ui/runs/run_[^/]+$"))
    with ui_server.api() as api:
        run = api.get(f"/v1/runs/{_run_id(page)}/result", params={"timeout": 30}).json()
    assert run["task_id"] == task_id and run["status"] == "SUCCEEDED"
    assert run["result"]["domain"] == "initech.example.com"

    page.goto(ui_server.url + "/ui/tasks")
    expect(page.locator(f"tr[data-task='{task_id}']")).to_contain_text("Enrich Initech")
    shot(page, "tasks")


def _schedule(api: httpx.Client, schedule_id: str, **extra: Any) -> dict[str, Any]:
    body = {
        "id": schedule_id,
        "cron": "0 9 * * 1-5",
        "timezone": "Europe/Paris",
        "workflow": "flaky_fetch",
        "input": {"fail_rate": 0},
        **extra,
    }
    answer = api.post("/v1/schedules", json=body)
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


def test_schedule_pause_resume_and_trigger(signed_in: Page, ui_server: UiServer) -> None:
    page = signed_in
    with ui_server.api() as api:
        _schedule(api, "weekday-report")
    page.goto(ui_server.url + "/ui/schedules")
    row = page.locator("tr[data-schedule='weekday-report']")
    expect(row).to_contain_text("At 09:00, Monday through Friday")
    shot(page, "schedules")
    row.get_by_role("link", name="weekday-report").click()

    expect(page.locator("#cron-words")).to_have_text("At 09:00, Monday through Friday")
    expect(page.locator("#state")).to_have_text("active")
    expect(page.locator("#next-fires li")).to_have_count(10)
    # 09:00 in Paris: 07:00 or 08:00 UTC, with daylight saving time or without.
    expect(page.locator("#next-fires li").first).to_contain_text(re.compile(r"T0[78]:00:00"))
    expect(page.locator("#next-fires li .local").first).to_contain_text(
        re.compile(r"09:00:00 CES?T")
    )

    page.get_by_label("Note (why)").fill("upstream maintenance until Monday")
    page.get_by_role("button", name="Pause").click()
    expect(page.get_by_role("status")).to_have_text("Schedule paused")
    expect(page.locator("#state")).to_have_text("paused")
    expect(page.locator("#note")).to_have_text("Paused: upstream maintenance until Monday")
    expect(page.locator("#next-fires")).to_contain_text("None")
    with ui_server.api() as api:
        stored = api.get("/v1/schedules/weekday-report").json()
    assert stored["paused"] is True and stored["note"] == "upstream maintenance until Monday"
    shot(page, "schedule-paused")

    page.get_by_role("button", name="Resume").click()
    expect(page.get_by_role("status")).to_have_text("Schedule resumed")
    expect(page.locator("#state")).to_have_text("active")
    expect(page.locator("#next-fires li")).to_have_count(10)
    with ui_server.api() as api:
        assert api.get("/v1/schedules/weekday-report").json()["paused"] is False

    page.get_by_role("button", name="Trigger now").click()
    expect(page.get_by_role("status")).to_contain_text("Triggered: run weekday-report@")
    fire = page.locator("#recent-fires tr[data-kind='trigger']")
    expect(fire).to_have_count(1)
    run_link = fire.locator("a")
    run_id = run_link.inner_text()
    with ui_server.api() as api:
        run = api.get(f"/v1/runs/{run_id}/result", params={"timeout": 20}).json()
    assert run["schedule_id"] == "weekday-report" and run["status"] == "SUCCEEDED"
    page.reload()
    expect(page.locator("[data-counter='fired']")).to_have_text("1")
    expect(fire.locator(".badge")).to_have_text("SUCCEEDED")
    shot(page, "schedule")
    run_link.click()
    expect(page).to_have_url(re.compile(re.escape(run_id.replace("@", "%40")) + "$"))


def test_a_read_key_sees_no_actions_and_its_posts_are_refused(
    read_only: Page, ui_server: UiServer
) -> None:
    page = read_only
    with ui_server.api() as api:
        _schedule(api, "read-only-check")
        task = api.post("/v1/tasks", json={"workflow": "flaky_fetch", "input": {}}).json()
    page.goto(ui_server.url + "/ui/workflows/approval")
    expect(page.locator("#input-schema")).to_be_visible()
    expect(page.get_by_role("button", name="Start run")).to_have_count(0)
    page.goto(ui_server.url + "/ui/tasks")
    expect(page.get_by_role("button", name="Save task")).to_have_count(0)
    page.goto(ui_server.url + f"/ui/tasks/{task['id']}")
    expect(page.get_by_role("button", name="Execute task")).to_have_count(0)
    page.goto(ui_server.url + "/ui/schedules/read-only-check")
    expect(page.locator("#cron-words")).to_be_visible()
    for name in ("Trigger now", "Pause", "Resume"):
        expect(page.get_by_role("button", name=name)).to_have_count(0)

    # Forged POSTs, even with the session's own CSRF token: 403, nothing changed.
    token = _csrf(page)
    for path, form in (
        ("/ui/schedules/read-only-check/pause", {"note": "forged"}),
        ("/ui/schedules/read-only-check/trigger", {}),
        ("/ui/workflows/flaky_fetch/start", {"input": "{}"}),
        ("/ui/tasks", {"workflow": "flaky_fetch"}),
        (f"/ui/tasks/{task['id']}/execute", {}),
    ):
        answer = page.request.post(ui_server.url + path, form={**form, "csrf": token})
        assert answer.status == 403, (path, answer.status)
    with ui_server.api() as api:
        stored = api.get("/v1/schedules/read-only-check").json()
        assert stored["paused"] is False and stored["recent_fires"] == []
        assert api.get("/v1/runs", params={"task_id": task["id"]}).json()["items"] == []


def test_pages_answer_404_for_what_does_not_exist(signed_in: Page, ui_server: UiServer) -> None:
    for path, title in (
        ("/ui/workflows/no_such_workflow", "No such workflow"),
        ("/ui/tasks/no-such-task", "No such task"),
        ("/ui/schedules/no-such-schedule", "No such schedule"),
    ):
        answer = signed_in.goto(ui_server.url + path)
        assert answer is not None and answer.status == 404, path
        expect(signed_in.get_by_role("heading", name=title)).to_be_visible()


# -- the form builder, on the schemas pydantic writes ----------------------------------------


SCHEMA = {
    "$defs": {
        "Size": {"enum": ["s", "m", "l"], "title": "Size", "type": "string"},
        "Order": {
            "properties": {
                "sku": {"title": "Sku", "type": "string", "minLength": 3},
                "count": {"title": "Count", "type": "integer", "minimum": 1, "default": 1},
                "price": {"title": "Price", "type": "number"},
                "gift": {"title": "Gift", "type": "boolean", "default": False},
                "size": {"$ref": "#/$defs/Size"},
                "tags": {"items": {"type": "string"}, "title": "Tags", "type": "array"},
                "note": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
            },
            "required": ["sku", "size"],
            "title": "Order",
            "type": "object",
        },
    },
    "$ref": "#/$defs/Order",
}


def test_the_form_has_a_field_per_property_of_the_right_kind() -> None:
    form = build_form(SCHEMA)
    assert not form.whole
    kinds = {f.name: (f.kind, f.required) for f in form.fields}
    assert kinds == {
        "sku": ("text", True),
        "count": ("integer", False),
        "price": ("number", False),
        "gift": ("boolean", False),
        "size": ("choice", True),
        "tags": ("json", False),
        "note": ("json", False),
    }
    size = next(f for f in form.fields if f.name == "size")
    assert size.choices == ("s", "m", "l")
    sku = next(f for f in form.fields if f.name == "sku")
    assert sku.hints == ("at least 3 characters",)
    for schema in ({"type": "integer"}, {"type": "object", "additionalProperties": True}, None):
        whole = build_form(schema)
        assert whole.whole and [f.name for f in whole.fields] == ["input"]


def test_the_input_is_read_back_typed_and_bad_values_are_named() -> None:
    form = build_form(SCHEMA)
    ok, value = read_input(
        form,
        {
            "in.sku": "abc",
            "in.count": "3",
            "in.price": "2.5",
            "in.gift": "on",
            "in.size": "m",
            "in.tags": '["a", "b"]',
            "in.note": "",
        },
    )
    assert ok and value == {
        "sku": "abc",
        "count": 3,
        "price": 2.5,
        "gift": True,
        "size": "m",
        "tags": ["a", "b"],
    }
    form = build_form(SCHEMA)
    ok, value = read_input(
        form, {"in.sku": "", "in.count": "2.5", "in.price": "nan", "in.tags": "[", "in.size": "s"}
    )
    assert not ok and value == {"gift": False, "size": "s"}
    assert form.errors == {
        "sku": ["required"],
        "count": ["must be a whole number"],
        "price": ["must be a number"],
        "tags": [form.errors["tags"][0]],
    }
    assert form.errors["tags"][0].startswith("not JSON")
    assert form.values["count"] == "2.5"  # shown again as typed

    # The service's errors go next to the field they name; others to the whole form.
    form = build_form(SCHEMA)
    place_errors(
        form,
        [
            {"field": "input.sku", "error": "too short"},
            {"field": "input.tags.1", "error": "no"},
            {"field": "retries", "error": "too many"},
        ],
        "bad",
    )
    assert form.errors == {"sku": ["too short"], "tags": ["1: no"], "": ["retries: too many"]}
    whole = build_form({"type": "integer"})
    place_errors(whole, [], "the workflow is not published")
    assert whole.errors == {"": ["the workflow is not published"]}


def test_forged_form_values_get_a_422_naming_the_field(
    signed_in: Page, ui_server: UiServer
) -> None:
    """What a browser would not send (a NUL character, NaN, a huge number, a field the
    schema does not have) is answered with the form and its errors, never a 500."""
    page = signed_in
    page.goto(ui_server.url + "/ui/workflows/approval")
    token = _csrf(page)
    for form, field, text in (
        ({"in.amount": "5", "in.reason": "a\x00b"}, "reason", "NUL"),
        ({"in.amount": "nan", "in.reason": "x"}, "amount", "must be a number"),
        ({"in.amount": "1e999", "in.reason": "x"}, "amount", "must be a number"),
    ):
        answer = page.request.post(
            ui_server.url + "/ui/workflows/approval/start", form={**form, "csrf": token}
        )
        assert answer.status == 422, (form, answer.status)
        assert text in _field_error(answer.text(), field), form
    page.goto(ui_server.url + "/ui/workflows/flaky_fetch")
    answer = page.request.post(
        ui_server.url + "/ui/workflows/flaky_fetch/start",
        form={"in.input": '{"fail_rate": NaN}', "csrf": token},
    )
    assert answer.status == 422
    assert "NaN is not a JSON value" in _field_error(answer.text(), "input")
    answer = page.request.post(
        ui_server.url + "/ui/tasks/no-such-task", form={"name": "x", "csrf": token}
    )
    assert answer.status == 404
