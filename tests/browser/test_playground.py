"""The search playground and /docs in a real headless Chromium against `rankfunnel serve` on loopback.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them) and ``selenium``; run with
``make browser``. Every request the pages make is recorded from Chrome's DevTools performance log and must stay
on 127.0.0.1. ``RANKFUNNEL_SCREENSHOT_DIR=docs/img make browser`` refreshes the screenshots in the docs.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.browser

API_KEY = "playground-test-key-1234"
QUERY = "discount approval manager"
# The batching window makes stage 2 wait this long, so the two phases are visibly apart in the page.
RERANK_WAIT_MS = 2500


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "from rankfunnel.cli import main; main()", *args]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`rankfunnel serve` over the packaged sample corpus (hashing embedder, fake reranker, one API key)."""
    from rankfunnel.ingest import sample_data

    index_dir = tmp_path_factory.mktemp("browser") / "idx"
    subprocess.run(
        _cli("index", str(sample_data()), "--index-dir", str(index_dir), "--embedder", "hashing:64"),
        check=True,
        capture_output=True,
        timeout=120,
    )
    port = _free_port()
    env = {**os.environ, "RANKFUNNEL_API_KEYS": API_KEY}
    log = (index_dir.parent / "serve.log").open("w")
    proc = subprocess.Popen(
        _cli(
            "serve", "--index-dir", str(index_dir), "--reranker", "fake", "--host", "127.0.0.1",
            "--port", str(port), "--max-wait-ms", str(RERANK_WAIT_MS), "--cache-size", "0",
            "--log-level", "warning",
        ),
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, (index_dir.parent / "serve.log").read_text()
            try:
                if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "rankfunnel serve did not become ready in 90 s"
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def driver() -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    chromedriver = shutil.which("chromedriver")
    if not chromium or not chromedriver:
        pytest.fail("Chromium not found: install it with `apt-get install -y chromium chromium-driver`.")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1320,1040",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
        "--disable-default-apps", "--hide-scrollbars", "--force-device-scale-factor=1",
    ):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    drv = webdriver.Chrome(service=Service(executable_path=chromedriver), options=opts)
    drv.set_page_load_timeout(30)
    try:
        yield drv
    finally:
        drv.quit()


def _requested_urls(drv) -> list[str]:
    """URLs of every request the page made since the last call (Chrome DevTools ``Network`` events)."""
    urls = []
    for entry in drv.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    return urls


def _assert_local(urls: list[str], base: str) -> None:
    outside = [u for u in urls if not (u.startswith((base + "/", "blob:" + base + "/", "data:")) or u == base)]
    assert not outside, f"requests left {base}: {outside}"


def _console_problems(drv) -> list[str]:
    return [
        e["message"]
        for e in drv.get_log("browser")
        # the 401 and 422 are provoked on purpose
    if e["level"] == "SEVERE" and "status of 401" not in e["message"] and "status of 422" not in e["message"]
    ]


def _wait(drv, cond, timeout: float = 20, msg: str = ""):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(drv, timeout, poll_frequency=0.05).until(cond, msg)


def _state(drv, column: str) -> str:
    return str(drv.find_element("id", f"col-{column}").get_attribute("data-state"))


def _screenshot(drv, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    drv.save_screenshot(str(path))
    if target := os.environ.get("RANKFUNNEL_SCREENSHOT_DIR"):
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(target) / name)
    return path


def _search(drv, query: str, *, two_phase: bool, top_n: int = 5) -> None:
    q = drv.find_element("id", "query")
    q.clear()
    q.send_keys(query)
    box = drv.find_element("id", "two_phase")
    if box.is_selected() != two_phase:
        box.click()
    n = drv.find_element("id", "top_n")
    n.clear()
    n.send_keys(str(top_n))
    drv.find_element("id", "go").click()


def _hits(drv, column: str) -> list[dict[str, str]]:
    rows = drv.find_elements("css selector", f"#{column}-hits li.hit")
    out = []
    for r in rows:
        moves = r.find_elements("css selector", ".move")
        out.append(
            {
                "id": str(r.get_attribute("data-id")),
                "rank": r.find_element("css selector", ".rank").text,
                "move": moves[0].text if moves else "",
                "scores": r.find_element("css selector", ".scores").text,
            }
        )
    return out


