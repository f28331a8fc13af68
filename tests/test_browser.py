"""A widget in a real browser: JupyterLab serves a small notebook, headless Chromium runs it and moves a slider.

The headless widget tests call the Python side directly; this one checks the whole loop a student uses: the
widget renders in JupyterLab, a keyboard move of the slider handle travels to the kernel, the picture is
redrawn there, and the new PNG reaches the page (the <img> gets a new blob URL and a new caption).

Needs Debian's ``chromium`` at /usr/bin/chromium and Playwright's Python package (the ``dev`` extra); skips
with the reason otherwise. No browser is ever downloaded (never run ``playwright install``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
REPO = Path(__file__).resolve().parents[1]
SERVER_START_S = 60
WIDGET_S = 60
UPDATE_S = 20

if not CHROMIUM.is_file():
    pytest.skip(f"no Chromium at {CHROMIUM} (Debian: apt-get install -y chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright's Python package is not installed "
                                                             "(pip install -e '.[dev]')")
pytest.importorskip("jupyterlab", reason="JupyterLab is not installed (pip install -e '.[dev]')")

WIDGET_NOTEBOOK = """\
from deeppose_lab import widgets
from deeppose_lab.synthetic import SyntheticPoses

browser = widgets.sample_browser(SyntheticPoses(5, seed=0))
browser"""

# Every widget the notebooks show, each in its own cell, on synthetic people sized like LSP's (96-200 px).
EVERY_WIDGET = [
    """import numpy as np
from deeppose_lab import widgets
from deeppose_lab.synthetic import SyntheticPoses

people = SyntheticPoses(5, seed=0)
poses = np.stack([people.joints + 6.0, people.joints + 2.0])""",
    "widgets.sample_browser(people)",
    "widgets.crop_explorer(people)",
    "widgets.cascade_stepper(people, poses, 2.0)",
    "widgets.error_inspector(people, poses[-1])",
    "widgets.box_picker(people.image(0)[..., :3], lambda box: np.tile(box[:2], (14, 1)), np.array([60., 80, 90, 140]))",
]
LAPTOP = {"width": 1366, "height": 768}  # a classroom laptop's screen
SCREENSHOTS = os.environ.get("DEEPPOSE_SCREENSHOTS")  # a folder: save each widget before and after a change


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_server(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"JupyterLab exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(url, timeout=2) as reply:
                if reply.status == 200:
                    return
        time.sleep(0.5)
    pytest.fail(f"JupyterLab did not answer within {SERVER_START_S} s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def jupyterlab(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A JupyterLab on 127.0.0.1 (random port, random token) serving a copy of a small widget notebook."""
    root = tmp_path / "root"
    root.mkdir()
    nb = new_notebook(cells=[new_code_cell(WIDGET_NOTEBOOK)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, root / "widget.ipynb")
    every = new_notebook(cells=[new_code_cell(source) for source in EVERY_WIDGET], metadata=nb.metadata)
    nbformat.write(every, root / "every_widget.ipynb")
    port, token = free_port(), secrets.token_hex(16)
    env = dict(os.environ)
    for var, sub in (("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_RUNTIME_DIR", "runtime"),
                     ("JUPYTERLAB_SETTINGS_DIR", "settings"), ("JUPYTERLAB_WORKSPACES_DIR", "workspaces"),
                     ("IPYTHONDIR", "ipython")):
        env[var] = str(tmp_path / sub)
    news = tmp_path / "settings" / "@jupyterlab" / "apputils-extension"
    news.mkdir(parents=True)  # no "get notified about Jupyter news?" toast over the widgets
    (news / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    env["OMP_NUM_THREADS"] = "1"
    log = tmp_path / "jupyterlab.log"
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True",
           "--LabApp.news_url=", "--ServerApp.allow_root=True", "--ServerApp.terminals_enabled=False",
           "--ServerApp.shutdown_no_activity_timeout=600"]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_server(f"http://127.0.0.1:{port}/api/status?token={token}", proc, log)
        yield f"http://127.0.0.1:{port}", token
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # the server and the kernel it started, nothing else
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def test_slider_redraws_the_picture_in_chromium(jupyterlab):
    base, token = jupyterlab
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            open_and_run(page, base, token, "widget.ipynb")
            image = page.locator(".jp-OutputArea-output img.widget-image").first
            image.wait_for(state="visible")
            page.wait_for_function("(img) => img.src.startsWith('blob:') && img.naturalWidth > 0",
                                   arg=image.element_handle())
            caption = page.locator(".jp-OutputArea-output .widget-html-content").first
            before_src, before_caption = image.get_attribute("src"), caption.inner_text()
            assert "1 of 5" in before_caption

            handle = page.locator(".jp-OutputArea-output .noUi-handle").first
            handle.focus()
            handle.press("ArrowRight")
            page.wait_for_function("([img, src]) => img.src !== src && img.naturalWidth > 0",
                                   arg=[image.element_handle(), before_src], timeout=UPDATE_S * 1000)
            assert image.get_attribute("src") != before_src
            page.wait_for_function("(el) => el.innerText.includes('2 of 5')", arg=caption.element_handle(),
                                   timeout=UPDATE_S * 1000)
            assert caption.inner_text() != before_caption
        finally:
            browser.close()


def open_and_run(page, base: str, token: str, name: str) -> None:
    page.set_default_timeout(WIDGET_S * 1000)
    page.goto(f"{base}/lab/tree/{name}?token={token}", wait_until="domcontentloaded")
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                           " && window.jupyterapp.shell.currentWidget.sessionContext")
    page.wait_for_selector(".jp-Notebook .jp-Cell")
    page.evaluate("""async () => {
        const panel = window.jupyterapp.shell.currentWidget;
        await panel.sessionContext.ready;
        await window.jupyterapp.commands.execute('notebook:run-all-cells');
    }""")


