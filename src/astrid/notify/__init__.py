"""Notifications: rules as data, email (SMTP) and webhook channels, an outbox dispatcher.

Events written to the domain outbox (:mod:`astrid.domain.events`) are matched against
:class:`~astrid.store.tables.NotificationRule` rows (:mod:`astrid.notify.rules`); each match
becomes a delivery row, sent later by :mod:`astrid.notify.dispatcher` with retries and a
delivery log, never inside the transaction that wrote the event.
"""
