"""The seed's scenarios end to end, each against a fresh embedded broker."""

import os
import shutil

import pytest

from strom.embedded import EmbeddedBroker


@pytest.fixture
def bootstrap():
    with EmbeddedBroker(storage="memory", **{"log.retention.check.interval.ms": "500"}) as b:
        yield b.bootstrap_servers


def test_ecommerce(bootstrap):
    from examples.ecommerce.app import run

    result = run(bootstrap, orders=40, say=lambda *_: None)
    assert result["payments"] >= 40 and result["inventory"] >= 40
    assert result["notified"] == [f"order-{i:05d}" for i in range(40)]  # caught up, nothing lost
    assert result["analytics"] == [f"order-{i:05d}" for i in range(40)]  # full replay


def test_banking_exactly_once_through_sigkill(bootstrap, tmp_path):
    """The ledger writer and the transactional fraud check are SIGKILLed
    mid-stream and restarted: balances exact, and read_committed readers see
    every alert and every window update of the fraud check exactly once."""
    from examples.banking.app import run

    n = 800
    result = run(bootstrap, n=n, db=str(tmp_path / "ledger.db"), say=lambda *_: None)
    assert result["balances"] == result["expected"]
    assert 0 < result["fraud_killed_at"] < n  # killed mid-stream
    assert sorted(a["txn_id"] for a in result["alerts"]) == sorted(
        a["txn_id"] for a in result["expected_alerts"])  # each alert once, none lost
    assert result["alerts"] and all(a["reasons"] for a in result["alerts"])
    assert any("within" in r for a in result["alerts"] for r in a["reasons"])  # velocity rule
    assert any("above" in r for a in result["alerts"] for r in a["reasons"])  # amount rule
    # one window update per input record, committed with its offset: a
    # replay after the kill would duplicate some, a lost batch drop some
    assert sorted(s["txn_id"] for s in result["state"]) == [f"txn-{i:06d}" for i in range(n)]
    assert result["state_in_log"] > n  # what the killed transaction wrote stays in the log ...
    assert sorted(result["notified"]) == sorted(a["txn_id"] for a in result["alerts"])  # ... unseen


def test_eventsourcing(bootstrap):
    from examples.eventsourcing.app import run

    result = run(bootstrap, events=300, accounts=10, compaction_timeout=60, say=lambda *_: None)
    assert result["full"] == result["fast"]
    assert set(result["snapshots"].values()) == {1}


def test_rideshare_surge_and_etas(bootstrap):
    from examples.rideshare.app import run

    result = run(bootstrap, seconds=4, window_ms=1000, interval=0.1, port=0, say=lambda *_: None)
    assert result["updates"] > 100 and result["etas"]
    closed = {p["window_start_ms"] for p in result["surge"]}
    assert len(closed) >= 2  # tumbling windows closed one after another
    assert all(p["window_end_ms"] - p["window_start_ms"] == 1000 for p in result["surge"])
    assert any(p["multiplier"] > 1 for p in result["surge"])


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed "
                    "(.ci/run installs it)")
def test_rideshare_live_map_markers_move(bootstrap):
    from playwright.sync_api import sync_playwright

    from examples.rideshare.app import Drivers, setup
    from examples.rideshare.dashboard import Dashboard

    setup(bootstrap)
    dashboard = Dashboard(bootstrap, port=0).start()
    drivers = Drivers(bootstrap, interval=0.3).start()
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
                "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"])
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{dashboard.port}/")
            page.wait_for_selector("circle#driver-00", timeout=20000)
            first = page.eval_on_selector("circle#driver-00", "e => [e.getAttribute('cx'), e.getAttribute('cy')]")
            page.wait_for_function(
                "([x, y]) => { const e = document.getElementById('driver-00');"
                " return e.getAttribute('cx') !== x || e.getAttribute('cy') !== y; }",
                arg=first, timeout=20000)
            assert page.locator("circle.driver").count() == 12
            assert "live" in page.inner_text("#status")
            browser.close()
    finally:
        drivers.stop()
        dashboard.stop()
