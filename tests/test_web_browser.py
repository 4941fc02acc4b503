"""The dashboard in a real browser: Playwright driving Debian's chromium against the gateway in demo mode.

The gateway runs in this process on python-can virtual buses with the module simulator, as `bms-gateway demo`
does, with faults injected: module 2 has a cell drifting high (it balances), module 4 overheats, module 5 joins
with 20 % more SOC (pending), and module 3 drops off the bus at DROP seconds. The dashboard listens on 127.0.0.1
(an ephemeral port) with an operator token. The tests run in file order on one gateway and one browser: the
modules page sees module 3 online, then offline within 5 s of the drop; the events page lists the alarm of that
fault; the rest reads the same live stack. The last test takes the screenshots of every page at 1280x800 and at
390x844: into docs/screenshots/ when BMS_SCREENSHOTS names that folder, else into a temporary one.

Playwright cannot download browsers here: chromium comes from apt (`.ci/run` installs it) and is launched with
`executable_path`. Without /usr/bin/chromium the tests are skipped, saying so, except where BMS_BROWSER_TESTS is
"required" (`.ci/run` sets it): there they fail.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import ClientSession

from gateway.outputs.web.words import words
from gateway.service import Gateway
from gateway.sim import Simulator, parse_fault

from helpers.buses import make_config, running, simulating, until
from helpers.web import TOKEN, token_file

CHROMIUM = Path("/usr/bin/chromium")
MISSING = "Debian's chromium is not installed at /usr/bin/chromium (apt-get install chromium; .ci/run installs it)"
if not CHROMIUM.exists():
    if os.environ.get("BMS_BROWSER_TESTS") == "required":  # CI: the browser tests must run
        pytest.fail(MISSING, pytrace=False)
    pytest.skip(MISSING, allow_module_level=True)
async_api = pytest.importorskip("playwright.async_api", reason="the playwright package is not installed")

pytestmark = pytest.mark.asyncio(loop_scope="module")

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
"""How chromium runs here: no sandbox as root, no network of its own (the machine's is closed)."""
WIDE = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
DROP = 14.0
"""Seconds after start at which module 3 falls silent."""
FAULTS = ("cell_high:2@2=3.46", "overheat:4@1=50", "soc_offset:5=20", f"drop:3@{DROP:g}")
PAGES = ("overview", "modules", "cells", "events", "expansion")


@dataclass
class Stack:
    """The running gateway, its simulator, the browser, and what the pages reported as errors."""

    gateway: Gateway
    sim: Simulator
    url: str
    browser: Any
    errors: list[str] = field(default_factory=list)

    async def page(self, path: str, viewport: dict[str, int] | None = None) -> Any:
        context = await self.browser.new_context(viewport=viewport or WIDE)
        page = await context.new_page()

        def console(msg: Any) -> None:
            if msg.type == "error":
                self.errors.append(f"{path}: {msg.text}")

        page.on("pageerror", lambda err: self.errors.append(f"{path}: {err}"))
        page.on("console", console)
        await page.goto(self.url + path.lstrip("/"))
        await page.wait_for_selector("body[data-ready=true]", timeout=10_000)
        return page

    async def api(self, path: str) -> Any:
        async with ClientSession() as session, session.get(self.url + path.lstrip("/")) as response:
            assert response.status == 200, await response.text()
            return await response.json()


_channels = itertools.count()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    channel = f"browser-{os.getpid()}-{next(_channels)}"
    token = token_file(tmp_path_factory.mktemp("web"))
    cfg = make_config(channel, web={"enabled": True, "host": "127.0.0.1", "port": 0, "token_file": str(token)})
    gateway = Gateway(cfg)
    sim = Simulator(modules=5, current=40.0, faults=[parse_fault(f) for f in FAULTS])
    async with (
        running(gateway),
        simulating(cfg.can.modules[0].channel, sim),
        async_api.async_playwright() as playwright,
    ):
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            await until(gateway.ready.is_set, within=10.0, what="the gateway ready")
            assert gateway.web is not None
            yield Stack(gateway, sim, gateway.web.url, browser)
        finally:
            await browser.close()


async def text(page: Any, selector: str) -> str:
    return str(await page.locator(selector).inner_text()).strip()


# -- modules: a dropped module turns offline within 5 s --------------------------------------------------------


async def test_a_module_dropped_by_a_fault_turns_offline_on_the_modules_page_within_5_s(stack: Stack) -> None:
    page = await stack.page("/modules")
    row = page.locator("table.modules tr[data-module='3']")
    await async_api.expect(row).to_have_attribute("data-state", "online", timeout=10_000)
    assert stack.sim.time < DROP, "module 3 was seen online before its drop"
    await until(lambda: stack.sim.time >= DROP, within=DROP + 5.0, what="the drop fault")
    await async_api.expect(row).to_have_attribute("data-state", "offline", timeout=5_000)
    await async_api.expect(row.locator("td[data-label='State'] .reason")).to_contain_text("no Module")
    slab = page.locator(".stack .slab[data-module='3']")
    await async_api.expect(slab).to_have_attribute("data-state", "offline")
    # The stack picture is ordered by position, top first.
    assert await page.locator(".stack .slab").evaluate_all("els => els.map(e => e.dataset.module)") == [
        "5",
        "4",
        "3",
        "2",
        "1",
    ]
    await page.context.close()


# -- events: the fault's alarm ------------------------------------------------------------------------------------


async def test_the_events_page_lists_the_faults_alarm(stack: Stack) -> None:
    await until(
        lambda: any(a.code == "module_comm_lost" for a in stack.gateway.hub.latest.alarms),
        within=10.0,
        what="module_comm_lost raised",
    )
    page = await stack.page("/events")
    alarm = page.locator("tr.event[data-code='module_comm_lost']").first
    await async_api.expect(alarm).to_be_visible(timeout=5_000)
    await async_api.expect(alarm.locator("td.what")).to_have_text("alarm raised")
    await async_api.expect(alarm.locator("td[data-label='Module']")).to_have_text("module 3")
    await async_api.expect(alarm.locator("td[data-label='Details']")).to_contain_text("Module communication lost")
    offline = page.locator("tr.event[data-module='3']", has_text="module offline")
    await async_api.expect(offline).to_have_count(1)

    # Filtered by module 4 and by level: only what matches stays.
    await page.select_option("#filter-module", "4")
    rows = page.locator("tr.event")
    await async_api.expect(rows.first).to_be_visible()
    for row in await rows.all():
        assert "4" in (await row.locator("td[data-label='Module']").inner_text())
    await page.select_option("#filter-module", "")
    await page.select_option("#filter-level", "warning")
    levels = await page.locator("tr.event .level-chip").all_inner_texts()
    assert levels and set(levels) <= {"warning", "protection"}
    await page.context.close()


# -- overview: the same SOC and limits as the API ---------------------------------------------------------------


async def test_the_overview_shows_the_same_soc_and_limits_as_the_api(stack: Stack) -> None:
    page = await stack.page("/")
    limits = {
        "charge_current": (1, "A"),
        "discharge_current": (1, "A"),
        "charge_voltage": (2, "V"),
        "discharge_voltage": (2, "V"),
    }
    shown: dict[str, str] = {}
    api: dict[str, str] = {}
    # Both follow the live bank: compare what the page shows with the API until one snapshot's values agree (they
    # settle within a few ticks; a value crossing a rounding edge between the two reads just takes another round).
    for _ in range(50):
        snapshot = await stack.api("/api/snapshot")
        api = {"soc": f"{snapshot['soc']:.1f}\u202f%"}
        shown = {"soc": await text(page, ".tile[data-k='soc'] .value")}
        for name, (digits, unit) in limits.items():
            limit = snapshot["limits"][name]
            api[name] = f"{limit['value']:.{digits}f}\u202f{unit}"
            api[name + " bound_by"] = limit["bound_by"]
            api[name + " words"] = words(limit["bound_by"], name)
            row = f".limit[data-limit='{name}']"
            shown[name] = await text(page, f"{row} .value")
            shown[name + " bound_by"] = await text(page, f"{row} .rule")
            shown[name + " words"] = await text(page, f"{row} .words")
        if shown == api:
            break
        await asyncio.sleep(0.2)
    assert shown == api
    assert await text(page, "#validity") == "VALID"
    assert await text(page, "#banner") == "Valid: the master vouches for the bank: 3 modules online"  # 3 off, 5 waits
    # The alarms of the faults, each with its modules.
    heat = page.locator(".alarm[data-code='heat_accumulation']")
    await async_api.expect(heat).to_contain_text("module 4")
    await async_api.expect(page.locator(".alarm[data-code='module_comm_lost']")).to_contain_text("module 3")
    await page.context.close()


# -- cells: one bar per cell ------------------------------------------------------------------------------------


async def test_the_cell_monitor_draws_one_bar_per_cell(stack: Stack) -> None:
    page = await stack.page("/cells")
    cells = {m["address"]: m for m in await stack.api("/api/cells")}
    assert set(cells) == {1, 2, 3, 4, 5}
    for address, module in cells.items():
        card = page.locator(f".card.cells[data-module='{address}']")
        await async_api.expect(card.locator(".bar-cell")).to_have_count(len(module["voltages"]))
        assert len(module["voltages"]) == 16
        await async_api.expect(card.locator(".bar-cell.max")).to_have_count(1)
        await async_api.expect(card.locator(".bar-cell.min")).to_have_count(1)
    # Module 2's high cell is the highest, is balancing, and the delta is shown in mV.
    high = page.locator(".card.cells[data-module='2']")
    await async_api.expect(high.locator(".bar-cell.max.bal")).to_have_count(1)
    delta = await text(page, ".card.cells[data-module='2'] .delta")
    assert re.fullmatch(r"Δ \d+\u202fmV", delta) and int(re.sub(r"\D", "", delta)) > 50
    # One scale for every module: a bar's height is its voltage on it, so equal voltages draw equal bars.
    heights = await page.locator(".bar-cell .level").evaluate_all("els => els.map(e => e.style.height)")
    assert len(heights) == 5 * 16 and all(h.endswith("%") for h in heights)
    await page.context.close()


# -- expansion: a module joining with SOC +20 % ------------------------------------------------------------------


async def test_the_expansion_assistant_explains_a_module_joining_with_20_percent_more_soc(stack: Stack) -> None:
    page = await stack.page("/expansion")
    await page.fill("#module", "5")
    await page.click("#ask button[type=submit]")
    answer = page.locator("#answer")
    await async_api.expect(answer).to_have_attribute("data-verdict", "wait", timeout=5_000)
    summary = await text(page, "#summary")
    assert re.fullmatch(r"Module 5 may not join yet: its SOC is (19|20|21)\.\d % above the bank's\.", summary)
    soc = answer.locator("li[data-kind='soc']")
    what = await text(page, "li[data-kind='soc'] .what")
    assert re.fullmatch(r"SOC \d+\.\d % vs bank \d+\.\d % \(window 5 %\)", what)
    todo = str(await soc.locator(".todo").inner_text())
    assert re.search(r"discharge module 5 to \d+–\d+ % before connecting it, or wait: it joins by itself", todo)
    assert re.search(r"the bank reaches \d+ % in about [\d.]+ (h|min) at the present power", todo)
    api = await stack.api("/api/join-check/5")
    assert api["verdict"] == "wait" and api["items"][0]["kind"] == "soc"
    # The waiting list offers the modules that are not in the bank.
    await async_api.expect(page.locator("#others li[data-module='5']")).to_have_attribute("data-verdict", "wait")
    await async_api.expect(page.locator("#others li[data-module='3']")).to_have_attribute("data-verdict", "attention")
    await page.context.close()


# -- operator actions ---------------------------------------------------------------------------------------------


async def test_an_operator_action_works_with_the_token_and_is_refused_without_it(stack: Stack) -> None:
    page = await stack.page("/")
    flag = page.locator(".chip[data-flag='full_charge']")
    result = page.locator("#action-result")
    await async_api.expect(flag).to_have_attribute("data-on", "false")

    await page.click("#full-charge")  # no token typed
    await async_api.expect(result).to_have_text("Refused: no token: operator actions need the gateway's token")
    await page.fill("#token", "not-the-token-0123456789")
    await page.click("#full-charge")
    await async_api.expect(result).to_have_text("Refused: wrong token: operator actions need the gateway's token")
    assert not stack.gateway.hub.latest.flags.full_charge
    assert stack.gateway.web is not None and stack.gateway.web.refused == 2

    await page.fill("#token", TOKEN)
    await page.click("#full-charge")
    await async_api.expect(result).to_have_text("Done: full charge requested")
    await async_api.expect(flag).to_have_attribute("data-on", "true", timeout=5_000)
    assert stack.gateway.hub.latest.flags.full_charge
    await page.context.close()
    refusals = [e for e in stack.errors if "status of 403 (Forbidden)" in e]
    assert len(refusals) == 2  # the browser reports each refused request; they were meant
    stack.errors[:] = [e for e in stack.errors if e not in refusals]


# -- every page: no script error, no CSP violation; screenshots ------------------------------------------------------


async def test_every_page_at_both_sizes_renders_without_errors_and_is_photographed(
    stack: Stack, tmp_path: Path
) -> None:
    folder = Path(os.environ.get("BMS_SCREENSHOTS") or tmp_path)
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    paths = {name: "/" if name == "overview" else f"/{name}" for name in PAGES}
    for viewport, name in itertools.product((WIDE, PHONE), PAGES):
        path = paths[name]
        page = await stack.page(path + ("?module=5" if name == "expansion" else ""), viewport)
        if name == "expansion":
            await async_api.expect(page.locator("#answer")).to_be_visible()
        await page.wait_for_timeout(600)  # a few more live updates, so the page shows the bank as it is now
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= viewport["width"], f"{name} at {viewport['width']} px scrolls sideways ({width} px)"
        shot = folder / f"{name}-{viewport['width']}x{viewport['height']}.png"
        await page.screenshot(path=str(shot), full_page=True)
        assert len(await asyncio.to_thread(shot.read_bytes)) > 10_000
        await page.context.close()
    assert stack.errors == []
