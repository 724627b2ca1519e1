"""Every tracking test runs against both stores: sqlite (one worker) and PostgreSQL (two workers)."""

from __future__ import annotations

import pytest


@pytest.fixture
def tracking(tracking_each_store) -> str:
    """The session's server on sqlite, then on PostgreSQL."""
    return tracking_each_store
