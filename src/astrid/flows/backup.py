"""Backup and restore of a whole AstrID deployment: database rows, blobs, MLflow store.

A backup is a folder::

    PATH/manifest.json          format, AstrID version, schema revision, per-table row counts
                                and SHA-256 of their contents, blob keys, settings (no secrets)
    PATH/tables/NAME.jsonl.gz   one JSON object per row, ordered by primary key
    PATH/blobs/                 every blob, content-addressed (a local blob store)
    PATH/mlflow/                the MLflow tracking database and artifacts (embedded default)

Rows are written in a portable form (times in UTC ISO 8601, bytes in base64, JSON canonical),
so a backup of an SQLite deployment restores into PostgreSQL and back. The database snapshot
is consistent: PostgreSQL is read in one REPEATABLE READ transaction, SQLite through its online
backup API. Blobs are copied after the snapshot; they are content-addressed and written before
the rows that name them commit, so every blob the snapshot refers to exists by then.

``restore`` refuses a target that holds rows unless forced, loads everything in one transaction
(nothing is partially stored), checks each table's checksum against the manifest and every
blob's hash against its key.
"""

from __future__ import annotations

import base64
import contextlib
import enum
import gzip
import hashlib
import json
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    DateTime,
    Engine,
    Enum,
    Integer,
    LargeBinary,
    Table,
    create_engine,
    delete,
    func,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.types import TypeDecorator

from astrid import __version__
from astrid.errors import AstridError
from astrid.runtime import Runtime
from astrid.settings import Settings
from astrid.store.blobs import BlobStore, LocalBlobStore, blob_key, open_blob_store
from astrid.store.db import current_revision, upgrade
from astrid.store.tables import Base

__all__ = [
    "BackupError",
    "BackupReport",
    "Progress",
    "RestoreReport",
    "backup",
    "restore",
    "table_digests",
]

FORMAT = "astrid-backup"
FORMAT_VERSION = 1
BATCH_ROWS = 2000

Progress = Callable[[str, int, int], None]
"""``progress(step, done, total)``: called as a backup or restore advances."""


class BackupError(AstridError):
    """A backup cannot be written or read, or a restore target is not acceptable."""


@dataclass
class BackupReport:
    """What a backup wrote."""

    path: Path
    revision: str | None
    rows: dict[str, int]
    blobs: int
    blob_bytes: int
    mlflow: str
    seconds: float
    size_bytes: int = 0
    warnings: list[str] = field(default_factory=list)


@dataclass
class RestoreReport:
    """What a restore loaded and verified."""

    path: Path
    revision: str | None
    rows: dict[str, int]
    blobs: int
    mlflow: str
    seconds: float


# --- portable row encoding ---------------------------------------------------------------


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Decimal):
        return str(value)
    return value


def _aware_time(value: str) -> datetime:
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def _decoder(table: Table) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Turn a portable row back into values the table's column types accept."""
    conv: dict[str, Callable[[Any], Any]] = {}
    for col in table.columns:
        kind = col.type
        if isinstance(kind, TypeDecorator):  # e.g. UTCDateTime: decode as what it wraps
            kind = kind.impl_instance
        if isinstance(kind, DateTime):
            conv[col.name] = _aware_time if kind.timezone else datetime.fromisoformat
        elif isinstance(kind, LargeBinary):
            conv[col.name] = base64.b64decode
        elif isinstance(kind, Enum) and kind.enum_class is not None:
            conv[col.name] = kind.enum_class

    def decode(row: dict[str, Any]) -> dict[str, Any]:
        return {k: (conv[k](v) if v is not None and k in conv else v) for k, v in row.items()}

    return decode


def _line(row: dict[str, Any]) -> bytes:
    return json.dumps(row, sort_keys=True, separators=(",", ":")).encode() + b"\n"


def _tables() -> list[Table]:
    return list(Base.metadata.sorted_tables)


def _rows(conn: Connection, table: Table) -> Iterator[dict[str, Any]]:
    order = list(table.primary_key.columns) or list(table.columns)
    result = conn.execution_options(stream_results=True, yield_per=BATCH_ROWS).execute(
        select(table).order_by(*order)
    )
    for row in result.mappings():
        yield {k: _encode(v) for k, v in row.items()}


def table_digests(engine: Engine) -> dict[str, tuple[int, str]]:
    """Row count and SHA-256 of the portable rows of every AstrID table in ``engine``."""
    out: dict[str, tuple[int, str]] = {}
    with engine.connect() as conn:
        for table in _tables():
            digest, n = hashlib.sha256(), 0
            for row in _rows(conn, table):
                digest.update(_line(row))
                n += 1
            out[table.name] = (n, digest.hexdigest())
    return out


