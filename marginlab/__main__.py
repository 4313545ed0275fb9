"""``python -m marginlab``: the ``marginlab`` command."""

import sys

from marginlab.models.app.cli import main

if __name__ == "__main__":
    sys.exit(main())
