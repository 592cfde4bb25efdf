"""The loopback S3 server (moto, any credentials) as the tests reach it: a boto3 client,
and the settings that point AstrID at a bucket on it."""

from __future__ import annotations

from typing import Any

__all__ = ["s3_client", "s3_env", "s3_settings"]

REGION = "us-east-1"
KEY = "test"  # moto accepts any access key and secret


def s3_client(endpoint: str) -> Any:
    """A boto3 S3 client of the server at ``endpoint``."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=KEY,
        aws_secret_access_key=KEY,
    )


def s3_settings(endpoint: str, bucket: str, prefix: str = "astrid") -> dict[str, str]:
    """Settings (``Settings`` field names) storing blobs under ``s3://bucket/prefix``."""
    return {
        "storage_url": f"s3://{bucket}/{prefix}",
        "s3_endpoint_url": endpoint,
        "s3_region": REGION,
        "s3_access_key_id": KEY,
        "s3_secret_access_key": KEY,
    }


def s3_env(endpoint: str, bucket: str, prefix: str = "astrid") -> dict[str, str]:
    """:func:`s3_settings` as ``ASTRID_*`` environment variables."""
    return {f"ASTRID_{k.upper()}": v for k, v in s3_settings(endpoint, bucket, prefix).items()}
