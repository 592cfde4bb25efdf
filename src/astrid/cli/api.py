"""API commands: ``serve``, ``users create|set-role``, ``api-keys create|revoke``."""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any

import typer

from astrid.cli.app import app, console, fail
from astrid.logs import configure_logging
from astrid.runtime import Runtime

if TYPE_CHECKING:
    from astrid.api.config import ApiConfig

users_app = typer.Typer(help="Local API users and their roles.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys (shown once, stored hashed).", no_args_is_help=True)
app.add_typer(users_app, name="users")
app.add_typer(keys_app, name="api-keys")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    notify: Annotated[
        bool,
        typer.Option(help="Send notifications (email/webhook) from this process's outbox."),
    ] = True,
    rate_limit: Annotated[
        int | None,
        typer.Option(
            help="Requests per window per key/user/address (0 = off) [ASTRID_API_RATE_LIMIT]."
        ),
    ] = None,
    rate_window: Annotated[
        int | None, typer.Option(help="Rate-limit window, seconds [ASTRID_API_RATE_WINDOW_S].")
    ] = None,
    redis_url: Annotated[
        str | None,
        typer.Option(help="Redis for shared rate limits (default: the broker if redis://)."),
    ] = None,
    oidc_issuer: Annotated[
        str | None, typer.Option(help="Accept tokens of this issuer [ASTRID_OIDC_ISSUER].")
    ] = None,
    oidc_audience: Annotated[
        str | None, typer.Option(help="Required OIDC audience [ASTRID_OIDC_AUDIENCE].")
    ] = None,
    oidc_jwks_url: Annotated[
        str | None, typer.Option(help="JWKS URL (default: issuer's) [ASTRID_OIDC_JWKS_URL].")
    ] = None,
    cors_origin: Annotated[
        list[str] | None,
        typer.Option(help="Allowed CORS origin, repeatable [ASTRID_API_CORS_ORIGINS]."),
    ] = None,
    max_upload_mb: Annotated[
        float | None, typer.Option(help="Largest upload, MiB [ASTRID_API_MAX_UPLOAD_MB].")
    ] = None,
    forwarded_allow_ips: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated proxy addresses whose X-Forwarded-For is trusted "
            "(default none) [ASTRID_FORWARDED_ALLOW_IPS]."
        ),
    ] = None,
    max_body_kb: Annotated[
        float | None,
        typer.Option(help="Largest non-upload request body, KiB [ASTRID_API_MAX_BODY_KB]."),
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    workers: Annotated[
        int,
        typer.Option(
            min=0,
            max=64,
            help="uvicorn worker processes sharing the port (0: ASTRID_API_WORKERS).",
        ),
    ] = 0,
) -> None:
    """Run the REST API under uvicorn (docs at /docs).

    Every option defaults to its ``ASTRID_*`` setting; the Supabase secret is only read from
    ``ASTRID_SUPABASE_JWT_SECRET`` (secrets stay out of process listings).
    """
    import uvicorn

    from astrid.api import ApiConfig, create_app
    from astrid.api.dashboard import dashboard_dir
    from astrid.notify.dispatcher import NotifyWorker

    runtime = Runtime.from_settings()
    configure_logging(runtime.settings.log_level, runtime.settings.log_format)
    flags: dict[str, object | None] = {
        "rate_limit": rate_limit,
        "rate_window_s": rate_window,
        "oidc_issuer": oidc_issuer,
        "oidc_audience": oidc_audience,
        "oidc_jwks_url": oidc_jwks_url,
        "cors_origins": tuple(cors_origin) if cors_origin else None,
        "max_upload_bytes": int(max_upload_mb * 1024 * 1024) if max_upload_mb else None,
        "rate_limit_redis_url": redis_url,
        "max_body_bytes": int(max_body_kb * 1024) if max_body_kb else None,
        "forwarded_allow_ips": (
            tuple(ip.strip() for ip in forwarded_allow_ips.split(",") if ip.strip())
            if forwarded_allow_ips is not None
            else None
        ),
    }
    overrides = {k: v for k, v in flags.items() if v is not None}
    config = ApiConfig.from_settings(runtime.settings, **overrides)
    workers = workers or runtime.settings.api_workers
    if config.secret_key == "change-me-in-production":
        console.print("[yellow]warning:[/] ASTRID_SECRET_KEY is the default; set it in production")
    if workers > 1:
        _serve_workers(runtime, config, overrides, host, port, workers, log_level, notify)
        return
    api = create_app(runtime, config)
    freeze_startup_objects()
    where = dashboard_dir(runtime.settings.dashboard_dir)
    if api.state.dashboard:
        console.print(f"dashboard: http://{host}:{port}/ (files from {where})")
    else:
        console.print(
            f"dashboard: not built ({where} has no index.html; run `make web`) - API only"
        )
    from astrid.pipeline.hips import HIPS_URL_PATH, hips_is_stale

    if hips_is_stale(runtime):  # a hint; the map falls back to a message and online surveys
        console.print(
            f"sky map: AstrID's HiPS at {HIPS_URL_PATH}/ is missing or older than the "
            "references; run `astrid sky build-hips`"
        )
    # Notifications leave from the outbox in a background thread, never inside a request;
    # several API processes may run it (due deliveries are claimed with SKIP LOCKED).
    notifier = NotifyWorker(runtime).start() if notify else None
    try:
        # AstrID's handler formats uvicorn's lines too; its access line (with the request id
        # and duration) replaces uvicorn's.
        uvicorn.run(
            api,
            host=host,
            port=port,
            log_level=log_level,
            log_config=None,
            access_log=False,
            **config.uvicorn_proxy_options(),
        )
    finally:
        if notifier is not None:
            notifier.stop()


