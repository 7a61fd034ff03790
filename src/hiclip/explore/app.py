"""The gradio layer of ``hiclip explore``: widgets wired to :mod:`.views`, served on 127.0.0.1.

Nothing here contacts another host: analytics off (``GRADIO_ANALYTICS_ENABLED=False`` before
gradio is imported, and ``analytics_enabled=False``), no share link, no server-side rendering
or MCP server, gradio's bundled fonts (its default theme uses no web fonts).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # read when gradio is imported
import gradio as gr  # noqa: E402

from ..induce.trees import METHODS  # noqa: E402
from .views import Panel, caption_view, image_view, links_figure, tree_picture, world_examples  # noqa: E402

HOST = "127.0.0.1"


def _friendly(fn: Callable) -> Callable:
    """Bad input (ValueError) -> one line in the page instead of a traceback."""
    def wrapped(*args: Any) -> Any:
        try:
            return fn(*args)
        except ValueError as err:
            raise gr.Error(str(err)) from None
    return wrapped


def caption_outputs(panels: Sequence[Panel], caption: str, method: str, threshold: float) -> list[Any]:
    """Per panel: the tree in brackets, its picture, the links-per-layer figure."""
    out: list[Any] = []
    for panel in panels:
        tree, links, words = caption_view(panel, caption, method, threshold)
        out += [str(tree), tree_picture(tree), links_figure(links, words, threshold)]
    return out


def image_outputs(panels: Sequence[Panel], image: Any, threshold: float) -> list[Any]:
    """Per panel: the overlays per layer (a gallery) and the region counts per layer; blank without an image."""
    out: list[Any] = []
    for panel in panels:
        if image is None:
            out += [[], ""]
            continue
        overlays, counts = image_view(panel, image, threshold)
        out += [[(im, f"layer {l}: {n} regions") for l, (im, n) in enumerate(zip(overlays, counts))],
                "regions per layer: " + " ".join(map(str, counts))]
    return out


def build_app(panels: Sequence[Panel], examples_dir: Path) -> gr.Blocks:
    """The page: a caption section and an image section, one column per panel in each."""
    size = panels[0].model.cfg.vision_cfg.image_size
    examples = world_examples(examples_dir, image_size=size)
    with gr.Blocks(title="hiclip explore", analytics_enabled=False) as app:
        gr.Markdown("## hiclip explore\nHierarchies a model induces: caption trees from its text links, image "
                    "groups from its patch links. Models: " + ", ".join(f"`{p.label}`" for p in panels))
        gr.Markdown("### A caption")
        caption = gr.Textbox(label="caption", value=examples[0][1], elem_id="caption")
        with gr.Row():
            method = gr.Radio(list(METHODS), value="topdown", label="tree read-out", elem_id="method")
            threshold = gr.Slider(0.0, 1.0, value=0.5, step=0.01, label="threshold τ", elem_id="threshold")
        parse = gr.Button("parse", variant="primary", elem_id="parse")
        gr.Examples([[c] for _, c in examples], inputs=[caption], label="captions from the world")
        caption_out: list[Any] = []
        with gr.Row():
            for i, panel in enumerate(panels):
                with gr.Column():
                    gr.Markdown(f"### {panel.label}")
                    caption_out += [gr.Textbox(label="tree", elem_id=f"tree-{i}", interactive=False),
                                    gr.Image(label="tree picture", type="pil", interactive=False),
                                    gr.Plot(label="links per layer")]
        gr.Markdown("### An image")
        image = gr.Image(label="image", type="pil", sources=["upload"], elem_id="image")
        image_threshold = gr.Slider(0.0, 1.0, value=0.5, step=0.01, label="threshold τ",
                                    elem_id="image-threshold")
        gr.Examples([[str(p)] for p, _ in examples], inputs=[image], label="scenes from the world")
        image_out: list[Any] = []
        with gr.Row():
            for i, panel in enumerate(panels):
                with gr.Column():
                    gr.Markdown(f"### {panel.label}")
                    image_out += [gr.Gallery(label="groups per layer", columns=4, height="auto",
                                             elem_id=f"groups-{i}"),
                                  gr.Textbox(label="regions", elem_id=f"regions-{i}", interactive=False)]
        on_caption = _friendly(lambda c, m, t: caption_outputs(panels, c, m, t))
        on_image = _friendly(lambda im, t: image_outputs(panels, im, t))
        gr.on([parse.click, caption.submit, method.change, threshold.release], on_caption,
              [caption, method, threshold], caption_out, api_name="caption")
        gr.on([image.change, image_threshold.release], on_image, [image, image_threshold],
              image_out, api_name="groups")
    return app


def launch(app: gr.Blocks, port: int | None = None, block: bool = True) -> str:
    """Serve ``app`` on 127.0.0.1 (``port``; None: gradio's first free one from 7860) -> its URL.
    ``block``: until interrupted (the command); else return at once (tests)."""
    _, url, _ = app.launch(server_name=HOST, server_port=port, share=False, inbrowser=False,
                           prevent_thread_lock=not block, ssr_mode=False, mcp_server=False, pwa=False,
                           enable_monitoring=False, footer_links=[], quiet=not block)
    return url


def explore(panels: Sequence[Panel], port: int | None = None) -> None:
    """Build the page for ``panels`` and serve it until interrupted."""
    with tempfile.TemporaryDirectory(prefix="hiclip-explore-") as folder:
        launch(build_app(panels, Path(folder)), port)
