"""``hiclip explore``: the hierarchy explorer (gradio, the ``[explorer]`` extra) on 127.0.0.1."""
from __future__ import annotations

import argparse
import sys

from .common import device


def run(args: argparse.Namespace) -> int:
    try:
        from ..explore.app import explore
    except ImportError as err:
        raise ValueError(f"the explorer needs gradio ({err}); install it with pip install -e \".[explorer]\"") from None
    from ..explore.views import demo_checkpoint, load_panel
    dev = device(args.device)
    panels = [load_panel(spec, dev) for spec in [args.model or str(demo_checkpoint()), args.model2] if spec]
    for panel in panels:
        if panel.random:
            print(f"hiclip explore: warning: {panel.label}: a bare config name, so its weights are a random "
                  "initialisation", file=sys.stderr)
    print(f"serving on http://127.0.0.1:{args.port} (Ctrl-C stops)")
    explore(panels, args.port)
    return 0
