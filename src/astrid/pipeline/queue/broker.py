"""Dramatiq broker selection: in process by default, Redis or RabbitMQ from one URL.

``ASTRID_BROKER_URL`` (``Settings.broker_url``) decides:

* unset: Dramatiq's ``StubBroker`` and tasks run **in process**, synchronously, when they
  are submitted: one command works on a laptop, nothing else to start;
* ``redis://host:6379/0`` (``rediss://``, ``unix://``): :class:`dramatiq.brokers.redis.RedisBroker`.
  Messages are acknowledged late (after the task finished); a worker that dies, even by
  SIGKILL, stops heart-beating and its unacknowledged messages are requeued by the other
  workers' queue maintenance after ``heartbeat_timeout`` ms;
* ``amqp://user:pass@host:5672/vhost``: :class:`dramatiq.brokers.rabbitmq.RabbitmqBroker`
  (needs ``pika``); unacknowledged messages return to the queue when the connection drops.

AstrID-specific options ride on the URL's query string and are removed before the URL
reaches the client: ``namespace`` (Redis key prefix, default ``astrid``),
``heartbeat_timeout`` (ms, default 60000), ``maintenance_chance`` (per million commands,
default 50000), ``dead_message_ttl`` (ms), ``queue`` (queue name, default ``astrid``).
Example for tests: ``redis://127.0.0.1:6379/0?namespace=t-1234&heartbeat_timeout=2000``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker

from astrid.errors import AstridError
from astrid.settings import get_settings

__all__ = [
    "DEFAULT_QUEUE",
    "BrokerConfig",
    "BrokerConfigError",
    "broker_config",
    "get_broker",
    "is_in_process",
    "make_broker",
    "parse_broker_url",
    "purge_queue",
    "queue_stats",
    "send",
]

DEFAULT_QUEUE = "astrid"
_OPTIONS = {"namespace", "heartbeat_timeout", "maintenance_chance", "dead_message_ttl", "queue"}


class BrokerConfigError(AstridError):
    """The broker URL names an unknown scheme or has a bad option."""


@dataclass(frozen=True)
class BrokerConfig:
    """A parsed broker URL."""

    kind: str  # "inprocess" | "redis" | "rabbitmq"
    url: str | None
    queue: str = DEFAULT_QUEUE
    namespace: str = "astrid"
    #: A worker silent this long is dead and its unacknowledged messages go back on the
    #: queue. Live workers heartbeat on every fetch (each consumer polls at least every
    #: 0.5 s, the delay-queue consumer even while every thread is busy), so 60 s spares
    #: long tasks and any pause short of a minute.
    heartbeat_timeout: int = 60_000
    #: Chance per million broker commands that a command also runs queue maintenance
    #: (requeueing dead workers' messages). An idle worker sends ~4 commands a second, so
    #: 5 % finds a dead worker a few seconds after its heartbeat timeout; Dramatiq's default
    #: (1000, 0.1 %) took ~11 minutes. Maintenance is one sorted-set range query.
    maintenance_chance: int = 50_000
    dead_message_ttl: int = 7 * 24 * 3600 * 1000


def parse_broker_url(url: str | None) -> BrokerConfig:
    """Split a broker URL into the client URL and AstrID's options.

    Raises
    ------
    BrokerConfigError
        Unknown scheme, unknown or non-integer option.
    """
    if not url:
        return BrokerConfig("inprocess", None)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in {"redis", "rediss", "unix"}:
        kind = "redis"
    elif scheme in {"amqp", "amqps"}:
        kind = "rabbitmq"
    else:
        raise BrokerConfigError(
            f"unknown broker URL scheme {parts.scheme!r} in ASTRID_BROKER_URL",
            hint="use redis://host:6379/0 or amqp://user:pass@host:5672/ (unset = in process)",
        )
    query = parse_qsl(parts.query, keep_blank_values=True)
    ours = {k: v for k, v in query if k in _OPTIONS}
    rest = [(k, v) for k, v in query if k not in _OPTIONS]
    client_url = urlunsplit(parts._replace(query=urlencode(rest)))
    kwargs: dict[str, Any] = {}
    for name in ("heartbeat_timeout", "maintenance_chance", "dead_message_ttl"):
        if name in ours:
            try:
                kwargs[name] = int(ours[name])
            except ValueError as exc:
                raise BrokerConfigError(
                    f"broker option {name}={ours[name]!r} is not an integer"
                ) from exc
            if kwargs[name] < 0:
                raise BrokerConfigError(f"broker option {name}={ours[name]!r} is negative")
    return BrokerConfig(
        kind,
        client_url,
        queue=ours.get("queue") or DEFAULT_QUEUE,
        namespace=ours.get("namespace") or "astrid",
        **kwargs,
    )


def make_broker(url: str | None) -> dramatiq.Broker:
    """A new broker for ``url`` (see the module docstring); it is not made global."""
    config = parse_broker_url(url)
    broker: dramatiq.Broker
    if config.kind == "inprocess":
        broker = StubBroker()
    elif config.kind == "redis":
        broker = RedisBroker(
            url=config.url,
            namespace=config.namespace,
            heartbeat_timeout=config.heartbeat_timeout,
            maintenance_chance=config.maintenance_chance,
            dead_message_ttl=config.dead_message_ttl,
        )
    else:
        try:
            from dramatiq.brokers.rabbitmq import RabbitmqBroker  # optional: needs pika
        except ImportError as exc:
            raise BrokerConfigError(
                "a RabbitMQ broker needs the pika package", hint="pip install 'dramatiq[rabbitmq]'"
            ) from exc
        broker = RabbitmqBroker(url=config.url)
    setattr(broker, "astrid_config", config)  # noqa: B010  (read by broker_config)
    broker.declare_queue(config.queue)
    return broker


def broker_config(broker: dramatiq.Broker) -> BrokerConfig:
    """The :class:`BrokerConfig` a broker was made from."""
    config = getattr(broker, "astrid_config", None)
    return config if isinstance(config, BrokerConfig) else BrokerConfig("inprocess", None)


def is_in_process(broker: dramatiq.Broker) -> bool:
    """True for the default broker that runs tasks synchronously in the caller."""
    return isinstance(broker, StubBroker)


_lock = threading.Lock()
_broker: dramatiq.Broker | None = None


def get_broker() -> dramatiq.Broker:
    """The process-wide broker, made from settings on first use and set as Dramatiq's."""
    global _broker
    with _lock:
        if _broker is None:
            _broker = make_broker(get_settings().broker_url)
            dramatiq.set_broker(_broker)
        return _broker


