"""Progress bars for long steps (tqdm on stderr), off unless asked for; the CLI turns them on unless ``--quiet``."""

from __future__ import annotations

from typing import Any


def progress_bar(total: int | None, desc: str, unit: str, enabled: bool, **kwargs: Any) -> Any:
    """Return a tqdm bar (a disabled one, which costs nothing, when ``enabled`` is false).

    Counts are shown with SI prefixes (``12.3M tokens``); the bar is left on screen when done unless
    ``leave=False`` is passed.
    """
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        unit_scale=True,
        disable=not enabled,
        dynamic_ncols=True,
        mininterval=0.5,
        **kwargs,
    )
