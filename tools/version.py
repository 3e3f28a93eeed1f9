"""The installed showme's version, for ``showme --version``, the OpenAPI document and ``/healthz`` readers."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def showme_version() -> str:
    """The installed package's version (``pyproject.toml``), or ``0+unknown`` when run from an uninstalled tree."""
    try:
        return version("showme")
    except PackageNotFoundError:
        return "0+unknown"
