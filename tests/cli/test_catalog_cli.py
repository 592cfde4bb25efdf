"""``astrid catalog ...`` and ``astrid notify ...`` as a user runs them (real processes),
with a real SMTP server on loopback for the dispatcher."""

from __future__ import annotations

import io
import json
from pathlib import Path

from astropy.io import fits

from astrid.store.db import Database
from tests._cli import astrid
from tests.catalog.factory import make_object
from tests.notify.servers import SmtpServer
from tests.notify.test_dispatch import store_detection


def test_release_and_export_contracts(
    cli_env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    assert astrid(cli_env, "init").returncode == 0
    empty = astrid(cli_env, "catalog", "release")
    assert empty.returncode == 2 and "nothing is confirmed" in empty.stderr
    assert len(empty.stderr.strip().splitlines()) == 1
    out = tmp_path / "cat.csv"
    nothing = astrid(cli_env, "catalog", "export", "--format", "csv", "-o", str(out))
    assert nothing.returncode == 2 and "catalog is empty" in nothing.stderr and not out.exists()
    bad = astrid(cli_env, "catalog", "export", "--format", "xls", "-o", str(out))
    assert bad.returncode == 2 and "--format 'xls'" in bad.stderr

    db = Database(database_url)
    with db.session() as s:
        make_object(s, 150.0, 2.0, classification="transient/supernova/Ia")
        make_object(s, 210.0, -5.0)
    db.dispose()
    made = astrid(cli_env, "catalog", "release", "--version", "DR1", "--note", "first")
    assert made.returncode == 0, made.stderr
    assert "release DR1: 2 entries, checksum sha256:" in made.stdout
    fits_out = tmp_path / "dr1.fits"
    done = astrid(
        cli_env, "catalog", "export", "--format", "fits", "--release", "DR1", "-o", str(fits_out)
    )
    assert done.returncode == 0, done.stderr
    with fits.open(io.BytesIO(fits_out.read_bytes())) as hdul:
        assert len(hdul["CATALOG"].data) == 2 and len(hdul["LIGHT_CURVES"].data) == 4
    assert astrid(cli_env, "catalog", "export", "--format", "json", "-o", str(out)).returncode == 0
    assert len(json.loads(out.read_text())) == 2
    unknown = astrid(cli_env, "catalog", "export", "--release", "DR9", "-o", str(out))
    assert unknown.returncode == 2 and "DR9" in unknown.stderr
    assert "DR1\t2\tsha256:" in astrid(cli_env, "catalog", "releases").stdout
    assert (
        "release DR1: snapshot matches sha256:"
        in astrid(cli_env, "catalog", "verify", "DR1").stdout
    )


def test_notify_add_and_dispatch_through_smtp(cli_env: dict[str, str], database_url: str) -> None:
    assert astrid(cli_env, "init").returncode == 0
    bad = astrid(cli_env, "notify", "add", "--to", "nobody")
    assert bad.returncode == 2 and "--to" in bad.stderr
    bad = astrid(cli_env, "notify", "add", "--to", "a@example.org", "--min-score", "3")
    assert bad.returncode == 2 and "--min-score" in bad.stderr
    ok = astrid(
        cli_env, "notify", "add", "--to", "a@example.org", "--min-score", "0.5", "--min-snr", "5"
    )
    assert ok.returncode == 0 and "rule 1: email to a@example.org on detection" in ok.stdout
    digest = astrid(
        cli_env,
        "notify",
        "add",
        "--to",
        "b@example.org",
        "--classification",
        "transient",
        "--event",
        "classification",
        "--digest",
    )
    assert digest.returncode == 0, digest.stderr
    rules = [json.loads(line) for line in astrid(cli_env, "notify", "list").stdout.splitlines()]
    assert [r["digest"] for r in rules] == [False, True]

    from astrid.runtime import Runtime
    from astrid.settings import Settings

    runtime = Runtime(
        Settings(
            data_dir=Path(cli_env["ASTRID_DATA_DIR"]), database_url=database_url, _env_file=None
        )
    )  # type: ignore[call-arg]
    store_detection(runtime, 0.95, snr=20.0)
    runtime.close()
    with SmtpServer() as smtp:
        cli_env.update(
            ASTRID_SMTP_HOST="127.0.0.1", ASTRID_SMTP_PORT=str(smtp.port), ASTRID_SMTP_TLS="off"
        )
        sent = astrid(cli_env, "notify", "dispatch")
        assert sent.returncode == 0, sent.stderr
        assert "1 events, 0 digests queued, 1 sent, 0 failed attempts" in sent.stdout
        assert [m["To"] for m in smtp.messages] == ["a@example.org"]
