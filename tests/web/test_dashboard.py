"""The dashboard in a real browser (Debian's Chromium) against a real ``astrid serve`` on
SQLite and PostgreSQL: login, keyboard scanning stored through the API, roles, the help
overlay, an object's light curve, the live feed, the expert actions of the object page, the
users page, the API going down mid-scan (banner, nothing lost), the sky map offline (Aladin
Lite on AstrID's own HiPS), the 3D sky, and axe-core on every page."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from tests.web.conftest import REPO, USERS, WEB, Site, login

pytestmark = [pytest.mark.xdist_group("web"), pytest.mark.slow, pytest.mark.realdata]

# 20 keystrokes: plain labels and classification shortcuts (1-9 carry a taxonomy path).
KEYS = ["r", "b", "s", "1", "6", "r", "b", "2", "7", "s"] * 2
LABEL = {
    "r": "real",
    "b": "bogus",
    "s": "skip",
    "1": "real",
    "2": "real",
    "6": "bogus",
    "7": "bogus",
}
CLASS = {
    "1": "transient/supernova",
    "2": "transient/supernova/Ia",
    "6": "artefact/cosmic ray",
    "7": "artefact/subtraction residual",
}
SHOTS = os.environ.get("ASTRID_WEB_SCREENSHOTS")  # e.g. docs/img: refresh the docs' images


def _shot(page: Any, name: str, site: Site, tmp_path: Path) -> None:
    """Screenshot into tmp_path; also into $ASTRID_WEB_SCREENSHOTS on the SQLite run."""
    out = tmp_path / f"dashboard-{name}.png"
    page.screenshot(path=str(out), full_page=True)
    assert out.stat().st_size > 10_000
    if SHOTS and site.backend == "sqlite":
        target = REPO / SHOTS
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(out, target / out.name)


def _focused_id(page: Any) -> int:
    return int(page.get_attribute("[data-testid=candidate]", "data-detection-id"))


def test_scan_twenty_candidates_with_the_keyboard(page: Any, site: Site, tmp_path: Path) -> None:
    page.goto(f"{site.url}/scan")
    page.wait_for_url(lambda url: url.startswith(f"{site.url}/login?next="))
    page.get_by_label("Username").fill(USERS["curator"])
    page.get_by_label("Password").fill("correct horse battery")
    page.keyboard.press("Enter")
    page.wait_for_url(lambda url: url == f"{site.url}/scan")
    page.wait_for_selector("[data-testid=candidate] img")  # the alert's cutouts drawn
    _shot(page, "scan", site, tmp_path)
    expected: dict[int, str] = {}
    for key in KEYS:
        det_id = _focused_id(page)
        expected[det_id] = key
        page.keyboard.press(key)
        page.wait_for_function(
            "id => document.querySelector('[data-testid=candidate]')"
            "?.getAttribute('data-detection-id') !== String(id)",
            arg=det_id,
        )
    assert len(expected) == 20
    page.wait_for_function(
        "() => document.querySelector('[data-testid=tally]').textContent.startsWith('20 stored')"
    )
    with site.api("curator") as api:
        for det_id, key in expected.items():
            r = api.get(f"/detections/{det_id}/votes")
            assert r.status_code == 200, r.text
            mine = [v for v in r.json()["items"] if v["username"] == USERS["curator"]]
            assert len(mine) == 1, (det_id, r.json())
            assert mine[0]["label"] == LABEL[key]
            assert mine[0]["classification"] == CLASS.get(key)


def test_undo_and_a_refused_vote_rolls_back(page: Any, site: Site) -> None:
    login(page, site, "expert", "/scan")
    page.wait_for_selector("[data-testid=candidate]")
    first = _focused_id(page)
    page.keyboard.press("r")
    page.wait_for_function(
        "() => document.querySelector('[data-testid=tally]').textContent.startsWith('1 stored')"
    )
    page.keyboard.press("u")
    page.wait_for_selector("[data-testid=notice]:has-text('undone')")
    assert _focused_id(page) == first
    with site.api("expert") as api:
        items = api.get(f"/detections/{first}/votes").json()["items"]
        assert not [v for v in items if v["username"] == USERS["expert"]]
    # A classification the taxonomy does not know is refused: the vote is rolled back visibly.
    page.evaluate(
        "() => { const s = JSON.parse(localStorage.getItem('astrid.session'));"
        " localStorage.setItem('astrid.session', JSON.stringify({...s, access: 'expired'})); }"
    )
    page.keyboard.press("b")  # the expired access token is refreshed; the vote is not lost
    page.wait_for_function(
        "() => document.querySelector('[data-testid=tally]').textContent.startsWith('1 stored')"
    )


def test_viewer_sees_no_vote_controls_and_a_forged_vote_is_refused(page: Any, site: Site) -> None:
    login(page, site, "viewer", "/scan")
    page.wait_for_selector("[data-testid=candidate]")
    assert page.locator("[data-testid=read-only]").is_visible()
    assert page.locator("[data-testid=vote-controls]").count() == 0
    assert page.get_by_role("button", name="Real (r)").count() == 0
    det_id = _focused_id(page)
    page.keyboard.press("r")
    page.keyboard.press("j")
    page.wait_for_function(
        "id => document.querySelector('[data-testid=candidate]')"
        "?.getAttribute('data-detection-id') !== String(id)",
        arg=det_id,
    )
    assert page.inner_text("[data-testid=tally]").startswith("0 stored · 0 sending")
    with site.api("viewer") as api:
        forged = api.post(f"/detections/{det_id}/votes", json={"label": "real"})
        assert forged.status_code == 403, forged.text
        assert forged.headers["content-type"].startswith("application/problem+json")
        votes = api.get(f"/detections/{det_id}/votes").json()["items"]
        assert not [v for v in votes if v["username"] == USERS["viewer"]]


def test_help_overlay(page: Any, site: Site) -> None:
    login(page, site, "curator", "/scan")
    page.wait_for_selector("[data-testid=candidate]")
    page.keyboard.press("?")
    dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    dialog.wait_for()
    for text in ("next / previous candidate", "undo your last vote", "artefact/cosmic ray"):
        assert text in dialog.inner_text()
    before = page.inner_text("[data-testid=tally]")
    page.keyboard.press("r")  # keys do nothing while the help is open
    assert page.inner_text("[data-testid=tally]") == before
    page.keyboard.press("Escape")
    dialog.wait_for(state="detached")


def test_object_page_shows_its_light_curve(page: Any, site: Site, tmp_path: Path) -> None:
    with site.api("viewer") as api:
        objects = api.get("/objects", params={"limit": 200}).json()["items"]
        best = max(objects, key=lambda o: o["n_detections"])
        curve = api.get(f"/objects/{best['id']}").json()["light_curve"]
    n_points = sum(1 for p in curve if p["mjd"] is not None and (p["mag"] or p["limit"]))
    assert n_points >= 2
    login(page, site, "viewer", f"/object?id={best['id']}")
    svg = page.locator("[data-testid=lightcurve]")
    svg.wait_for()
    drawn = svg.locator("[data-kind]").count()
    assert drawn == n_points
    for name in ("Legacy Survey", "SIMBAD", "NED", "TNS", "Aladin"):
        href = page.get_by_role("link", name=name).get_attribute("href")
        assert f"{best['ra']:.6f}"[:8] in href
    _shot(page, "object", site, tmp_path)


def test_live_feed_shows_a_pipeline_run_within_two_seconds(
    page: Any, site: Site, shared_data: Path, tmp_path: Path
) -> None:
    login(page, site, "curator", "/")
    page.wait_for_selector("[data-testid=feed-state]:has-text('live')")
    fits = sorted((shared_data / "decam_cutouts").glob("*.mini.fits"))[0]
    with site.api("curator") as api:
        up = api.post(
            "/observations/ingest/upload",
            files={"file": (fits.name, fits.read_bytes(), "application/fits")},
        )
        assert up.status_code == 201, up.text
        obs_id = up.json()["observation_id"]
        start = time.monotonic()
        page.locator(
            "[data-testid=feed] li[data-event-type='observation.ingested']",
            has_text=f"observation {obs_id}",
        ).wait_for(timeout=2_000)
        ingested_s = time.monotonic() - start
        run = api.post("/pipeline/runs", json={"observation_ids": [obs_id]})
        assert run.status_code == 202, run.text
        start = time.monotonic()
        page.locator(
            "[data-testid=feed] li[data-event-type^='observation.']",
            has_text=f"observation {obs_id}",
        ).nth(1).wait_for(timeout=2_000)
        started_s = time.monotonic() - start
    assert ingested_s < 2.0 and started_s < 2.0
    _shot(page, "overview", site, tmp_path)


AXE = WEB / "node_modules" / "axe-core" / "axe.min.js"


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_no_serious_accessibility_violations(page: Any, site: Site, theme: str) -> None:
    with site.api("viewer") as api:
        obj = api.get("/objects", params={"limit": 1}).json()["items"][0]["id"]
        det = api.get("/detections", params={"limit": 1}).json()["items"][0]["id"]
        # the first registry read creates the MLflow store (tens of seconds on a loaded machine)
        api.get("/models", timeout=180).raise_for_status()
    page.add_init_script(f"localStorage.setItem('astrid.theme', '{theme}')")
    pages = [
        "/",
        "/scan",
        f"/object?id={obj}",  # an admin sees the expert actions too
        f"/detection?id={det}",
        "/catalog",
        "/timeline",
        "/users",
        "/models",
        "/workers",
        "/diagnostics",
        "/sky",
        "/sky3d",
    ]
    page.goto(f"{site.url}/login")
    page.get_by_label("Username").wait_for()
    found = {"/login": _axe(page)}
    login(page, site, "admin", "/")
    for path in pages:
        page.goto(f"{site.url}{path}")
        page.wait_for_selector("main h1")
        try:
            # Our own "Loading…" placeholders must be gone. Aladin Lite's status bar is left out:
            # it says "Loading..." while any of its fetches is pending, and on a machine whose
            # firewall drops (rather than refuses) outside traffic that never ends.
            page.wait_for_function(
                """() => {
                    const main = document.querySelector('main')?.cloneNode(true);
                    if (!main) return false;
                    main.querySelectorAll('[data-testid=skymap]').forEach((el) => el.remove());
                    const map = document.querySelector('[data-testid=skymap]');
                    return !main.textContent.includes('Loading')
                        && (!map || map.getAttribute('data-state') !== 'loading');
                }""",
                timeout=60_000,
            )
        except Exception as exc:
            raise AssertionError(f"{path} still loading: {page.inner_text('main')[:300]}") from exc
        page.wait_for_timeout(500)  # let the data requests settle (the SSE stream never ends)
        found[path] = _axe(page)
    bad = {p: v for p, v in found.items() if v}
    assert not bad, bad


def test_models_page_admin_promotes_and_a_viewer_cannot(
    page: Any, site: Site, tmp_path: Path
) -> None:
    from tests.domain.loop_fixtures import NAME, register_champion

    uri = f"sqlite:///{Path(site.env['ASTRID_DATA_DIR']) / 'mlflow.db'}"
    first = register_champion(uri, tmp_path, trained=False, seed=1)
    second = register_champion(uri, tmp_path, trained=False, seed=2)
    assert (first["semver"], second["semver"]) == ("1.0.0", "1.1.0")

    login(page, site, "viewer", "/models")
    page.get_by_test_id("versions").wait_for()
    assert page.get_by_test_id("champion").inner_text() == "1.0.0"
    assert page.get_by_role("button", name="Promote 1.1.0").count() == 0
    assert page.get_by_role("button", name="Roll back champion").count() == 0
    page.context.clear_cookies()
    page.evaluate("() => localStorage.clear()")

    login(page, site, "admin", "/models")
    page.get_by_test_id("versions").wait_for()
    page.get_by_role("button", name="Promote 1.1.0").click()
    page.wait_for_function(
        "() => document.querySelector('[data-testid=champion]')?.textContent === '1.1.0'"
    )
    assert "champion is now 1.1.0" in page.get_by_role("status").inner_text()
    with site.api("viewer") as api:
        assert api.get(f"/models/{NAME}/champion").json()["semver"] == "1.1.0"
    _shot(page, "models", site, tmp_path)


def _axe(page: Any) -> list[str]:
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => (await axe.run(document)).violations")
    return [
        f"{v['id']} ({v['impact']}): {v['nodes'][0]['target']}"
        for v in result
        if v["impact"] in ("serious", "critical")
    ]


def test_a_comment_with_markup_is_shown_as_text(page: Any, site: Site) -> None:
    markup = "<b>bold</b> <img src=x onerror=alert(1)> @viewer-web"
    with site.api("curator") as api:
        det = api.get("/scanning/queue", params={"limit": 1}).json()["items"][0]["detection_id"]
        r = api.post(f"/detections/{det}/comments", json={"body": markup})
        assert r.status_code == 201, r.text
    login(page, site, "viewer", f"/detection?id={det}")
    comments = page.locator("[data-testid=comments]")
    comments.wait_for()
    assert markup in comments.inner_text()
    assert comments.locator("b, img").count() == 0


def test_expert_reviews_and_moves_a_discovery_on_the_object_page(page: Any, site: Site) -> None:
    with site.api("expert") as api:
        taken = {d["object_id"] for d in api.get("/discoveries").json()["items"]}
        objects = api.get("/objects", params={"limit": 200}).json()["items"]
        obj = next(o["id"] for o in reversed(objects) if o["id"] not in taken)
    login(page, site, "expert", f"/object?id={obj}")
    panel = page.locator("[data-testid=expert-actions]")
    panel.wait_for()
    panel.get_by_label("Dispute").check()
    panel.get_by_label(re.compile(r"^Importance")).select_option("4")
    panel.get_by_label("Notes", exact=True).fill("<i>edge of the chip</i>")
    panel.get_by_role("button", name="Save review").click()
    page.wait_for_selector("[data-testid=expert-message]:has-text('review saved')")
    panel.get_by_label("Discovery name", exact=True).fill("AstrID-web-1")
    panel.get_by_role("button", name="Mark as discovery").click()
    page.wait_for_selector("[data-testid=discovery-status]:has-text('new')")
    panel.get_by_label(re.compile(r"^New status")).select_option("follow_up_requested")
    panel.get_by_label("Status note", exact=True).fill("spectrum asked")
    panel.get_by_role("button", name="Move").click()
    page.wait_for_selector("[data-testid=discovery-status]:has-text('follow-up requested')")
    with site.api("viewer") as api:
        shown = api.get(f"/objects/{obj}").json()
        mine = [r for r in shown["reviews"] if r["username"] == USERS["expert"]]
        assert [(r["verdict"], r["importance"], r["notes"]) for r in mine] == [
            ("dispute", 4, "<i>edge of the chip</i>")
        ]
        disc = api.get(f"/discoveries/{shown['discovery']['id']}").json()
        assert (disc["name"], disc["status"]) == ("AstrID-web-1", "follow_up_requested")
        assert disc["history"][-1]["note"] == "spectrum asked"
    # A curator sees the object but no expert actions.
    page.context.clear_cookies()
    page.evaluate("() => localStorage.clear()")
    login(page, site, "curator", f"/object?id={obj}")
    page.wait_for_selector("main h1")
    page.locator("[data-testid=lightcurve]").wait_for()
    assert page.locator("[data-testid=expert-actions]").count() == 0


def test_expert_merges_two_objects_on_the_object_page(page: Any, site: Site) -> None:
    from tests.catalog.factory import make_object

    from astrid.store.db import Database

    db = Database(site.database_url)
    try:
        with db.session() as s:  # one source seen twice, 3" apart, far from the survey's field
            older = make_object(s, 200.0, -20.0, mjds=(60000.5,), mags=(19.0,)).id
            younger = make_object(s, 200.0, -20.0 + 3 / 3600, mjds=(60001.5,), mags=(18.8,)).id
    finally:
        db.dispose()
    login(page, site, "expert", f"/object?id={younger}")
    panel = page.locator("[data-testid=expert-actions]")
    panel.wait_for()
    field = panel.get_by_label(re.compile(r"^Same source as object"))
    field.fill("1")  # a survey object minutes of arc away: refused, with the API's reason
    panel.get_by_role("button", name="Merge", exact=True).click()
    page.wait_for_selector("[data-testid=expert-message]:has-text('merge refused')")
    assert "ASTRID_CURATION_MERGE_MAX_ARCSEC" in page.get_by_test_id("expert-message").inner_text()
    field.fill(str(older))
    panel.get_by_role("button", name="Merge", exact=True).click()
    page.wait_for_url(re.compile(rf"/object\?id={older}$"))
    page.wait_for_selector("[data-testid=expert-message]:has-text('merged')")
    with site.api("viewer") as api:
        kept = api.get(f"/objects/{younger}").json()
        assert (kept["id"], kept["n_detections"]) == (older, 2)


def test_admin_manages_users_roles_and_api_keys(page: Any, site: Site) -> None:
    login(page, site, "admin", "/users")
    table = page.locator("[data-testid=users-table]")
    table.wait_for()
    assert "curator-web" in table.inner_text()
    name = f"newbie-{site.backend}"
    page.get_by_label("New username").fill(name)
    page.get_by_label("Initial password").fill("short")
    page.get_by_role("button", name="Create user").click()
    page.wait_for_selector("[data-testid=users-message]:has-text('password:')")
    page.get_by_label("Initial password").fill("a long password")
    page.get_by_label(re.compile(r"^Role(?! of)")).select_option("viewer")
    page.get_by_role("button", name="Create user").click()
    page.wait_for_selector(f"[data-testid=users-message]:has-text('user {name} created')")
    page.get_by_label(f"Role of {name}").select_option("curator")
    page.wait_for_selector(f"[data-testid=users-message]:has-text('{name} is now curator')")
    with site.api("admin") as api:
        users = {u["username"]: u["role"] for u in api.get("/users").json()}
        assert users[name] == "curator"
    page.get_by_label("Key name").fill("ci-key")
    page.get_by_role("button", name="Create key").click()
    secret = page.locator("[data-testid=new-key-secret]")
    secret.wait_for()
    key = secret.inner_text().strip()
    assert key.startswith("astrid_")
    me = httpx.get(f"{site.url}/api/v1/auth/me", headers={"X-API-Key": key}, timeout=30)
    assert me.status_code == 200 and me.json()["username"] == USERS["admin"]
    page.get_by_role("button", name="I have stored it").click()
    assert page.locator("[data-testid=new-key]").count() == 0  # shown once
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Revoke key ci-key").click()
    page.wait_for_selector("[data-testid=keys-table] tr[data-key-name=ci-key]:has-text('revoked')")
    gone = httpx.get(f"{site.url}/api/v1/auth/me", headers={"X-API-Key": key}, timeout=30)
    assert gone.status_code == 401


def test_a_viewer_gets_no_users_page(page: Any, site: Site) -> None:
    login(page, site, "viewer", "/users")
    page.wait_for_selector("[data-testid=admin-only]")
    assert page.get_by_role("link", name="Users").count() == 0


def _serve(site: Site, port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        cmd = ["serve", "--port", str(port), "--log-level", "warning"]
        return subprocess.Popen(
            [sys.executable, "-m", "astrid", *cmd],
            env=site.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _wait_live(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{url}/health/live", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"astrid serve did not start: {log.read_text()}")
        time.sleep(0.3)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_api_down_mid_scan_shows_a_banner_and_the_vote_is_sent_when_back(
    page: Any, site: Site, tmp_path: Path
) -> None:
    """A second ``astrid serve`` over the same database, stopped mid-scan and started again."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    url, log = f"http://127.0.0.1:{port}", tmp_path / "serve.log"
    proc = _serve(site, port, log)
    try:
        _wait_live(url, proc, log)
        page.goto(f"{url}/login?next=%2Fscan")
        page.get_by_label("Username").fill(USERS["curator"])
        page.get_by_label("Password").fill("correct horse battery")
        page.keyboard.press("Enter")
        page.wait_for_url(f"{url}/scan")
        page.wait_for_selector("[data-testid=candidate]")
        det = _focused_id(page)
        _stop(proc)
        page.keyboard.press("r")
        page.locator("[data-testid=api-down]").wait_for()
        page.locator("[data-testid=banner]").wait_for()
        page.wait_for_function(
            "() => document.querySelector('[data-testid=tally]').textContent.includes('1 waiting')"
        )
        queued = page.evaluate("() => JSON.parse(localStorage.getItem('astrid.outbox'))")
        assert queued == [{"id": det, "label": "real"}]
        time.sleep(3)  # a few retries fail while it is down: nothing is lost
        assert page.evaluate("() => localStorage.getItem('astrid.outbox')") is not None
        proc = _serve(site, port, log)
        _wait_live(url, proc, log)
        page.wait_for_function(
            "() => document.querySelector('[data-testid=tally]')"
            ".textContent.startsWith('1 stored')",
            timeout=60_000,
        )
        page.locator("[data-testid=api-down]").wait_for(state="detached", timeout=60_000)
        assert page.evaluate("() => localStorage.getItem('astrid.outbox')") is None
        with site.api("curator") as api:
            votes = api.get(f"/detections/{det}/votes", params={"history": True}).json()["items"]
        mine = [v for v in votes if v["username"] == USERS["curator"]]
        assert [(v["label"], v["state"]) for v in mine] == [("real", "active")]  # sent once
    finally:
        _stop(proc)