_FLAGS_ENV = "ASTRID_SERVE_FLAGS"


def worker_app() -> object:
    """uvicorn factory of the ``--workers`` processes: the app with the parent's flags."""
    import json

    from astrid.api import ApiConfig, create_app

    runtime = Runtime.from_settings()
    flags = json.loads(os.environ.get(_FLAGS_ENV) or "{}")
    for key in ("cors_origins", "forwarded_allow_ips"):
        if key in flags:
            flags[key] = tuple(flags[key])
    app = create_app(runtime, ApiConfig.from_settings(runtime.settings, **flags))
    freeze_startup_objects()
    return app


def freeze_startup_objects() -> int:
    """Move every object alive after start-up out of the garbage collector's scans.

    An API process holds ~500,000 long-lived objects (astropy, torch, SQLAlchemy, the
    app); each full collection walked all of them: ~0.3-0.6 s during which the process
    answered nothing (the p99 of the hot routes under load). Frozen objects are never
    scanned again (``gc.freeze``); requests' garbage is collected as before. Returns the
    number frozen.
    """
    import gc

    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def listening_socket(host: str, port: int) -> socket.socket:
    """A bound TCP socket for several worker processes, created with ``IPPROTO_TCP``.

    asyncio sets ``TCP_NODELAY`` on an accepted connection only when its socket's
    ``proto`` is ``IPPROTO_TCP``; accepted sockets copy the listener's, and uvicorn's
    ``--workers`` listener is ``socket.socket(family)`` (``proto`` 0).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def worker_sockets(host: str, port: int, count: int) -> WorkerSockets:
    """The listening sockets of ``count`` worker processes: one each, all on one port.

    On Linux each worker gets its own ``SO_REUSEPORT`` socket, and the kernel spreads new
    connections over them by a hash of their addresses. With one shared socket, whichever
    worker woke first accepted a burst: 50 connections opened at once were split 37/13,
    and the 37 clients of the busier worker waited ~2.4 times as long (the p95 of the hot
    reads at 50 clients). Elsewhere (no load-balancing ``SO_REUSEPORT``) the workers share
    one socket as before. Every socket is made by :func:`listening_socket`'s rules
    (``IPPROTO_TCP``); a port in use is refused, not joined.
    """
    first = listening_socket(host, port)  # refuses a port in use; the port when 0
    if count <= 1 or not sys.platform.startswith("linux"):
        return WorkerSockets([first])
    port = first.getsockname()[1]
    first.close()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            sock.set_inheritable(True)
    except OSError:
        for sock in socks:
            sock.close()
        raise
    return WorkerSockets(socks)


class WorkerSockets:
    """The sockets handed to uvicorn's worker processes; each worker serves one of them.

    uvicorn gives every worker the same list. A worker's copy (unpickled in the child)
    claims the first socket no live worker holds, by an exclusive ``flock`` on a lock file
    per socket that the process keeps until it exits (so a restarted worker takes over the
    socket of the one it replaces), and shows uvicorn that socket alone. A worker finding
    none free (more workers than sockets) serves all of them. The parent's object never
    claims: it shows every socket.
    """

    def __init__(self, socks: list[socket.socket]) -> None:
        self.all = list(socks)
        self.lock_dir = tempfile.mkdtemp(prefix="astrid-serve-") if len(socks) > 1 else ""
        self._mine: list[socket.socket] | None = self.all  # the parent: every socket
        self._lock: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"all": self.all, "lock_dir": self.lock_dir}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.all, self.lock_dir = state["all"], state["lock_dir"]
        self._mine, self._lock = None, None  # a worker's copy: claims on first use

    def mine(self) -> list[socket.socket]:
        """The sockets this process serves (claimed on the first call in a worker)."""
        if self._mine is None:
            self._mine = self.all
            if self.lock_dir:
                import fcntl

                for i, sock in enumerate(self.all):
                    fh = open(os.path.join(self.lock_dir, f"{i}.lock"), "a")  # noqa: SIM115
                    try:
                        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except OSError:
                        fh.close()
                        continue
                    self._lock, self._mine = fh, [sock]  # held until this process exits
                    break
        return self._mine

    def __iter__(self) -> Iterator[socket.socket]:
        return iter(self.mine())

    def __len__(self) -> int:
        return len(self.mine())

    def __getitem__(self, index: int) -> socket.socket:
        return self.mine()[index]

    def close(self) -> None:
        """Close every socket and remove the lock files (the parent, at the end)."""
        for sock in self.all:
            sock.close()
        if self.lock_dir:
            shutil.rmtree(self.lock_dir, ignore_errors=True)


def _serve_workers(
    runtime: Runtime,
    config: ApiConfig,
    overrides: dict[str, object],
    host: str,
    port: int,
    workers: int,
    log_level: str,
    notify: bool,
) -> None:
    """Several uvicorn processes on listening sockets created here as TCP sockets.

    uvicorn's own ``--workers`` binds ``socket.socket(family)``, whose ``proto`` is 0;
    asyncio sets ``TCP_NODELAY`` only on accepted sockets whose ``proto`` is
    ``IPPROTO_TCP``, so every worker answered with Nagle's algorithm on: the body, written
    after the headers, waited for the client's delayed ACK (40 ms on Linux) and every
    request took a flat ~45 ms. The sockets made here carry ``IPPROTO_TCP``, one per
    worker on Linux (:func:`worker_sockets`: the kernel balances connections between
    the workers).
    """
    import json

    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from astrid.notify.dispatcher import NotifyWorker

    runtime.db.dispose()  # the workers open their own pools
    os.environ[_FLAGS_ENV] = json.dumps(overrides)
    options: dict[str, Any] = config.uvicorn_proxy_options()
    uv = uvicorn.Config(
        "astrid.cli.api:worker_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        **options,
    )
    try:
        socks = worker_sockets(host, port, workers)
    except OSError as exc:
        raise fail(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    console.print(f"API: http://{host}:{port}/ with {workers} worker processes")
    notifier = NotifyWorker(runtime).start() if notify else None
    try:
        Multiprocess(uv, sockets=socks).run()  # type: ignore[arg-type]
    finally:
        if notifier is not None:
            notifier.stop()
        socks.close()


@users_app.command("create")
def users_create(
    username: str,
    role: Annotated[str, typer.Option(help="viewer | curator | expert | admin")] = "viewer",
    email: Annotated[str | None, typer.Option()] = None,
    password: Annotated[
        str | None,
        typer.Option(help="Password (prompted when omitted; avoid it on shared machines)."),
    ] = None,
    password_stdin: Annotated[
        bool,
        typer.Option(
            "--password-stdin", help="Read the password from the first line of stdin (scripts)."
        ),
    ] = False,
) -> None:
    """Create a local user with an argon2-hashed password."""
    from astrid.api.security import create_user

    if email is not None and (len(email) > 256 or email.count("@") != 1 or " " in email):
        raise fail(f"--email {email!r} is not an e-mail address")
    if password_stdin:
        if password is not None:
            raise fail("give --password or --password-stdin, not both")
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise fail("--password-stdin: stdin has no password on its first line")
    if password is None:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    runtime = Runtime.from_settings()
    try:
        with runtime.require_migrated().session() as session:
            user = create_user(session, username, password, role, email)
            user_id = user.id
    finally:
        runtime.close()
    console.print(f"created user {username!r} (id {user_id}, role {role})")


@users_app.command("set-role")
def users_set_role(username: str, role: str) -> None:
    """Change a user's role."""
    from astrid.api.security import set_role

    runtime = Runtime.from_settings()
    try:
        with runtime.require_migrated().session() as session:
            set_role(session, username, role)
    finally:
        runtime.close()
    console.print(f"user {username!r} is now {role}")


