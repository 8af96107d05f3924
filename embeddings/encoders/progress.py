"""A progress bar for long jobs (encoders and indexing), below the modules that show one."""

from __future__ import annotations


def progress_ticker(total: int, show: bool, what: str, unit: str):  # noqa: ANN201 - a callable
    """A function to call once per item of a ``total``-item job: it advances a progress bar
    named ``what`` (tqdm) when ``show`` and the job has more than one item, else does nothing."""
    if not show or total < 2:
        return lambda: None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm ships with sentence-transformers/transformers
        return lambda: None
    bar = tqdm(total=total, desc=what, unit=unit)

    def tick() -> None:
        bar.update(1)
        if bar.n >= total:
            bar.close()

    return tick
