"""Sub-commands that tie several layers together (the top layer: may import any package).

`deer_vla.cli` dispatches to them; a command whose work belongs to one layer
keeps its ``cli_main`` beside that work instead (e.g. ``train.trainer``).
"""
