"""Environment switches shared by the data layer and the model zoo."""

from __future__ import annotations

import os

DOWNLOAD_ENV = "RESLAB_DOWNLOAD"


def download_allowed(download: bool | None = None) -> bool:
    """Whether data sets and weights may be downloaded.

    Args:
        download: An explicit answer; ``None`` reads ``$RESLAB_DOWNLOAD`` (``0``, ``false``, ``no``
            or ``off`` forbid downloads; default allowed).
    """
    if download is not None:
        return bool(download)
    return os.environ.get(DOWNLOAD_ENV, "1").strip().lower() not in ("0", "false", "no", "off")
