"""Command-line arguments as text, whatever the locale."""
from __future__ import annotations

import os
import sys
from collections.abc import Sequence


def check_text_arguments(argv: Sequence[str]) -> list[str]:
    """``argv`` as given, or ValueError naming the first argument that is not text in this locale: under a
    non-UTF-8 locale with Python's UTF-8 mode off (LC_ALL=C PYTHONUTF8=0) a non-ASCII argument arrives as
    surrogate escapes, which name a file correctly but fail deep inside rcl, YAML or a log ("surrogates not
    allowed"). Decoding them as UTF-8 instead would break the file names, so the way out is said."""
    for arg in argv:
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"argument {os.fsencode(arg)!r} is not text in this locale (file system encoding "
                             f"{sys.getfilesystemencoding()}): run with PYTHONUTF8=1 or a UTF-8 locale") from None
    return list(argv)
