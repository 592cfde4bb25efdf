"""Persistence: the only layer that talks SQL or object storage.

``tables``     SQLAlchemy 2 typed ORM of the whole data path
``db``         engines, sessions and Alembic migrations (SQLite and PostgreSQL)
``blobs``      content-addressed object storage (local files, S3/R2/MinIO) and dataset manifests
``sky_index``  HEALPix index and exact cone search
"""
