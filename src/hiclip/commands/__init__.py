"""What each ``hiclip`` subcommand runs: one module per command family, imported by ``hiclip.cli``
only when its command runs (so ``hiclip --help`` imports none of them). Each ``run`` function takes
the parsed ``argparse.Namespace`` and returns the exit status; user errors raise ValueError /
FileNotFoundError, which ``hiclip.cli.main`` prints as one line.

:mod:`.options` (the light option dataclasses) is the exception: ``hiclip.cli`` reads it up front.
"""
