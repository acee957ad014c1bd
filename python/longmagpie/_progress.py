"""Progress bars for long steps (tqdm on stderr), off unless asked for; the CLI turns them on unless ``--quiet``."""

from __future__ import annotations

from typing import Any


def progress_bar(
    total: int | None, desc: str, unit: str, enabled: bool, *, unit_scale: bool = False, **kwargs: Any
) -> Any:
    """Return a tqdm bar (a disabled one, which costs nothing, when ``enabled`` is false).

    ``unit_scale`` shows counts with SI prefixes (``12.3M tok``: for tokens and bytes); the bar stays on
    screen when done unless ``leave=False`` is passed.
    """
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        unit_scale=unit_scale,
        disable=not enabled,
        dynamic_ncols=True,
        mininterval=0.5,
        **kwargs,
    )
