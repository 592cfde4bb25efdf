"""Persistence: the only layer that talks SQL or object storage.

``tables``     SQLAlchemy 2 typed ORM of the whole data path (a package: one module per
               group of tables; import every table from ``astrid.store.tables``)
``db``         engines, sessions and Alembic migrations (SQLite and PostgreSQL)
``blobs``      content-addressed object storage (local files, S3/R2/MinIO) and dataset manifests
``sky_index``  HEALPix index and exact cone search
``migrations`` the Alembic environment and the revision chain (``versions/00NN_*.py``)
"""
