"""``python -m htcluster``: the same as the ``htcluster`` command."""
from .cli import main

if __name__ == "__main__":
    main()