# --- backup ------------------------------------------------------------------------------


def _public_settings(settings: Settings) -> dict[str, Any]:
    """The settings as JSON, secrets left out and passwords masked in URLs."""
    data = settings.model_dump(mode="json")
    out: dict[str, Any] = {}
    for name, value in data.items():
        if "secret" in name or "password" in name:
            continue
        if isinstance(value, str) and "://" in value:
            with contextlib.suppress(Exception):  # not parseable as a URL: keep as is
                value = make_url(value).render_as_string(hide_password=True)
        out[name] = value
    return out


def _snapshot_engine(runtime: Runtime, scratch: Path) -> tuple[Engine, Connection | None]:
    """An engine (and open connection for PostgreSQL) that reads one consistent snapshot."""
    engine = runtime.db.engine
    if engine.dialect.name == "sqlite":
        source = engine.url.database
        copy = scratch / "snapshot.db"
        with sqlite3.connect(str(source)) as src, sqlite3.connect(str(copy)) as dst:
            src.backup(dst)  # SQLite's online backup: a consistent copy while others write
        return create_engine(f"sqlite:///{copy}"), None
    conn = engine.connect().execution_options(isolation_level="REPEATABLE READ")
    conn.begin()
    return engine, conn


def _write_tables(conn: Connection, root: Path, progress: Progress | None) -> dict[str, Any]:
    tables_dir = root / "tables"
    tables_dir.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {}
    tables = _tables()
    for i, table in enumerate(tables):
        digest, n = hashlib.sha256(), 0
        with gzip.open(tables_dir / f"{table.name}.jsonl.gz", "wb", compresslevel=6) as fh:
            for row in _rows(conn, table):
                line = _line(row)
                digest.update(line)
                fh.write(line)
                n += 1
        manifest[table.name] = {"rows": n, "sha256": digest.hexdigest()}
        if progress:
            progress("tables", i + 1, len(tables))
    return manifest


def _copy_blobs(
    source: BlobStore, dest: BlobStore, progress: Progress | None
) -> tuple[list[str], int]:
    keys = sorted(source.keys())
    size = 0
    for i, key in enumerate(keys):
        if not dest.exists(key):  # content-addressed: an incremental sync
            data = source.get(key)
            if dest.put(data) != key:
                raise BackupError(f"blob {key} changed while it was copied")
            size += len(data)
        if progress and (i % 50 == 0 or i + 1 == len(keys)):
            progress("blobs", i + 1, len(keys))
    return keys, size


def _mlflow_paths(settings: Settings) -> tuple[Path | None, Path]:
    """The embedded MLflow database file (if the store is a local SQLite file) and artifacts."""
    uri = settings.resolved_mlflow_uri
    db = Path(make_url(uri).database or "") if uri.startswith("sqlite:///") else None
    return db, settings.data_dir.resolve() / "mlruns"


