"""Fixtures of the sync tests: a counting local Kraiter, a moto S3."""

from tests.helpers.objects import moto_endpoint, s3
from tests.helpers.sync import kraiter

__all__ = ["kraiter", "moto_endpoint", "s3"]