def queue_stats(broker: dramatiq.Broker, queue: str | None = None) -> dict[str, int | None]:
    """Of ``queue`` (default: the broker's), messages ``waiting``, ``delayed``,
    ``in_flight`` (fetched by a worker, unacknowledged, including delayed messages a worker
    holds until their time) and ``dead``.

    In process: all zero (nothing waits). RabbitMQ: ``in_flight`` is not reported (None).
    """
    config = broker_config(broker)
    if queue is not None:
        config = replace(config, queue=queue)
    if config.kind == "inprocess":
        return {"waiting": 0, "delayed": 0, "in_flight": 0, "dead": 0}
    try:
        return _queue_stats(broker, config)
    except Exception as exc:  # redis/pika connection errors of many types
        raise BrokerConfigError(
            f"cannot reach the {config.kind} broker: {type(exc).__name__}: {exc}",
            hint="check ASTRID_BROKER_URL and that the broker is running",
        ) from exc


def _queue_stats(broker: dramatiq.Broker, config: BrokerConfig) -> dict[str, int | None]:
    if config.kind == "redis":
        client = broker.client  # type: ignore[attr-defined]
        ns, q = config.namespace, config.queue
        in_flight = 0
        # Fetched and not yet acknowledged, from the queue and from the delay queue (a
        # worker holds a delayed message until its time, then moves it to the queue).
        for pattern in (f"{ns}:__acks__.*.{q}", f"{ns}:__acks__.*.{q}.DQ"):
            for key in client.scan_iter(match=pattern):
                in_flight += int(client.scard(key))
        return {
            "waiting": int(client.llen(f"{ns}:{q}")),
            "delayed": int(client.llen(f"{ns}:{q}.DQ")),
            "in_flight": in_flight,
            "dead": int(client.zcard(f"{ns}:{q}.XQ")),
        }
    waiting, delayed, dead = broker.get_queue_message_counts(config.queue)  # type: ignore[attr-defined]
    return {"waiting": int(waiting), "delayed": int(delayed), "in_flight": None, "dead": int(dead)}


def purge_queue(broker: dramatiq.Broker, queue: str) -> int:
    """Drop every waiting, delayed and dead-lettered message of ``queue``; how many.

    Tasks a worker already started run to their end (Redis: their bodies are dropped too,
    so a worker killed during one loses it instead of redelivering it).

    Raises
    ------
    BrokerConfigError
        In process (there is no queue), or the broker cannot be reached.
    """
    config = broker_config(broker)
    if config.kind == "inprocess":
        raise BrokerConfigError("no broker configured: tasks run in process, no queue to purge")
    before = queue_stats(broker, queue)
    try:
        broker.flush(queue)
    except Exception as exc:
        raise BrokerConfigError(
            f"cannot reach the {config.kind} broker: {type(exc).__name__}: {exc}"
        ) from exc
    return sum(int(before[k] or 0) for k in ("waiting", "delayed", "dead"))


def send(broker: dramatiq.Broker, actor_name: str, **kwargs: Any) -> str:
    """Put one message for ``actor_name`` on ``broker``'s queue; its message id.

    Needs no actor declared in this process: any worker that consumes the queue runs it.
    """
    message: dramatiq.Message[Any] = dramatiq.Message(
        queue_name=broker_config(broker).queue,
        actor_name=actor_name,
        args=(),
        kwargs=kwargs,
        options={},
    )
    return broker.enqueue(message).message_id
