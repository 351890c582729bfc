"""Command-line arguments as text, for the commands that hand them to rcl."""
from __future__ import annotations

import os
import sys
from collections.abc import Sequence


def check_text_arguments(argv: Sequence[str]) -> list[str]:
    """``argv`` as given, or ValueError naming the first argument that is not text. Python passes bytes it cannot
    decode as surrogate escapes: under a non-UTF-8 locale with its UTF-8 mode off (LC_ALL=C PYTHONUTF8=0) any
    non-ASCII argument, under UTF-8 a file name in another encoding. They name a file correctly, but rcl (which
    reads every argument of a node or the bringup) failed on them deep inside ("surrogates not allowed")."""
    for arg in argv:
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            encoding = sys.getfilesystemencoding()
            way_out = ("" if encoding.lower().replace("-", "") == "utf8"
                       else f" (file system encoding {encoding}): run with PYTHONUTF8=1 or a UTF-8 locale")
            raise ValueError(f"argument {os.fsencode(arg)!r} is not UTF-8 text{way_out}") from None
    return list(argv)
