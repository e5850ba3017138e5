"""Notebook 2's listen panel in a real browser, and the command behind `make lab`.

The browser test serves a copy of notebooks/ with JupyterLab on 127.0.0.1, opens lesson 2 in
headless Chromium (Debian's /usr/bin/chromium, which scripts/ensure-browser.sh installs) driven
by Playwright, runs every cell, and uses the panel as a learner does: a socket owner and group
that shut Nginx's workers out must turn the badge red with Nginx's 502. Screenshots, and on
failure the page's visible text and JupyterLab's log, go to test-output/.
"""

from __future__ import annotations

import http.client
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from jupyter_support import (
    TEST_SERVER_OPTIONS,
    JupyterServer,
    free_port,
    quiet_lab_environment,
    running_jupyterlab,
)
from playwright.sync_api import (
    ConsoleMessage,
    Locator,
    Page,
    Request,
    Response,
    expect,
    sync_playwright,
)

from labkit import list_labs
from labkit.panels import BADGE_COLOURS
from labkit.wait import poll

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "test-output"
NOTEBOOK = "02-socket-permissions.ipynb"
CHROMIUM = Path("/usr/bin/chromium")
# As root Chromium needs --no-sandbox; without the background-networking flags it keeps trying
# to reach Google's hosts, which a closed network refuses. Playwright adds a new empty
# --user-data-dir itself (launch_persistent_context).
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 2000}
# Limits in milliseconds, generous for a loaded 2-core machine; each one waits for something
# the page shows, never for a fixed time. Running notebook 2 takes about 20 s unloaded.
ACTION_LIMIT = 60_000
OPEN_LIMIT = 120_000
RUN_ALL_LIMIT = 300_000
PANEL_LIMIT = 180_000
# Seconds for the notebook's clean-up cell to remove the lab from the engine.
CLEAN_UP_LIMIT = 120.0
WRONG_OWNER = {"listen.owner": "ubuntu", "listen.group": "ubuntu"}
LAST_OUTPUT = "lab removed"
KERNEL_IDLE = re.compile(r"\| Idle$")
THEME_ERROR = "Error Loading Theme"
OPEN_TRIES = 3
BADGE_TEXT = re.compile(r"^(HTTP \d{3}|no request yet)")
LAB_NAME = re.compile(r"^lab (?P<name>\S+) \((pod|network)\)", re.MULTILINE)


@pytest.mark.engine
@pytest.mark.browser
def test_panel_in_browser_shows_red_502_for_wrong_socket_owner(tmp_path: Path) -> None:
    root = shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks")
    command = [*jupyterlab_command(root), *TEST_SERVER_OPTIONS]
    environment = quiet_lab_environment(tmp_path / "jupyter")

    with (
        running_jupyterlab(command, root, tmp_path / "jupyterlab.log", environment) as server,
        chromium_page(tmp_path / "chromium-profile") as page,
        evidence_on_failure(page, server, record_trouble(page)),
    ):
        open_notebook(page, server, NOTEBOOK)
        run_all_cells(page)
        panel = started_panel(page)
        set_fields(panel, WRONG_OWNER)
        panel.get_by_role("button", name="Apply", exact=True).click()
        badge = wait_for_badge(panel, "HTTP 502")
        save_screenshots(page, panel, "browser-panel-502")
        shown, status = panel.inner_text(), badge.inner_text()
        colour = badge.evaluate("element => getComputedStyle(element).backgroundColor")
        lab_name = name_of_lab(shown)
        run_clean_up_cell(page)
        is_removed = wait_until_removed(lab_name)

    assert status == "HTTP 502 Bad Gateway"
    assert colour == css_rgb(BADGE_COLOURS["red"])
    assert "socket-permission-denied" in shown
    assert "srw-rw---- ubuntu ubuntu /run/php/php8.2-fpm.sock" in shown
    assert is_removed


def test_make_lab_command_serves_the_url_it_prints(tmp_path: Path) -> None:
    command = make_lab_command(free_port())

    with running_jupyterlab(["sh", "-c", command], ROOT, tmp_path / "make-lab.log") as server:
        # On a loaded machine the URL can be printed a moment before the port takes requests.
        status, page = poll(lambda: _get_or_none(server.url), 30, interval=0.5) or get(server.url)

    assert command.startswith("cd notebooks && ")
    assert status == 200
    assert "<title>JupyterLab</title>" in page


