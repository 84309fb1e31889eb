"""The installed decaywatch's version, from the package metadata (``pyproject.toml``'s ``version``).

Read when asked for, not at import, so that building the ``decaywatch``
parser stays instant.

>>> import importlib.metadata
>>> package_version() == importlib.metadata.version("decaywatch")
True
"""

from __future__ import annotations

import functools

DISTRIBUTION = "decaywatch"
UNKNOWN = "unknown"
"""The version reported when decaywatch runs from a source tree that was never installed."""


@functools.cache
def package_version() -> str:
    """The version of the installed ``decaywatch`` distribution, or ``"unknown"`` without one."""
    import importlib.metadata

    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return UNKNOWN
