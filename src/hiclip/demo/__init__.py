"""The main job (`make demo`): HiCLIP-Tiny against CLIP-Tiny, trained and judged end to end."""
from .config import DemoConfig
from .layout import DemoLayout
from .pipeline import run_demo

__all__ = ["DemoConfig", "DemoLayout", "run_demo"]
