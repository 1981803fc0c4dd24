"""Sweeps: models × sizes × precisions × targets × evaluation sets, each cell a Ray task
(``sr-sweep``; Ray is the optional extra ``srdeploy[sweep]``).

* :mod:`.plan` — the grid, validated whole before any task (``build_plan``), and each cell's config hash;
* :mod:`.tasks` — what one task does (export, target check, evaluation, timing), Ray-free;
* :mod:`.engine` — the Ray side: resources per task, retries, incremental ``results.json``, ``--resume``;
* :mod:`.report` — ``results.md`` and the PSNR–latency / memory plot.
"""
from .plan import Plan, build_plan

__all__ = ["Plan", "build_plan", "run_sweep"]


def run_sweep(*args, **kwargs):
    from .engine import run_sweep as _run

    return _run(*args, **kwargs)