def _backup_mlflow(settings: Settings, root: Path) -> str:
    db, artifacts = _mlflow_paths(settings)
    if db is None:
        return (
            f"not copied: {settings.resolved_mlflow_uri.split('://')[0]} store (back it up there)"
        )
    out = root / "mlflow"
    out.mkdir(parents=True, exist_ok=True)
    copied = []
    if db.is_file():
        with sqlite3.connect(str(db)) as src, sqlite3.connect(str(out / "mlflow.db")) as dst:
            src.backup(dst)
        copied.append("database")
    if artifacts.is_dir():
        shutil.copytree(artifacts, out / "mlruns", dirs_exist_ok=True)
        copied.append("artifacts")
    (out / "source.json").write_text(json.dumps({"artifacts": artifacts.as_uri()}))
    return "copied " + " and ".join(copied) if copied else "empty"


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def backup(
    runtime: Runtime,
    target: Path,
    *,
    blobs_to: str | None = None,
    progress: Progress | None = None,
) -> BackupReport:
    """Write a consistent backup of ``runtime``'s deployment into the folder ``target``.

    Parameters
    ----------
    runtime : Runtime
        The deployment to back up (its database, blob store and MLflow store).
    target : Path
        A new or empty folder.
    blobs_to : str, optional
        A second storage location (``file://`` or ``s3://`` URL, same S3 credentials as the
        deployment) to sync the blobs to instead of ``target/blobs``.
    progress : callable, optional
        ``progress(step, done, total)``.
    """
    start = time.perf_counter()
    target = Path(target)
    runtime.require_migrated()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise BackupError(f"backup target {target} exists and is not an empty folder")
    try:
        target.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="astrid-backup-") as scratch:
            engine, held = _snapshot_engine(runtime, Path(scratch))
            try:
                revision = _revision(held) if held is not None else _engine_revision(engine)
                if held is not None:
                    tables = _write_tables(held, target, progress)
                else:
                    with engine.connect() as conn:
                        tables = _write_tables(conn, target, progress)
            finally:
                if held is not None:
                    held.rollback()
                    held.close()
                else:
                    engine.dispose()
        s = runtime.settings
        dest: BlobStore
        if blobs_to:
            dest = open_blob_store(
                blobs_to,
                endpoint_url=s.s3_endpoint_url,
                region=s.s3_region,
                access_key_id=s.s3_access_key_id,
                secret_access_key=(
                    s.s3_secret_access_key.get_secret_value() if s.s3_secret_access_key else None
                ),
            )
        else:
            dest = LocalBlobStore(target / "blobs")
        keys, blob_bytes = _copy_blobs(runtime.blobs, dest, progress)
        mlflow = _backup_mlflow(s, target)
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "astrid_version": __version__,
            "created": datetime.now(UTC).isoformat(),
            "revision": revision,
            "database": runtime.db.engine.url.render_as_string(hide_password=True),
            "tables": tables,
            "blobs": {"location": blobs_to or "blobs/", "keys": keys},
            "mlflow": mlflow,
            "settings": _public_settings(s),
        }
        (target / "manifest.json").write_text(json.dumps(manifest, indent=1))
    except OSError as exc:
        raise BackupError(
            f"cannot write the backup to {target}: {exc.strerror or exc}",
            hint="choose a writable folder with enough free space",
        ) from exc
    return BackupReport(
        path=target,
        revision=revision,
        rows={k: v["rows"] for k, v in tables.items()},
        blobs=len(keys),
        blob_bytes=blob_bytes,
        mlflow=mlflow,
        seconds=time.perf_counter() - start,
        size_bytes=_dir_size(target),
    )


def _revision(conn: Connection) -> str | None:
    if not inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(text("select version_num from alembic_version")).scalar()


def _engine_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return _revision(conn)


# --- restore -----------------------------------------------------------------------------


def _read_manifest(source: Path) -> dict[str, Any]:
    path = Path(source) / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise BackupError(f"{source} is not an AstrID backup (no manifest.json)") from exc
    except (OSError, ValueError) as exc:
        raise BackupError(f"cannot read {path}: {exc}") from exc
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{path} is not an AstrID backup manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BackupError(
            f"backup format {manifest.get('format_version')} is not supported "
            f"(this AstrID reads format {FORMAT_VERSION})"
        )
    return manifest


def _occupied(conn: Connection) -> dict[str, int]:
    names = set(inspect(conn).get_table_names())
    counts = {}
    for table in _tables():
        if table.name in names:
            n = conn.execute(select(func.count()).select_from(table)).scalar_one()
            if n:
                counts[table.name] = int(n)
    return counts


def _load_table(conn: Connection, table: Table, source: Path, expected: dict[str, Any]) -> int:
    decode = _decoder(table)
    digest, n, batch = hashlib.sha256(), 0, []
    path = source / "tables" / f"{table.name}.jsonl.gz"
    try:
        with gzip.open(path, "rb") as fh:
            for line in fh:
                digest.update(line)
                batch.append(decode(json.loads(line)))
                n += 1
                if len(batch) >= BATCH_ROWS:
                    conn.execute(insert(table), batch)
                    batch = []
    except (OSError, EOFError, ValueError) as exc:
        raise BackupError(f"table file {path} is unreadable: {exc}") from exc
    if batch:
        conn.execute(insert(table), batch)
    if n != expected["rows"] or digest.hexdigest() != expected["sha256"]:
        raise BackupError(
            f"table {table.name} in the backup does not match its manifest "
            f"({n} rows, expected {expected['rows']}): the backup is damaged"
        )
    return n


def _reset_sequences(conn: Connection) -> None:
    """PostgreSQL: move each integer primary key's sequence past the restored ids."""
    if conn.dialect.name != "postgresql":
        return
    for table in _tables():
        for col in table.primary_key.columns:
            if isinstance(col.type, Integer) and col.autoincrement in (True, "auto"):
                seq = conn.execute(
                    text("select pg_get_serial_sequence(:t, :c)"),
                    {"t": table.name, "c": col.name},
                ).scalar()
                if seq:
                    conn.execute(
                        text(
                            # Identifiers come from the ORM's metadata, never from input.
                            f'select setval(:s, coalesce((select max("{col.name}") '  # nosec B608
                            f'from "{table.name}"), 0) + 1, false)'
                        ),
                        {"s": seq},
                    )


