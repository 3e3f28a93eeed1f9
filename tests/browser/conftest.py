"""Headless Chromium for the browser tests: Debian's ``/usr/bin/chromium`` driven by playwright's Python package
(playwright's own browser download does not work here). Tests are skipped, saying why, without either."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
#: Every browser test module's marks: Chromium must be there, and SQLite serves (the pages are what is tested).
BROWSER_MARKS = [
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason="headless browser tests need chromium (apt-get install chromium)"
    ),
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    playwright_api = pytest.importorskip("playwright.async_api", reason="browser tests need the playwright package")
    async with playwright_api.async_playwright() as p:
        instance = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield instance
        await instance.close()
