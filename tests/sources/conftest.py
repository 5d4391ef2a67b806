"""Fixtures of the source tests: a moto S3."""

from tests.helpers.objects import moto_endpoint, s3

__all__ = ["moto_endpoint", "s3"]