def _restore_mlflow(settings: Settings, source: Path) -> str:
    folder = source / "mlflow"
    if not folder.is_dir():
        return "nothing to restore"
    db, artifacts = _mlflow_paths(settings)
    if db is None:
        return f"not restored: the target's MLflow store is {settings.resolved_mlflow_uri}"
    db.parent.mkdir(parents=True, exist_ok=True)
    if (folder / "mlflow.db").is_file():
        shutil.copyfile(folder / "mlflow.db", db)
    if (folder / "mlruns").is_dir():
        shutil.copytree(folder / "mlruns", artifacts, dirs_exist_ok=True)
    old = json.loads((folder / "source.json").read_text())["artifacts"]
    new = artifacts.as_uri()
    if old != new and db.is_file():
        # MLflow stores absolute artifact URIs: point them at the restored folder.
        with sqlite3.connect(str(db)) as conn:
            for table, column in (
                ("experiments", "artifact_location"),
                ("runs", "artifact_uri"),
                ("model_versions", "source"),
                ("model_versions", "storage_location"),
            ):
                try:
                    conn.execute(
                        # Table and column are the constants of the loop above.
                        f"update {table} set {column} = replace({column}, ?, ?)",  # nosec B608
                        (old, new),
                    )
                except sqlite3.OperationalError:
                    continue  # a column this MLflow version does not have
    return "restored"


def restore(
    runtime: Runtime,
    source: Path,
    *,
    force: bool = False,
    progress: Progress | None = None,
) -> RestoreReport:
    """Restore the backup folder ``source`` into ``runtime``'s (empty) deployment.

    The target database is migrated to the backup's schema revision if it is empty, loaded
    in one transaction with every table's checksum verified, then migrated to this AstrID's
    head. ``force`` replaces the rows of a non-empty target.
    """
    start = time.perf_counter()
    source = Path(source)
    manifest = _read_manifest(source)
    revision = manifest["revision"]
    url = runtime.settings.resolved_database_url
    engine = runtime.db.engine
    target_revision = current_revision(url)
    with engine.connect() as conn:
        occupied = _occupied(conn)
    if occupied and not force:
        listed = ", ".join(f"{n} in {t}" for t, n in sorted(occupied.items()))
        raise BackupError(
            f"the target deployment is not empty ({listed})",
            hint="restore into an empty deployment, or pass --force to replace its contents",
        )
    if target_revision is None:
        upgrade(url, revision)
    elif target_revision != revision:
        raise BackupError(
            f"the target database is at schema revision {target_revision} and the backup at "
            f"{revision}",
            hint="restore into an empty database (it is migrated to the backup's revision)",
        )
    # Blobs first: they are content-addressed, so a failure later leaves nothing that a
    # retry would not overwrite with the same bytes.
    keys = manifest["blobs"]["keys"]
    location = manifest["blobs"]["location"]
    s = runtime.settings
    origin: BlobStore = (
        LocalBlobStore(source / "blobs")
        if location == "blobs/"
        else open_blob_store(
            location,
            endpoint_url=s.s3_endpoint_url,
            region=s.s3_region,
            access_key_id=s.s3_access_key_id,
            secret_access_key=(
                s.s3_secret_access_key.get_secret_value() if s.s3_secret_access_key else None
            ),
        )
    )
    for i, key in enumerate(keys):
        data = origin.get(key)
        if blob_key(data) != key:
            raise BackupError(f"blob {key} in the backup is damaged (its hash differs)")
        runtime.blobs.put(data)
        if progress and (i % 50 == 0 or i + 1 == len(keys)):
            progress("blobs", i + 1, len(keys))
    tables = _tables()
    rows: dict[str, int] = {}
    with engine.begin() as conn:
        for table in reversed(tables):
            conn.execute(delete(table))
        for i, table in enumerate(tables):
            expected = manifest["tables"].get(table.name, {"rows": 0, "sha256": ""})
            if table.name not in manifest["tables"]:
                continue  # a table this backup's schema did not have yet
            rows[table.name] = _load_table(conn, table, source, expected)
            if progress:
                progress("tables", i + 1, len(tables))
        _reset_sequences(conn)
    mlflow = _restore_mlflow(s, source)
    upgrade(url)  # the backup may come from an older AstrID
    return RestoreReport(
        path=source,
        revision=revision,
        rows=rows,
        blobs=len(keys),
        mlflow=mlflow,
        seconds=time.perf_counter() - start,
    )
