"""The explorer's page through gradio_client, against a locally launched app (offline)."""
from __future__ import annotations

import pytest
from PIL import Image

from hiclip.explore import views

gr = pytest.importorskip("gradio", reason="the [explorer] extra is not installed")
client_lib = pytest.importorskip("gradio_client")


@pytest.fixture
def served(panels, tmp_path, offline):
    from hiclip.explore.app import build_app, launch

    app = build_app(panels, tmp_path)
    url = launch(app, block=False)
    yield url
    app.close()


def test_app_answers_through_gradio_client(served, panels, scene_png):
    assert served.startswith("http://127.0.0.1:")
    client = client_lib.Client(served, verbose=False)
    caption = "two small green triangles left of a big circle"
    out = client.predict(caption, "tree_transformer", 0.6, api_name="/caption")
    assert len(out) == 3 * len(panels)
    for i, panel in enumerate(panels):
        tree, _, _ = views.caption_view(panel, caption, "tree_transformer", 0.6)
        assert out[3 * i] == str(tree)
    out = client.predict(client_lib.handle_file(str(scene_png[0])), 0.45, api_name="/groups")
    for i, panel in enumerate(panels):
        _, counts = views.image_view(panel, Image.open(scene_png[0]), 0.45)
        assert out[2 * i + 1] == "regions per layer: " + " ".join(map(str, counts))
        assert len(out[2 * i]) == len(counts)  # one overlay per layer
    with pytest.raises(Exception, match="nothing to parse"):
        client.predict("...", "topdown", 0.5, api_name="/caption")