def test_playground_search_two_phase_and_docs_offline(server, driver, tmp_path):
    drv = driver
    drv.get(server + "/")
    _wait(drv, lambda d: d.find_element("id", "server").get_attribute("data-state") == "ready", msg="readyz")
    assert "reranker: fake" in drv.find_element("id", "server").text

    # Without the key the server answers 401, and the page says so visibly.
    _search(drv, QUERY, two_phase=False)
    _wait(drv, lambda d: d.find_element("id", "error").is_displayed(), msg="401 error box")
    error = drv.find_element("id", "error").text
    assert "HTTP 401" in error and "API key" in error
    drv.find_element("id", "api_key").send_keys(API_KEY)
    assert drv.execute_script("return sessionStorage.getItem('rankfunnel.apiKey')") == API_KEY

    # Blocking search: both columns, moves and scores.
    _search(drv, QUERY, two_phase=False)
    _wait(drv, lambda d: _state(d, "reranked") == "filled", timeout=30, msg="blocking search")
    assert not drv.find_element("id", "error").is_displayed()
    stage1, reranked = _hits(drv, "stage1"), _hits(drv, "reranked")
    assert stage1 and len(reranked) == 5
    assert {h["id"] for h in stage1} == {h["id"] for h in reranked}  # blocking: the final hits in stage-1 order
    assert [h["rank"] for h in reranked] == [str(i) for i in range(1, 6)]
    assert all(h["move"] and ("▲" in h["move"] or "▼" in h["move"] or h["move"] == "=") for h in reranked)
    assert all("raw" in h["scores"] and "cal." in h["scores"] for h in reranked)
    timings = drv.find_element("id", "timings").text
    assert "stage 1" in timings and "rerank" in timings and "ms" in timings
    assert drv.find_element("id", "verdict").text == "Reranked by fake"

    # Two-phase: the stage-1 column fills first while the reranked one waits, then the reranked list arrives.
    _search(drv, QUERY, two_phase=True)
    _wait(drv, lambda d: _state(d, "stage1") == "filled", timeout=30, msg="stage-1 event")
    assert _state(drv, "reranked") == "pending", "the reranked column should still be waiting"
    assert "waiting for the reranker" in drv.find_element("id", "reranked-note").text
    stage1_two_phase = _hits(drv, "stage1")
    assert [h["rank"] for h in stage1_two_phase] == [str(i) for i in range(1, 6)]
    _screenshot(drv, tmp_path, "playground-two-phase.png")
    _wait(drv, lambda d: _state(d, "reranked") == "filled", timeout=30, msg="reranked event")
    s1_at = float(drv.find_element("id", "col-stage1").get_attribute("data-filled-at"))
    s2_at = float(drv.find_element("id", "col-reranked").get_attribute("data-filled-at"))
    assert s2_at > s1_at + RERANK_WAIT_MS / 2, (s1_at, s2_at)
    assert len(_hits(drv, "reranked")) == 5
    assert _hits(drv, "stage1") == stage1_two_phase  # the stage-1 column is left as it was
    assert "browser reranked" in drv.find_element("id", "timings").text
    _screenshot(drv, tmp_path, "playground.png")

    # Stage 2 switched off: the reason is shown instead of a reranked list.
    drv.find_element("css selector", "#rerank option[value='off']").click()
    _search(drv, QUERY, two_phase=True)
    _wait(drv, lambda d: _state(d, "reranked") == "skipped", timeout=30, msg="skipped stage 2")
    assert "rerank=false" in drv.find_element("id", "reranked-note").text
    drv.find_element("css selector", "#rerank option[value='on']").click()

    # A bad request (top-k above the server's limit) is a visible 4xx that names the limit.
    k = drv.find_element("id", "top_k")
    k.clear()
    k.send_keys("5000")
    _search(drv, QUERY, two_phase=False)
    _wait(drv, lambda d: d.find_element("id", "error").is_displayed(), msg="4xx error box")
    error = drv.find_element("id", "error").text
    assert "HTTP 422" in error and "max_documents" in error, error
    k.clear()
    k.send_keys("50")

    _assert_local(_requested_urls(drv), server)
    assert not _console_problems(drv)

    # /docs: Swagger UI renders the schema from bundled assets.
    drv.get(server + "/docs")
    _wait(drv, lambda d: d.find_elements("css selector", ".opblock-summary-path"), timeout=30, msg="Swagger UI")
    paths = {e.text.replace("\u200b", "") for e in drv.find_elements("css selector", ".opblock-summary-path")}
    assert {"/v1/search", "/v2/rerank"} <= paths
    assert drv.find_element("css selector", ".info .title").text.startswith("rankfunnel")
    _screenshot(drv, tmp_path, "api-docs.png")
    urls = _requested_urls(drv)
    assert any(u.endswith("/static/docs/swagger-ui-bundle.js") for u in urls)
    _assert_local(urls, server)

    auth = {"Authorization": f"Bearer {API_KEY}"}
    assert httpx.get(server + "/redoc", headers=auth).status_code == 404  # Redoc would load its logo from a CDN
    assert not _console_problems(drv)
