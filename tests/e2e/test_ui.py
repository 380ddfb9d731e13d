"""`kubectl treadle ui`: the page in a real headless browser (Debian's chromium) shows a
workflow's graph with every task and its phase, updates it live as tasks finish, shows a task's
logs, and a sync job's status, locks and runs (SPEC, The kubectl plugin: ui)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.browser import Browser
from support.cluster import Cluster
from support.operator import OperatorProcess

SCREENSHOT = os.environ.get("TREADLE_UI_SCREENSHOT")
"""Where to keep a screenshot of the page (docs/ui.png is made this way)."""


@pytest.fixture
def page_url(crds: Cluster, namespace: str) -> Iterator[str]:
    """`kubectl treadle ui --port 0` for `namespace`, and the address (with its token) it
    printed."""
    with crds.plugin_process("ui", "--port", "0", "-n", namespace) as server:
        assert server.stdout is not None
        line = server.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:\d+/\?token=\S+", line)
        assert found, line
        try:
            yield found.group(0)
        finally:
            server.terminate()
            server.wait(10)


def workflow(gate: Path) -> str:
    wait = f"echo waiting for the gate >&2; while [ ! -e {gate} ]; do sleep 0.1; done; echo opened"
    body = {
        "apiVersion": "treadle.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "shown"},
        "spec": {
            "tasks": [
                {"name": "fetch", "command": {"args": ["echo", '{"rows": 3}']}},
                {"name": "gate", "dependsOn": ["fetch"], "command": {"args": ["sh", "-c", wait]}},
                {
                    "name": "each",
                    "dependsOn": ["fetch"],
                    "forEach": "{{ range(tasks.fetch.output.rows) | list }}",
                    "command": {"args": ["echo", "{{ item }}"]},
                },
                {"name": "report", "dependsOn": ["gate", "each"], "command": {"args": ["true"]}},
            ],
            "onExit": [{"name": "notify", "command": {"args": ["echo", "bye"]}}],
        },
    }
    return json.dumps(body)


def phases(browser_value: object) -> dict[str, str]:
    return dict(browser_value) if isinstance(browser_value, list) else {}


NODES = (
    "[...document.querySelectorAll('#graph g.node')].map(n => [n.dataset.task, n.dataset.phase])"
)


async def test_the_page_shows_a_workflows_graph_and_follows_it_live(
    crds: Cluster, operator: OperatorProcess, namespace: str, page_url: str, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=workflow(gate))
    browser = await Browser.start(tmp_path / "chromium")
    try:
        await browser.open(f"{page_url}#workflows/{namespace}/shown")
        await browser.wait_for("!!document.querySelector('tr.row[data-name=\"shown\"]')")
        shown = await browser.wait_for(
            f"(() => {{ const n = {NODES}; "
            "return n.length === 5 && n.some(([t, p]) => t === 'each' && p === 'Succeeded') && n;"
            " })()"
        )
        graph = phases(shown)
        assert set(graph) == {"fetch", "gate", "each", "report", "notify"}
        assert graph["fetch"] == "Succeeded"
        assert graph["gate"] in ("Queued", "Running")  # it waits for the gate
        assert graph["report"] == "Pending"
        edges = await browser.evaluate(
            "[...document.querySelectorAll('#graph path.edge')]"
            ".map(e => e.dataset.from + '>' + e.dataset.to)"
        )
        assert {"fetch>gate", "fetch>each", "gate>report", "each>report"} <= set(edges)
        assert "report>notify" in edges  # exit tasks come after the DAG
        exits = await browser.evaluate("[...document.querySelectorAll('#graph g.exit')].length")
        assert exits == 1
        # A task's details and its log so far (the running attempt's copy).
        await browser.evaluate(
            "document.querySelector('#graph g.node[data-task=\"gate\"]')"
            ".dispatchEvent(new MouseEvent('click', {bubbles: true}))"
        )
        await browser.wait_for(
            "(document.querySelector('#logs') || {}).innerText?.includes('waiting for the gate')"
        )
        gate.touch()
        # Live: the page is not reloaded; the change arrives as an event.
        await browser.wait_for(
            f"(() => {{ const n = Object.fromEntries({NODES}); "
            "return n.gate === 'Succeeded' && n.report === 'Succeeded' && "
            "n.notify === 'Succeeded'; })()"
        )
        await browser.wait_for(
            "(document.querySelector('#logs') || {}).innerText?.includes('opened')"
        )
        each = await browser.wait_for(
            "document.querySelector('#graph g.node[data-task=\"each\"] text:last-of-type')"
            ".textContent"
        )
        assert "3/3 items" in each
        listed = await browser.wait_for(
            "document.querySelector('tr.row[data-name=\"shown\"] .phase')?.dataset.phase"
            " === 'Succeeded'"
        )
        assert listed
        if SCREENSHOT:
            await asyncio.to_thread(Path(SCREENSHOT).write_bytes, await browser.screenshot())
    finally:
        await browser.close()


async def test_the_page_shows_a_sync_jobs_status_locks_and_runs(
    crds: Cluster, operator: OperatorProcess, namespace: str, page_url: str, tmp_path: Path
) -> None:
    job = {
        "apiVersion": "treadle.dev/v1alpha1",
        "kind": "SyncJob",
        "metadata": {"name": "nightly"},
        "spec": {
            "schedule": "0 3 * * *",
            "suspend": True,
            "tables": ["orders"],
            "template": {"spec": {"containers": [
                {"name": "sync", "image": "x", "command": ["true"]}]}},
        },
    }  # fmt: skip
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(job))
    browser = await Browser.start(tmp_path / "chromium")
    try:
        await browser.open(f"{page_url}#syncjobs/{namespace}/nightly")
        rows = await browser.wait_for(
            "document.querySelector('#status-rows')?.innerText.includes('0 3 * * *') && "
            "document.querySelector('#status-rows').innerText"
        )
        assert "Suspended" in rows
        assert "True" in rows
        assert await browser.evaluate("document.querySelector('#tab-syncjobs.active') !== null")
        listed = await browser.evaluate(
            "document.querySelector('tr.row[data-name=\"nightly\"]')?.innerText"
        )
        assert "(suspended)" in listed
    finally:
        await browser.close()


def test_the_page_answers_only_its_own_token_on_the_loopback_address(page_url: str) -> None:
    base = page_url.split("/?")[0]
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{base}/api/workflows", timeout=10)
    assert refused.value.code == 401
    refused.value.close()
    rebound = urllib.request.Request(f"{page_url}", headers={"Host": "evil.example:80"})
    with pytest.raises(urllib.error.HTTPError) as foreign:
        urllib.request.urlopen(rebound, timeout=10)
    assert foreign.value.code == 403
    foreign.value.close()
    # The token sets a cookie, and the page and its API then answer.
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
    with opener.open(page_url, timeout=10) as first:
        assert "<title>Treadle</title>" in first.read().decode()
    with opener.open(f"{base}/api/workflows", timeout=10) as listing:
        assert json.loads(listing.read()) == []
