"""Map a function over tasks on a local process pool or on Ray; yield results as they finish.

The pool uses the spawn start method with one BLAS/OpenMP thread per worker (numpy's
threads fight over the cores otherwise: runs were 1.7x slower). Ray runs plain tasks
(one CPU each), not Tune: Tune's per-trial overhead swamps sub-second simulations.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
BACKENDS = ("local", "ray")


def _one_thread() -> None:
    for var in THREAD_VARS:
        os.environ[var] = "1"


def map_local(fn: Callable[[Any], Any], tasks: Sequence[Any], workers: int) -> Iterator[tuple[int, Any]]:
    """(task index, result) pairs in completion order, from a pool of `workers` processes."""
    saved = {v: os.environ.get(v) for v in THREAD_VARS}
    _one_thread()  # spawned workers read these when they import numpy
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_one_thread)
    try:
        pending = {pool.submit(fn, t): i for i, t in enumerate(tasks)}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                yield pending.pop(fut), fut.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # on an interrupt, queued runs are not started
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


def map_ray(fn: Callable[[Any], Any], tasks: Sequence[Any], address: str | None,
            workers: int | None = None) -> Iterator[tuple[int, Any]]:
    """(task index, result) pairs in completion order, as Ray tasks (one CPU each).

    `address` None starts a local Ray instance (`workers` CPUs); otherwise it joins that
    cluster ("auto", "ray://head:10001", "head:6379").
    """
    try:
        import ray
    except ImportError:
        raise RuntimeError("the ray backend needs Ray: pip install 'hermes-sim[ray]'") from None
    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if address:
            kwargs["address"] = address
        elif workers:
            kwargs["num_cpus"] = workers
        env = {v: "1" for v in THREAD_VARS}
        pythonpath = os.environ.get("PYTHONPATH")
        if pythonpath and not address:  # a local cluster's workers import this checkout as the driver does
            env["PYTHONPATH"] = pythonpath
        ray.init(runtime_env={"env_vars": env}, **kwargs)
        started = True
    try:
        remote = ray.remote(num_cpus=1)(fn)
        refs = {remote.remote(t): i for i, t in enumerate(tasks)}
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            for ref in done:
                yield refs.pop(ref), ray.get(ref)
    finally:
        if started:
            ray.shutdown()


def map_tasks(fn: Callable[[Any], Any], tasks: Sequence[Any], backend: str = "local", workers: int = 1,
              address: str | None = None) -> Iterator[tuple[int, Any]]:
    if backend == "local":
        return map_local(fn, tasks, workers)
    if backend == "ray":
        return map_ray(fn, tasks, address, workers)
    raise ValueError(f"backend: unknown value {backend!r}; expected one of {', '.join(BACKENDS)}")
