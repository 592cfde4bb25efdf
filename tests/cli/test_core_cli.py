"""The foundation commands, run as a user runs them (a real ``astrid`` process)."""

from __future__ import annotations

import json
from pathlib import Path

from tests._cli import astrid, clean_env
from tests._s3 import s3_client, s3_env

#: ``astrid observations search`` around the DECam cutouts of the shared data (all 14)
SEARCH_DECAM = ("observations", "search", "--ra", "318.108", "--dec", "-66.016",
                "--radius", "2arcmin", "--json")  # fmt: skip


def test_init_ingest_search(cli_env: dict[str, str], shared_data: Path) -> None:
    assert astrid(cli_env, "init").returncode == 0
    ingest = astrid(cli_env, "ingest", str(shared_data / "decam_cutouts"))
    assert ingest.returncode == 0, ingest.stderr
    assert "14 ingested, 0 already present, 10 failed" in ingest.stdout
    search = astrid(cli_env, *SEARCH_DECAM)
    assert search.returncode == 0, search.stderr
    rows = json.loads(search.stdout)
    assert len(rows) == 14
    assert {r["filename"] for r in rows} >= {f"DEC-OBS04{c}.mini.fits" for c in "abcde"}
    listed = json.loads(astrid(cli_env, "observations", "list", "--json").stdout)
    assert len(listed) == 14
    shown = json.loads(astrid(cli_env, "observations", "show", str(rows[0]["id"])).stdout)
    assert shown["status"] == "ingested" and len(shown["content_hash"]) == 64
    again = astrid(cli_env, "ingest", str(shared_data / "decam_cutouts"))
    assert "0 ingested, 14 already present" in again.stdout


def test_errors_are_one_clear_line(cli_env: dict[str, str], tmp_path: Path) -> None:
    before = astrid(cli_env, "observations", "list")
    assert before.returncode == 2 and "run `astrid init`" in before.stderr
    assert "Traceback" not in before.stderr
    astrid(cli_env, "init")
    bad_ra = astrid(
        cli_env, "observations", "search", "--ra", "400", "--dec", "0", "--radius", "1arcmin"
    )
    assert bad_ra.returncode == 2 and "RA 400.0 is outside [0, 360)" in bad_ra.stderr
    bad_radius = astrid(
        cli_env, "observations", "search", "--ra", "1", "--dec", "0", "--radius", "lots"
    )
    assert bad_radius.returncode == 2 and "cannot read angle 'lots'" in bad_radius.stderr
    missing = astrid(cli_env, "observations", "show", "12345")
    assert missing.returncode == 2 and "no observation with id 12345" in missing.stderr
    nothing = astrid(cli_env, "ingest", str(tmp_path / "nope.fits"))
    assert nothing.returncode == 2 and "does not exist" in nothing.stderr
    corrupt = tmp_path / "bad.fits"
    corrupt.write_bytes(b"SIMPLE  =  nope")
    result = astrid(cli_env, "ingest", str(corrupt))
    assert result.returncode == 1 and "not a readable FITS file" in result.stdout
    assert "Traceback" not in result.stderr + result.stdout


def test_same_commands_on_postgres_and_s3(
    tmp_path: Path, postgres_url: str, s3_server: str, s3_bucket: str, shared_data: Path
) -> None:
    env = clean_env(
        tmp_path / "data", ASTRID_DATABASE_URL=postgres_url, **s3_env(s3_server, s3_bucket)
    )
    assert astrid(env, "db", "upgrade").returncode == 0
    ingest = astrid(env, "ingest", str(shared_data / "decam_cutouts"))
    assert "14 ingested" in ingest.stdout, ingest.stderr
    search = astrid(env, *SEARCH_DECAM)
    assert len(json.loads(search.stdout)) == 14
    objects = s3_client(s3_server).list_objects_v2(Bucket=s3_bucket, Prefix="astrid/")["KeyCount"]
    assert objects == 14
