"""The explorer in a real browser: Playwright driving Debian's headless Chromium (no browser
download). Skipped with a message where either is missing (`make test` installs the browser
where apt-get and root are available). Writes the README's screenshot, docs/img/explorer.png."""
from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlparse

import pytest
from PIL import Image

from hiclip.explore import views

pytest.importorskip("gradio", reason="the [explorer] extra is not installed")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")

BROWSERS = ("/usr/lib/chromium/chromium-headless-shell", "/usr/lib/chromium/headless_shell")
REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO / "docs" / "img" / "explorer.png"
WAIT_MS = 120_000  # generous: the suite may share a busy CPU; running out is a failure


def _browser() -> str | None:
    found = shutil.which("chromium-headless-shell")
    return found or next((p for p in BROWSERS if Path(p).is_file()), None)


def _demo_panels() -> list | None:
    """The demo's seed-0 and seed-1 HiCLIP-Tiny where `make demo` has run here (a screenshot of
    trained models), else None (the random ones of the fixture)."""
    try:
        paths = [views.demo_checkpoint(REPO / views.DEMO_OUT, seed=s) for s in (0, 1)]
    except FileNotFoundError:
        return None
    return [views.load_panel(str(p)) for p in paths]


def test_explorer_in_a_browser(panels, scene_png, tmp_path, offline):
    browser_path = _browser()
    if browser_path is None:
        pytest.skip("no headless Chromium: apt-get install chromium-headless-shell (done by `make test` as root)")
    from hiclip.explore.app import build_app, launch

    panels = _demo_panels() or panels
    app = build_app(panels, tmp_path)
    url = launch(app, block=False)
    elsewhere: list[str] = []

    def only_here(route):
        host = urlparse(route.request.url).hostname
        if route.request.url.startswith(("data:", "blob:")) or host == "127.0.0.1":
            return route.continue_()
        elsewhere.append(route.request.url)
        return route.abort()

    caption = "a big red circle above two small blue squares"
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.route("**/*", only_here)
            page.goto(url, timeout=WAIT_MS)
            box = page.locator("#caption textarea")
            box.fill(caption, timeout=WAIT_MS)
            page.locator("#parse").click(timeout=WAIT_MS)
            for i, panel in enumerate(panels):
                tree, _, _ = views.caption_view(panel, caption, "topdown", 0.5)
                sync_api.expect(page.locator(f"#tree-{i} textarea")).to_have_value(str(tree), timeout=WAIT_MS)
            page.locator("#image input[type=file]").set_input_files(str(scene_png[0]), timeout=WAIT_MS)
            for i, panel in enumerate(panels):
                _, counts = views.image_view(panel, Image.open(scene_png[0]), 0.5)
                want = "regions per layer: " + " ".join(map(str, counts))
                sync_api.expect(page.locator(f"#regions-{i} textarea")).to_have_value(want, timeout=WAIT_MS)
                sync_api.expect(page.locator(f"#groups-{i} img")).to_have_count(len(counts), timeout=WAIT_MS)
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)
            browser.close()
    finally:
        app.close()
    assert elsewhere == [], f"the page asked other hosts for {elsewhere}"
    assert Image.open(SCREENSHOT).size[0] == 1400
