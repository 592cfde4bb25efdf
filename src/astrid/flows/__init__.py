"""Operational flows and their schedules (the layer above the pipeline).

- :mod:`astrid.flows.library` — the flows: small functions that call the pipeline, the store
  and the domain (watch fields, process pending work, back up), each ``(runtime, params, log)``.
- :mod:`astrid.flows.backup` — ``astrid backup`` / ``astrid restore`` of a whole deployment.
- :mod:`astrid.flows.schedules` — schedules as data (cron + time zone), ``run_flow`` with
  retries and a logged ``FlowRun``, ``run_due`` for cron/systemd timers.
- :mod:`astrid.flows.prefect_runner` — the same flows and schedules as Prefect flows and
  deployments (the optional extra ``astrid[prefect]``).

The embedded default needs no orchestrator server: ``astrid schedule serve`` (or
``run-due`` from a timer) runs the due flows in process.
"""
