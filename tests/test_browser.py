"""`spangpt explore` in a real browser: Debian's Chromium (/usr/bin/chromium) driven by Playwright.

Starts the command as a user would, on a free port, asks a question on the page and checks that the
answers and the attention map appear, then that a bad question is a message on the page. The screenshot
is kept in the test's folder; SPANGPT_SCREENSHOT=PATH also copies it there (the README's picture).
SPANGPT_EXPLORE=DIR explores DIR (e.g. a demo run) instead of the tiny test models, and
SPANGPT_NAME asks about that person. Where Chromium or
Playwright is missing the test skips, except under SPANGPT_REQUIRE_BROWSER=1, which .ci/run sets.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from spangpt.corpus import name_in_question
from spangpt.data import load_questions

CHROMIUM = os.environ.get("SPANGPT_CHROMIUM", "/usr/bin/chromium")
# As root on these machines Chromium needs --no-sandbox; the rest keep it off a network it cannot reach.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


def _need_browser():
    missing = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package")
    if not Path(CHROMIUM).is_file():
        missing.append(CHROMIUM)
    if missing:
        why = f"browser test needs {' and '.join(missing)} (apt-get install chromium; pip install playwright)"
        if os.environ.get("SPANGPT_REQUIRE_BROWSER") == "1":
            pytest.fail(why)
        pytest.skip(why)


@pytest.fixture
def server(run_dir):
    """`spangpt explore` on a free port -> its URL; stopped after the test."""
    _need_browser()
    target = os.environ.get("SPANGPT_EXPLORE") or str(run_dir)
    proc = subprocess.Popen([sys.executable, "-m", "spangpt", "explore", target, "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()  # printed once the models are loaded and the port is bound
    if "http://" not in line:
        proc.kill()
        pytest.fail(f"explore did not start: {line}{proc.stderr.read()}")
    yield line.split("http://")[1].split()[0]
    proc.terminate()
    proc.wait(timeout=30)


@pytest.mark.slow
def test_the_page_answers_a_question_and_draws_the_attention_map(server, synth_dir, tmp_path):
    from playwright.sync_api import sync_playwright

    first = load_questions(synth_dir / "birth_dev.tsv")[0][0]
    name = os.environ.get("SPANGPT_NAME") or name_in_question(first)  # SPANGPT_NAME: a person of SPANGPT_EXPLORE's
    shot = tmp_path / "explore.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 1100})
            page.goto(f"http://{server}")
            page.wait_for_selector("body[data-ready]", timeout=60_000)
            n_models = page.locator("#attention-model option").count()
            assert n_models >= 1
            last = page.locator("#attention-model option").nth(n_models - 1).get_attribute("value")
            page.select_option("#attention-model", last)  # the map of the last model (RoPE in a table)

            page.fill("#question", name)
            page.click("#ask-form button")
            page.wait_for_selector("table.heat td", timeout=60_000)
            assert page.locator("#answers p").first.inner_text() == f"Where was {name} born?"
            assert page.locator(".card .greedy").count() == n_models  # every model answered
            assert page.locator(".card table.alternatives tr").count() == 5 * n_models
            layers = page.locator("table.heat")
            assert layers.count() >= 1
            cells = layers.first.locator("tr").nth(1).locator("td").count()
            assert cells == len(f"Where was {name} born?") + 1  # a cell per prompt character, ⁇ included
            page.wait_for_selector("#dev tbody tr", timeout=60_000)  # the dev table fills in too
            page.screenshot(path=str(shot))

            n_layers = layers.count()
            page.click("#ask-form button")
            page.click("#ask-form button")  # a second Ask before the first reply: one result, not two
            page.wait_for_load_state("networkidle")
            page.wait_for_timeout(500)
            assert page.locator("#answers > p").count() == 1 and page.locator("table.heat").count() == n_layers

            page.fill("#question", "")
            page.click("#ask-form button")
            page.wait_for_selector("#ask-error:not([hidden])")
            assert page.locator("#ask-error").inner_text() == "empty question"
            assert page.locator("table.heat").count() == 0
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
    if os.environ.get("SPANGPT_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["SPANGPT_SCREENSHOT"])
