"""Shared test fixtures: the third-party files in ../shared/fixtures and tmp trees."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"


@pytest.fixture(scope="session")
def fixtures() -> Path:
    """``../shared/fixtures`` beside the project. In CI (CI=true) its absence is a failure."""
    if not FIXTURES.is_dir():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{FIXTURES} is missing: CI must have ../shared beside the clone")
        pytest.skip(f"{FIXTURES} is absent (only present beside the project checkout and in CI)")
    return FIXTURES


@pytest.fixture(params=["fast", "pillow"])
def decoder(request, monkeypatch):
    """Run a test with the libjpeg-turbo fast path (the ``fast`` extra, which the test set-up
    installs) and with Pillow alone (the fallback, as without the extra). Forked DataLoader
    workers inherit the choice."""
    from dsprep.loading import decode as decode_module

    if request.param == "pillow":
        monkeypatch.setattr(decode_module, "_simplejpeg", None)
    else:
        assert decode_module.fast_jpeg_available(), "scripts/setup.sh installs the fast extra (simplejpeg)"
    return request.param
