"""Fetch the intersphinx inventories of Python and Flask into ``docs/_inventories/``.

Run once on a machine with network access; ``docs/conf.py`` then links to
those sites without touching the network at build time::

    python docs/fetch_inventories.py
"""
from __future__ import annotations

import sys
import urllib.request
from pathlib import Path

TARGETS = {
    "python": "https://docs.python.org/3/objects.inv",
    "flask": "https://flask.palletsprojects.com/en/stable/objects.inv",
}


def main() -> int:
    """Download each inventory; return 1 if any failed."""
    folder = Path(__file__).resolve().parent / "_inventories"
    folder.mkdir(exist_ok=True)
    status = 0
    for name, url in TARGETS.items():
        try:
            with urllib.request.urlopen(url, timeout=30) as reply:
                (folder / f"{name}.inv").write_bytes(reply.read())
        except OSError as exc:
            print(f"{name}: {url}: {exc}", file=sys.stderr)
            status = 1
        else:
            print(f"{name}: saved {folder / (name + '.inv')}")
    return status


if __name__ == "__main__":
    sys.exit(main())
