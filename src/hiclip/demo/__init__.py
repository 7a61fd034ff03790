"""The main job (`make demo`): HiCLIP-Tiny against CLIP-Tiny, trained and judged end to end."""
from .pipeline import DemoConfig, run_demo

__all__ = ["DemoConfig", "run_demo"]
