"""The admin page, driven in Chromium like an operator would: sign in, create, trigger, watch
an execution arrive live, pause, resume, edit, travel back in a job's history, delete; and a
reader who sees no write actions and whom the API refuses anyway."""

from __future__ import annotations

import re

from tests.browser.conftest import PHONE, READ_ONLY, UI
from tests.target_server import Target

try:
    from playwright.sync_api import expect
except ImportError:  # the `playwright` fixture skips these tests, or fails them in CI
    expect = None

SECRET = "s3cret-value-never-shown"


def row(ui: UI, name: str):
    return ui.page.locator(
        "table.jobs tbody tr", has=ui.page.get_by_role("link", name=name, exact=True)
    )


def test_sign_in_with_a_token_then_with_the_login_link(ui: UI) -> None:
    page = ui.page
    page.goto(ui.url)
    ui.expect(401, "/ui/login")
    page.get_by_label("Token").fill("not-a-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("sign-in refused: malformed token")

    page.get_by_label("Token").fill(ui.token())
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Jobs", exact=True)).to_be_visible()
    expect(page.locator("#user-name")).to_have_text(f"ana · {ui.tenant}")
    expect(page.locator("#live")).to_have_text("live")
    cookie = next(c for c in page.context.cookies() if c["name"] == "cronsource_session")
    assert (
        cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/_/scheduler"
    )

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert not [c for c in page.context.cookies() if c["name"] == "cronsource_session"]

    ui.sign_in()  # the link `serve` prints
    assert "token" not in page.url  # the token leaves the address bar at once


def test_create_an_http_job_through_the_form(ui: UI, target: Target) -> None:
    page = ui.page
    ui.sign_in()
    expect(page.get_by_text("No jobs yet.")).to_be_visible()
    page.get_by_role("button", name="New job").click()
    form = page.get_by_role("dialog", name="New job")
    form.get_by_label("Name").fill("nightly-sync")
    form.get_by_label("Description").fill("Pulls yesterday's orders")

    save = form.get_by_role("button", name="Create job")
    ui.expect(422, "/cron/preview")
    form.get_by_label("Cron pattern").fill("61 * * * *")
    expect(form.locator(".field-error:not([hidden])")).to_contain_text("pattern")
    expect(form.get_by_label("Cron pattern")).to_have_attribute("aria-invalid", "true")
    expect(save).to_be_disabled()

    form.get_by_label("Preset").select_option(label="Daily at 02:00")
    expect(form.get_by_label("Cron pattern")).to_have_value("0 2 * * *")
    form.get_by_label("Time zone").fill("Europe/Berlin")
    expect(form.get_by_role("list", name="Next 5 runs").locator("li time")).to_have_count(5)
    expect(form.get_by_role("list", name="Next 5 runs")).to_contain_text("02:00")
    expect(save).to_be_enabled()

    form.get_by_label("Method").select_option("POST")
    form.get_by_label("URL").fill(target.url("/sync"))
    headers = form.get_by_label("Headers (JSON object)")
    headers.fill('{"X-Team": ')
    expect(form.get_by_text("Not valid JSON")).to_be_visible()
    expect(save).to_be_disabled()
    headers.fill('{"X-Team": "data"}')
    form.get_by_label("Body (JSON)").fill('{"from": "${T-1:YYYY-MM-DD}"}')
    form.get_by_label("Authentication").select_option("bearer")
    form.get_by_label("Token").fill(SECRET)
    form.get_by_text("Retries, concurrency and missed runs").click()
    form.get_by_label("Max retries").fill("2")
    form.get_by_label("Concurrency").select_option("skip")
    expect(save).to_be_enabled()
    page.set_viewport_size({"width": 1280, "height": 2000})  # the whole form in the picture
    ui.shot("form-1280")
    page.set_viewport_size({"width": 1280, "height": 900})
    save.click()

    expect(form).to_be_hidden()
    line = row(ui, "nightly-sync")
    expect(line).to_contain_text("Active")
    expect(line).to_contain_text("0 2 * * *")
    expect(line.locator("td.last-run")).to_contain_text("never")
    expect(page.locator("[data-stat='jobs'] dd")).to_have_text("1")
    ui.shot("list-1280")
    with ui.api() as client:
        (job,) = client.get("/jobs").json()
    assert job["timezone"] == "Europe/Berlin" and job["concurrencyPolicy"] == "skip"
    assert job["retry"]["maxRetries"] == 2 and job["taskConfig"]["headers"] == {"X-Team": "data"}

    # the secret is write-only: masked in the page, the stored one kept on edit
    line.get_by_role("button", name="Edit").click()
    edit = page.get_by_role("dialog", name="Edit nightly-sync")
    expect(edit.get_by_label("Token")).to_have_value("")
    expect(edit.get_by_label("Token")).to_have_attribute("placeholder", re.compile("Stored"))
    edit.get_by_role("button", name="Cancel").click()
    assert SECRET not in page.content()


def test_trigger_shows_the_execution_live(ui: UI, target: Target) -> None:
    page = ui.page
    job = ui.job("on-demand", target)
    ui.sign_in()
    line = row(ui, "on-demand")
    expect(line.locator("td.last-run")).to_contain_text("never")
    line.get_by_role("button", name="Trigger").click()
    # the list marks it pending itself; "succeeded" can only come from the event stream
    expect(line.locator("td.last-run")).to_contain_text("succeeded")

    page.get_by_role("link", name="on-demand").click()
    executions = page.locator("table.executions tbody tr[data-execution-id]")
    expect(executions).to_have_count(1)
    page.evaluate("window.notReloaded = true")
    with ui.api() as client:  # another client triggers: only the stream can tell the page
        assert client.post(f"/jobs/{job['id']}/trigger").status_code == 202
    expect(executions).to_have_count(2)
    expect(executions.first).to_contain_text("manual")
    expect(executions.first).to_contain_text("succeeded")
    expect(executions.first).to_contain_text("HTTP 200")
    assert page.evaluate("window.notReloaded") is True

    executions.first.get_by_role("button", name="succeeded").click()
    expect(page.locator("tr.execution-detail")).to_contain_text('"ok": true')
    expect(page.locator("ol.strip li")).to_have_count(0)  # a yearly job owes no slot today


def test_pause_and_resume(ui: UI, target: Target) -> None:
    job = ui.job("pausable", target)
    ui.sign_in()
    line = row(ui, "pausable")
    line.get_by_role("button", name="Pause").click()
    expect(line).to_contain_text("Paused")
    expect(line.get_by_role("button", name="Resume")).to_be_focused()
    with ui.api() as client:
        assert client.get(f"/jobs/{job['id']}").json()["enabled"] is False
    line.get_by_role("button", name="Resume").click()
    expect(line).to_contain_text("Active")
    expect(ui.page.locator("[data-stat='enabled'] dd")).to_have_text("1")
    with ui.api() as client:
        assert client.get(f"/jobs/{job['id']}").json()["enabled"] is True


def test_edit_shows_the_new_version_and_version_1_as_it_was(ui: UI, target: Target) -> None:
    page = ui.page
    ui.job("evolving", target, description="first cut")
    ui.sign_in()
    page.get_by_role("link", name="evolving").click()
    expect(page.get_by_role("heading", name=re.compile("evolving"))).to_be_visible()
    page.get_by_role("button", name="Edit", exact=True).click()
    form = page.get_by_role("dialog", name="Edit evolving")
    form.get_by_label("Cron pattern").fill("*/30 * * * *")
    expect(form.get_by_role("list", name="Next 5 runs").locator("li time")).to_have_count(5)
    form.get_by_label("Description").fill("every half hour")
    form.get_by_role("button", name="Save changes").click()
    expect(form).to_be_hidden()

    timeline = page.locator("ol.timeline li")
    expect(timeline).to_have_count(2)
    expect(timeline.first).to_contain_text("v2 Updated")
    expect(timeline.first).to_contain_text("Changed: description, pattern")
    expect(page.locator(".detail-head")).to_contain_text("version 2")

    page.get_by_role("button", name="View version 1").click()
    travel = page.locator(".travel")
    expect(travel.get_by_role("heading", name="Version 1")).to_be_focused()
    page.get_by_label("Compare with").select_option("current")
    page.get_by_role("button", name="Show version").click()
    diff = travel.get_by_role("table", name="Differences from version 2")
    expect(diff.locator("tr", has_text="pattern")).to_contain_text("0 0 1 1 *")
    expect(diff.locator("tr", has_text="pattern")).to_contain_text("*/30 * * * *")
    expect(diff.locator("tr", has_text="description")).to_contain_text("first cut")
    ui.shot("detail-1280")


def test_delete_asks_first(ui: UI, target: Target) -> None:
    page = ui.page
    job = ui.job("doomed", target)
    ui.sign_in()
    line = row(ui, "doomed")
    line.get_by_role("button", name="Delete").click()
    confirm = page.get_by_role("dialog", name="Delete doomed?")
    expect(confirm.get_by_role("button", name="Cancel")).to_be_focused()  # the safe choice
    confirm.get_by_role("button", name="Cancel").click()
    expect(line).to_be_visible()

    line.get_by_role("button", name="Delete").click()
    page.get_by_role("dialog", name="Delete doomed?").get_by_role(
        "button", name="Delete job"
    ).click()
    expect(line).to_have_count(0)
    expect(page.get_by_text("No jobs yet.")).to_be_visible()
    with ui.api() as client:
        assert client.get(f"/jobs/{job['id']}").status_code == 404


def test_a_reader_sees_no_write_actions_and_the_api_refuses_them(ui: UI, target: Target) -> None:
    page = ui.page
    job = ui.job("watched", target)
    ui.sign_in(READ_ONLY)
    line = row(ui, "watched")
    expect(line).to_contain_text("Active")
    expect(page.get_by_role("button", name="New job")).to_have_count(0)
    expect(line.get_by_role("button")).to_have_count(0)
    page.get_by_role("link", name="watched").click()
    expect(page.get_by_role("heading", name="Executions")).to_be_visible()
    for action in ("Trigger now", "Pause", "Edit", "Delete", "Backfill range"):
        expect(page.get_by_role("button", name=action, exact=True)).to_have_count(0)

    # the API refuses anyway, even to a request the page's own session makes correctly
    ui.expect(403, "/disable")
    ui.expect(403, "/trigger")
    statuses = page.evaluate(
        """async (id) => {
          const session = await (await fetch("/_/scheduler/ui/session")).json();
          const headers = {"X-CSRF-Token": session.csrfToken};
          const out = [];
          for (const path of [`/jobs/${id}/disable`, `/jobs/${id}/trigger`]) {
            out.push((await fetch(`/_/scheduler${path}`, {method: "POST", headers})).status);
          }
          return out;
        }""",
        job["id"],
    )
    assert statuses == [403, 403]
    with ui.api() as client:
        assert client.get(f"/jobs/{job['id']}").json()["enabled"] is True


def test_a_cookie_write_needs_the_csrf_header_and_our_origin(ui: UI, target: Target) -> None:
    job = ui.job("guarded", target)
    ui.sign_in()
    request = ui.page.context.request  # shares the page's cookie jar
    disable = f"{ui.url.removesuffix('/ui')}/jobs/{job['id']}/disable"
    ui.expect(403, "/disable")
    assert request.post(disable).status == 403
    csrf = ui.page.evaluate("fetch('/_/scheduler/ui/session').then(r => r.json())")["csrfToken"]
    evil = {"X-CSRF-Token": csrf, "Origin": "https://evil.example"}
    assert request.post(disable, headers=evil).status == 403
    assert request.post(disable, headers={"X-CSRF-Token": csrf}).status == 200
    with ui.api() as client:  # the bearer API is unchanged
        assert client.post(f"/jobs/{job['id']}/enable").status_code == 200


def test_keyboard_opens_and_closes_the_form(ui: UI) -> None:
    page = ui.page
    ui.sign_in()
    page.get_by_role("button", name="New job").focus()
    page.keyboard.press("Enter")
    form = page.get_by_role("dialog", name="New job")
    expect(form.get_by_label("Name")).to_be_focused()
    page.keyboard.press("Tab")
    expect(form.get_by_label("Application")).to_be_focused()
    page.keyboard.press("Escape")
    expect(form).to_have_count(0)
    expect(page.get_by_role("button", name="New job")).to_be_focused()
    name_sort = page.get_by_role("button", name=re.compile("^Name"))
    name_sort.focus()
    page.keyboard.press("Enter")
    expect(page.locator("th[data-key='name']")).to_have_attribute("aria-sort", "descending")


def test_the_page_fits_a_phone(ui: UI, target: Target) -> None:
    page = ui.page
    page.set_viewport_size(PHONE)
    ui.job("phone-a", target, description="Runs once a year")
    ui.job("phone-b", target, pattern="*/15 * * * *", timezone="Europe/Berlin")
    ui.sign_in()
    expect(row(ui, "phone-b").locator("td.next-run time")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    ui.shot("list-390")

    page.get_by_role("button", name="New job").click()
    form = page.get_by_role("dialog", name="New job")
    expect(form.get_by_role("list", name="Next 5 runs").locator("li time")).to_have_count(5)
    ui.shot("form-390")
    form.get_by_role("button", name="Cancel").click()

    page.get_by_role("link", name="phone-a").click()
    expect(page.get_by_role("heading", name="History")).to_be_visible()
    expect(page.locator("ol.timeline li")).to_have_count(1)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    ui.shot("detail-390")


def test_the_slot_strip_and_a_backfill(ui: UI) -> None:
    page = ui.page
    doc = {"taskType": "FunctionTask", "taskConfig": {"function": "noop"}}
    job = ui.job("busy", Target(), pattern="*/2 * * * * *", **doc)
    ui.sign_in()
    page.get_by_role("link", name="busy").click()
    # 43,200 slots a day: asked in parts, shown in 15-minute segments that fill in live
    ran = page.locator("ol.strip li.seg-ok").first
    expect(ran).to_have_attribute("title", re.compile(r": [1-9]\d* ran, 0 failed"))
    expect(page.locator("ol.strip li")).to_have_count(96)

    page.get_by_label("From", exact=True).fill("2026-01-05T10:00:00")
    page.get_by_label("To", exact=True).fill("2026-01-05T10:00:10")
    page.get_by_role("button", name="Backfill range").click()
    page.get_by_role("dialog", name="Backfill this range?").get_by_role(
        "button", name="Backfill"
    ).click()
    expect(page.get_by_text("5 slots recorded for backfill")).to_be_visible()
    page.get_by_label("Status", exact=True).select_option("succeeded")
    backfilled = page.locator("table.executions tbody tr", has_text="backfill")
    expect(backfilled).to_have_count(5)
    with ui.api() as client:  # stop it firing for the rest of the module
        assert client.post(f"/jobs/{job['id']}/disable").status_code == 200