def _loopback_only(page: Any) -> list[str]:
    """Abort every request that would leave loopback (this machine has no internet either);
    returns the list of what was refused."""
    refused: list[str] = []

    def handle(route: Any) -> None:
        host = urlsplit(route.request.url).hostname
        if host in ("127.0.0.1", "localhost", "::1") or route.request.url.startswith("data:"):
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    page.route("**/*", handle)
    return refused


def _sky_counts(site: Site) -> tuple[list[dict[str, Any]], int, int]:
    with site.api("viewer") as api:
        objects = api.get("/objects", params={"limit": 1000}).json()["items"]
        n_det = len(api.get("/detections", params={"limit": 1000}).json()["items"])
        feet = api.get("/observations/footprints").json()["items"]
    return objects, n_det, len(feet)


def test_sky_map_shows_the_markers_offline(page: Any, site: Site, tmp_path: Path) -> None:
    objects, n_det, n_feet = _sky_counts(site)
    assert objects and n_det and n_feet
    refused = _loopback_only(page)
    tiles: list[tuple[str, int]] = []
    page.on(
        "response",
        lambda r: tiles.append((r.url, r.status)) if "/hips/astrid/Norder" in r.url else None,
    )
    login(page, site, "viewer", "/sky")
    sky = page.locator("[data-testid=skymap][data-state=ready]")
    sky.wait_for(timeout=60_000)
    page.wait_for_function(
        "n => Number(document.querySelector('[data-testid=skymap]').dataset.objects) === n",
        arg=len(objects),
    )
    assert int(sky.get_attribute("data-detections")) == n_det
    assert int(sky.get_attribute("data-footprints")) == n_feet
    assert sky.locator("canvas").count() >= 1
    # AstrID's own tiles were drawn (FITS tiles from /hips/astrid/), nothing came from outside.
    deadline = time.monotonic() + 30
    while not any(status == 200 and url.endswith(".fits") for url, status in tiles):
        assert time.monotonic() < deadline, (tiles, refused)
        page.wait_for_timeout(250)
    assert all(urlsplit(u).hostname == "127.0.0.1" for u, _ in tiles)
    # The map is not blank: the reference sky's stars make the pixels vary.
    page.wait_for_timeout(1500)
    shot = tmp_path / "sky.png"
    sky.screenshot(path=str(shot))
    from PIL import Image, ImageStat

    grey = Image.open(shot).convert("L")
    assert ImageStat.Stat(grey).stddev[0] > 5, ImageStat.Stat(grey).stddev
    _shot(page, "sky", site, tmp_path)

    # Click the marker of the demo object nearest the map centre: its object page opens.
    page.get_by_label("Detections (").uncheck()
    page.wait_for_function(
        "() => document.querySelector('[data-testid=skymap]').dataset.detections === '0'"
    )
    box = sky.bounding_box()
    target = None
    for obj in objects:
        xy = page.evaluate(
            "([ra, dec]) => window.astridAladin.world2pix(ra, dec)", [obj["ra"], obj["dec"]]
        )
        if xy and 20 < xy[0] < box["width"] - 20 and 20 < xy[1] < box["height"] - 20:
            target = (obj, xy)
            break
    assert target is not None, "no object marker inside the initial view"
    obj, (x, y) = target
    page.mouse.click(box["x"] + x, box["y"] + y)
    page.wait_for_url(lambda url: url.endswith(f"/object?id={obj['id']}"), timeout=10_000)


def test_sky3d_draws_every_point_and_opens_one(page: Any, site: Site) -> None:
    objects, n_det, _ = _sky_counts(site)
    _loopback_only(page)
    login(page, site, "viewer", "/sky3d")
    sky = page.locator("[data-testid=sky3d][data-state=ready]")
    sky.wait_for(timeout=60_000)
    assert int(sky.get_attribute("data-points")) == n_det + len(objects)
    assert sky.locator("canvas").count() == 1
    # The view starts on the first object; clicking its point opens that point's page.
    index = n_det  # points: detections first, then objects
    x, y = page.evaluate("i => window.astridSky3d.screenOf(i)", index)
    page.mouse.click(x, y)
    page.wait_for_url(lambda url: "/object?id=" in url or "/detection?id=" in url, timeout=10_000)
