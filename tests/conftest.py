"""
pytest only: run each test in its own temporary directory, as trial runs tests in _trial_temp, so
that C{TestCase.mktemp()} paths and any files a test writes stay out of the checkout.
"""

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _inTemporaryDirectory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