def test_every_widget_at_its_drawn_size_with_its_control_in_view_on_a_laptop(jupyterlab):
    """At 1366×768 each widget's picture is shown within 10 % of the size it was drawn at (not stretched to the
    cell's width), and it fits on screen together with its main control (the first slider)."""
    base, token = jupyterlab
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=LAPTOP)
            open_and_run(page, base, token, "every_widget.ipynb")
            outputs = page.locator(".jp-OutputArea-output").filter(has=page.locator("img.widget-image"))
            page.wait_for_function("() => { const imgs = document.querySelectorAll("
                                   "'.jp-OutputArea-output img.widget-image'); return imgs.length === 5 && "
                                   "[...imgs].every(i => i.src.startsWith('blob:') && i.naturalWidth > 0); }")
            for k in range(len(WIDGET_NAMES)):
                widget = outputs.nth(k)
                image, control = widget.locator("img.widget-image"), widget.locator(".widget-slider").first
                image.evaluate("(img) => img.scrollIntoView({block: 'end'})")
                page.wait_for_timeout(300)
                shown = image.evaluate("(img) => { const r = img.getBoundingClientRect(); return {w: r.width, "
                                       "h: r.height, top: r.top, bottom: r.bottom, nw: img.naturalWidth, "
                                       "nh: img.naturalHeight}; }")
                assert abs(shown["w"] / shown["nw"] - 1) <= 0.10, (k, shown)
                assert abs(shown["h"] / shown["nh"] - 1) <= 0.10, (k, shown)
                top = control.evaluate("(el) => el.getBoundingClientRect().top")
                assert 0 <= top and shown["bottom"] <= LAPTOP["height"], (k, top, shown)
                if SCREENSHOTS:
                    save_before_and_after(page, widget, control, image, k)
        finally:
            browser.close()


WIDGET_NAMES = ["sample_browser", "crop_explorer", "cascade_stepper", "error_inspector", "box_picker"]


def save_before_and_after(page, widget, control, image, k: int) -> None:
    """Screenshots of widget k before and after one step of its main slider (for docs/widgets/)."""
    folder = Path(SCREENSHOTS)
    folder.mkdir(parents=True, exist_ok=True)
    widget.screenshot(path=str(folder / f"{WIDGET_NAMES[k]}_before.png"))
    src = image.get_attribute("src")
    handle = control.locator(".noUi-handle").first
    handle.focus()
    handle.press("ArrowRight")
    page.wait_for_function("([img, src]) => img.src !== src && img.naturalWidth > 0",
                           arg=[image.element_handle(), src], timeout=UPDATE_S * 1000)
    widget.screenshot(path=str(folder / f"{WIDGET_NAMES[k]}_after.png"))
    for when in ("before", "after"):  # small files for the repository: 128 colours
        path = folder / f"{WIDGET_NAMES[k]}_{when}.png"
        Image.open(path).convert("RGB").quantize(128).save(path, optimize=True)