@keys_app.command("create")
def keys_create(
    username: str,
    name: Annotated[str, typer.Option(help="What the key is for.")] = "cli",
    scope: Annotated[list[str] | None, typer.Option(help="read and/or write (repeatable).")] = None,
    expires_days: Annotated[float | None, typer.Option(help="Lifetime in days.")] = None,
) -> None:
    """Create an API key for USERNAME and print it (the only time it is shown)."""
    from astrid.api.config import ApiConfig
    from astrid.api.security import create_api_key, get_user

    runtime = Runtime.from_settings()
    config = ApiConfig.from_settings(runtime.settings)
    try:
        with runtime.require_migrated().session() as session:
            user = get_user(session, username)
            row, key = create_api_key(session, config, user, name, scope, expires_days)
            prefix, scopes = row.prefix, row.scopes
    finally:
        runtime.close()
    console.print(f"prefix {prefix}, scopes {','.join(scopes)} — store this key now:")
    print(key)


@keys_app.command("revoke")
def keys_revoke(prefix: str) -> None:
    """Revoke the API key with PREFIX."""
    from astrid.api.security import revoke_api_key

    runtime = Runtime.from_settings()
    try:
        with runtime.require_migrated().session() as session:
            revoke_api_key(session, prefix)
    finally:
        runtime.close()
    console.print(f"revoked API key {prefix}")


__all__ = [
    "fail",
    "freeze_startup_objects",
    "keys_app",
    "listening_socket",
    "users_app",
    "worker_app",
]
