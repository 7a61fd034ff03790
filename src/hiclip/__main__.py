"""``python -m hiclip ...``: the ``hiclip`` command."""
import sys

from hiclip.cli import main

sys.exit(main())
