"""``hiclip explore``: an interactive hierarchy explorer in the browser.

:mod:`.views` holds the app's logic as plain functions over the :mod:`hiclip.induce` read-outs
(no gradio); :mod:`.app` is the thin gradio layer, imported only by the ``explore`` command.
"""
