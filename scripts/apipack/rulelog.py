"""Send a rule script's output to its Snakemake log file."""

from __future__ import annotations

import contextlib
import logging
import sys
import traceback
from collections.abc import Iterator


@contextlib.contextmanager
def logged(snakemake) -> Iterator[None]:
    """Redirect stdout, stderr and logging to ``snakemake.log[0]`` while the body runs."""
    if not snakemake.log:
        yield
        return
    with open(snakemake.log[0], "w", buffering=1, encoding="utf-8") as fh:
        old = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = fh
        logging.basicConfig(stream=fh, level=logging.INFO, force=True)
        try:
            yield
        except BaseException:
            traceback.print_exc(file=fh)
            raise
        finally:
            sys.stdout, sys.stderr = old