# Starting things


def jupyterlab_command(root: Path) -> list[str]:
    """Return the command that serves `root` on 127.0.0.1 as `make lab` does, on a free port."""
    return [
        *(sys.executable, "-m", "jupyter", "lab"),
        "--ip=127.0.0.1",
        f"--port={free_port()}",
        "--no-browser",
        "--allow-root",
        f"--ServerApp.root_dir={root}",
    ]


def make_lab_command(port: int) -> str:
    """Return the shell line `make lab` runs to start JupyterLab, as `make --dry-run` prints it."""
    printed = subprocess.run(
        ["make", "--dry-run", "--no-print-directory", "lab", f"LAB_PORT={port}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    commands = [line for line in printed.replace("\\\n", " ").splitlines() if "jupyter lab" in line]
    assert len(commands) == 1, printed
    return commands[0]


@contextmanager
def chromium_page(profile: Path) -> Iterator[Page]:
    """Yield a page of headless Debian Chromium with a new empty profile; close it afterwards."""
    if not CHROMIUM.exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: run scripts/ensure-browser.sh (`make test` does)")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            chromium_sandbox=False,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport=VIEWPORT,
        )
        try:
            context.set_default_timeout(ACTION_LIMIT)
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


# What the learner does


def open_notebook(page: Page, server: JupyterServer, notebook: str) -> None:
    """Open a notebook and wait for its kernel; load the page again if its theme failed.

    On a loaded machine JupyterLab now and then fails to fetch its theme stylesheet and shows
    a modal dialog over everything (seen twice in about 30 runs); a learner would reload.
    """
    theme_error = page.get_by_text(THEME_ERROR)
    for _ in range(OPEN_TRIES):
        page.goto(server.page_url(f"lab/tree/{notebook}"), timeout=OPEN_LIMIT)
        idle = page.get_by_text(KERNEL_IDLE)
        expect(idle.or_(theme_error).first).to_be_visible(timeout=OPEN_LIMIT)
        if not theme_error.count():
            return
    raise AssertionError(f"JupyterLab's theme failed to load {OPEN_TRIES} times in a row")


def run_all_cells(page: Page) -> None:
    """Clear the committed outputs, run every cell, and wait for the last cell's output.

    Raises:
        AssertionError: A cell raised; the message has its traceback.
    """
    # Cleared first, so that the committed outputs cannot pass for new ones.
    choose_menu_item(page, "Edit", "Clear Outputs of All Cells")
    choose_menu_item(page, "Run", "Run All Cells")
    finished = page.get_by_text(LAST_OUTPUT, exact=True)
    failed = page.locator(".jp-OutputArea-output", has_text="Traceback (most recent call last)")
    expect(finished.or_(failed).first).to_be_visible(timeout=RUN_ALL_LIMIT)
    if failed.count():
        raise AssertionError(f"a cell of {NOTEBOOK} failed:\n{failed.first.inner_text()}")


def started_panel(page: Page) -> Locator:
    """Return the rendered panel once its lab is up and a first request went through.

    Run All also ran the notebook's clean-up cell, so the panel's lab is down and Apply would
    only say so; the panel's own Start button brings it back, as a learner would press it.
    """
    panel = page.locator(".widget-vbox").filter(
        has=page.get_by_role("button", name="Apply", exact=True)
    )
    expect(panel).to_be_visible(timeout=PANEL_LIMIT)
    panel.get_by_role("button", name="Start lab").click()
    wait_for_badge(panel, "HTTP 200")
    return panel


def set_fields(panel: Locator, values: Mapping[str, str]) -> None:
    for key, value in values.items():
        field = panel.get_by_label(key, exact=True)
        field.fill(value)
        # The boxes send their value when they lose focus (continuous_update=False).
        field.press("Tab")
        expect(field).to_have_value(value)


def wait_for_badge(panel: Locator, status: str) -> Locator:
    """Wait until the badge shows `status` (e.g. ``HTTP 502``) and every button is usable."""
    badge = panel.locator(".widget-label").filter(has_text=BADGE_TEXT)
    expect(badge).to_have_text(re.compile(rf"^{re.escape(status)}\b"), timeout=PANEL_LIMIT)
    for button in panel.get_by_role("button").all():
        expect(button).to_be_enabled(timeout=PANEL_LIMIT)
    return badge


def run_clean_up_cell(page: Page) -> None:
    """Run the notebook's last cell, which removes the lab (`lab.down()`)."""
    cell = page.locator(".jp-CodeCell").filter(has_text="lab.down()").last
    cell.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Control+Enter")


def choose_menu_item(page: Page, menu: str, item: str) -> None:
    page.get_by_role("menuitem", name=menu, exact=True).click()
    page.get_by_role("menuitem", name=item, exact=True).click()


# Evidence and reading results


def record_trouble(page: Page) -> list[str]:
    """Return a list that collects the page's failed requests, HTTP errors and console errors."""
    trouble: list[str] = []

    def on_failed_request(request: Request) -> None:
        trouble.append(f"request failed: {request.method} {request.url}: {request.failure}")

    def on_response(response: Response) -> None:
        if response.status >= 400:
            trouble.append(f"HTTP {response.status}: {response.request.method} {response.url}")

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            trouble.append(f"console error: {message.text}")

    page.on("requestfailed", on_failed_request)
    page.on("response", on_response)
    page.on("console", on_console)
    return trouble


@contextmanager
def evidence_on_failure(page: Page, server: JupyterServer, trouble: list[str]) -> Iterator[None]:
    """Save a screenshot, the page's text, its trouble and JupyterLab's log if the block fails."""
    try:
        yield
    except BaseException as error:
        error.add_note(f"evidence: {save_failure_evidence(page, server, trouble)}")
        raise


def save_failure_evidence(page: Page, server: JupyterServer, trouble: list[str]) -> str:
    """Write what the page shows into test-output/ and return where it went."""
    OUTPUT.mkdir(exist_ok=True)
    screenshot, text = OUTPUT / "browser-failure.png", OUTPUT / "browser-failure.txt"
    # Each part is kept even when another cannot be read (a crashed page, say).
    parts = [f"page: {page.url}", "\n".join(["browser trouble:", *trouble])]
    try:
        page.screenshot(path=screenshot)
    except Exception as error:
        parts.append(f"(no screenshot: {error})")
    try:
        parts.append(f"visible text:\n{page.locator('body').inner_text(timeout=10_000)}")
    except Exception as error:
        parts.append(f"(no page text: {error})")
    parts.append(f"JupyterLab's log, last lines:\n{server.log_tail()}")
    text.write_text("\n\n".join(parts) + "\n")
    return f"{screenshot}, {text}"


def save_screenshots(page: Page, panel: Locator, name: str) -> None:
    """Save the panel alone and the JupyterLab window around it, under test-output/."""
    OUTPUT.mkdir(exist_ok=True)
    panel.screenshot(path=OUTPUT / f"{name}.png")
    panel.locator(".widget-label").filter(has_text=BADGE_TEXT).scroll_into_view_if_needed()
    page.screenshot(path=OUTPUT / f"{name}-window.png")


def name_of_lab(panel_text: str) -> str:
    found = LAB_NAME.search(panel_text)
    assert found is not None, panel_text
    return found["name"]


def wait_until_removed(lab_name: str) -> bool:
    """Return whether the lab left the engine within `CLEAN_UP_LIMIT` seconds."""

    def is_gone() -> bool | None:
        return True if lab_name not in {lab.name for lab in list_labs()} else None

    return poll(is_gone, CLEAN_UP_LIMIT, interval=0.5) is not None


def css_rgb(colour: str) -> str:
    """Return ``#b3261e`` the way a browser reports a computed colour: ``rgb(179, 38, 30)``."""
    red, green, blue = (int(colour[index : index + 2], 16) for index in (1, 3, 5))
    return f"rgb({red}, {green}, {blue})"


def _get_or_none(url: str) -> tuple[int, str] | None:
    try:
        return get(url)
    except ConnectionRefusedError:
        return None


def get(url: str) -> tuple[int, str]:
    """Send a GET to a URL on 127.0.0.1; return the status and the body."""
    parts = urlsplit(url)
    assert parts.hostname == "127.0.0.1", url
    connection = http.client.HTTPConnection("127.0.0.1", parts.port, timeout=60)
    try:
        connection.request("GET", f"{parts.path}?{parts.query}")
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        connection.close()
