"""Executors: where the independent tasks of an experiment run (in this process, or on a Ray cluster).

An experiment splits its work into *tasks* that are pure functions of (config, task id): a ``ber`` sweep point
``i`` (seed :func:`metacomm.sims.engine.point_seed` ``(seed, i)``), a ``fewshot`` point (scheme ``k``, pilot count
``j``: generator seeded ``1000 seed + 17 j + k``), a ``meta-train`` restart ``r`` (seed ``seed + r``). A task
returns raw counts (or a restart's checkpoint payload); the *driver* (the experiment function) merges the results
by task id and applies the stopping rules, so the result does not depend on where or in which order the tasks
ran: a sweep through :class:`RayExecutor` equals the same sweep through :class:`LocalExecutor`.

Interface::

    ex = make_executor("ray", ray_address=None, num_gpus=0)      # or LocalExecutor()
    for i, out in ex.map(fn, specs, context=(factory, args)):    # completion order, any order
        ...
    ex.close()

``fn(ctx, spec)`` is a module-level function (picklable by reference), ``ctx = factory(*args)`` the expensive
shared state of the tasks (a loaded checkpoint, a built link); :class:`LocalExecutor` builds it once, a Ray
worker once per process (cached by ``(factory, args)``). ``map`` yields ``(index into specs, result)`` pairs as the
tasks finish; closing the iterator early (``break``) cancels the tasks not yet finished.

Config keys shared by the experiment configs: ``executor`` (``"local"`` | ``"ray"``), ``ray_address`` (``None``:
start a local Ray instance with ``ray_num_cpus`` CPUs, ``"auto"``: join the running cluster, or
``"ray://host:port"`` / ``"host:port"``), ``num_gpus`` (GPUs per task, a float >= 0; fractional values share a
GPU between tasks).
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from metacomm._validation import ConfigError

__all__ = ["EXECUTORS", "Executor", "LocalExecutor", "RayExecutor", "make_executor", "check_executor_settings",
           "RAY_MISSING"]

EXECUTORS = ("local", "ray")
RAY_MISSING = "Ray is not installed; install the optional extra: pip install metacomm[ray]"


class Executor:
    """Runs independent tasks; see the module docstring. Subclasses implement :meth:`map`."""

    name = "base"

    def map(self, fn: Callable[[Any, Any], Any], specs: Sequence[Any], *,
            context: tuple[Callable[..., Any], tuple] | None = None) -> Iterator[tuple[int, Any]]:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the executor holds (a Ray instance it started)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class LocalExecutor(Executor):
    """Runs the tasks in this process, one after the other, in the order given (today's behaviour)."""

    name = "local"

    def map(self, fn, specs, *, context=None):
        ctx = context[0](*context[1]) if context is not None else None
        for i, spec in enumerate(specs):
            yield i, fn(ctx, spec)


# ---- Ray ------------------------------------------------------------------------------------------------------

_CONTEXTS: dict[bytes, Any] = {}  # per worker process: (factory, args) -> context


def _cached_context(context):
    if context is None:
        return None
    factory, args = context
    try:
        key = pickle.dumps((factory.__module__, factory.__qualname__, args))
    except Exception:  # noqa: BLE001 - unpicklable args: no caching
        return factory(*args)
    if key not in _CONTEXTS:
        if len(_CONTEXTS) > 4:
            _CONTEXTS.clear()
        _CONTEXTS[key] = factory(*args)
    return _CONTEXTS[key]


def _run_task(fn, context, spec, threads):
    """What a Ray worker runs: the task ``fn(ctx, spec)`` with the context built (once per process)."""
    import torch
    if threads:
        torch.set_num_threads(int(threads))
    return fn(_cached_context(context), spec)


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("executor", RAY_MISSING) from None
    return ray


def _cluster_address(address: str) -> str | None:
    """``host:port`` that ``address`` resolves to (``"auto"``: ``RAY_ADDRESS`` or the address file of the last
    ``ray start`` on this machine), or None when nothing is known."""
    if address == "auto":
        address = os.environ.get("RAY_ADDRESS") or ""
        if not address:
            import tempfile
            path = os.path.join(tempfile.gettempdir(), "ray", "ray_current_cluster")
            try:
                with open(path) as f:
                    address = f.read().strip()
            except OSError:
                return None
    if address.startswith("ray://"):
        address = address[len("ray://"):]
    return address or None


def _check_reachable(address: str) -> None:
    """Fail fast (ConfigError naming ``ray_address``) when no Ray cluster answers at ``address``: Ray itself
    waits 60 s for a dead cluster and then terminates the process."""
    import socket
    hostport = _cluster_address(address)
    if hostport is None:
        raise ConfigError("ray_address", f"no running Ray cluster found for {address!r} (start one with `ray start "
                                         "--head`, set RAY_ADDRESS, or omit --ray-address to start a local instance)")
    host, _, port = hostport.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=3):
            pass
    except (OSError, ValueError):
        raise ConfigError("ray_address", f"no Ray cluster answers at {hostport} (from {address!r}); is it running "
                                         "(`ray status`)?") from None


class RayExecutor(Executor):
    """Runs every task as a Ray task (``num_cpus=1``, ``num_gpus`` each).

    :param ray_address: ``None`` starts a local Ray instance (``num_cpus`` CPUs, no dashboard) unless one is already
        initialised in this process; ``"auto"`` joins the running cluster (``ray start --head`` /
        ``ray start --address ...``); any other value is passed to :func:`ray.init` (``"host:port"``,
        ``"ray://host:port"``).
    :param num_gpus: GPUs reserved per task (float >= 0); with ``device="cuda"`` each task then sees its own GPU.
    :param num_cpus: CPUs of a local instance (default ``min(4, os.cpu_count())``).
    :param threads: torch intra-op threads per task (default 1: the built-in models gain nothing from more).
    :param runtime_env: passed to :func:`ray.init`; default: ship the driver's ``PYTHONPATH`` to local workers so
        they import the same metacomm.

    Worker processes must be able to import metacomm (same version) and read the files a task names (checkpoints):
    on a cluster, install metacomm on every node and keep checkpoints on a shared file system.
    """

    name = "ray"

    def __init__(self, ray_address: str | None = None, *, num_gpus: float = 0.0, num_cpus: int | None = None,
                 threads: int = 1, runtime_env: dict | None = None):
        ray = _import_ray()
        self.num_gpus = float(num_gpus)
        self.threads = threads
        self._started = False
        if not ray.is_initialized():
            import logging
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                      "ignore_reinit_error": True, "logging_level": logging.ERROR}
            if runtime_env is None and os.environ.get("PYTHONPATH"):
                runtime_env = {"env_vars": {"PYTHONPATH": os.environ["PYTHONPATH"]}}
            if runtime_env:
                kwargs["runtime_env"] = runtime_env
            if ray_address is None:
                kwargs["num_cpus"] = int(num_cpus or min(4, os.cpu_count() or 1))
            else:
                _check_reachable(ray_address)
                kwargs["address"] = ray_address
            try:
                ray.init(**kwargs)
            except ConnectionError as e:
                raise ConfigError("ray_address", f"cannot connect to a Ray cluster at {ray_address!r}: "
                                                 f"{str(e).splitlines()[0][:200]}") from None
            self._started = True
        self._ray = ray
        self._remote = ray.remote(num_cpus=1, num_gpus=self.num_gpus, max_retries=0)(_run_task)

    def map(self, fn, specs, *, context=None):
        ray = self._ray
        ctx_ref = ray.put(context)
        refs = [self._remote.remote(fn, ctx_ref, spec, self.threads) for spec in specs]
        index = {r: i for i, r in enumerate(refs)}
        pending = list(refs)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for r in done:
                    yield index[r], ray.get(r)
        finally:
            for r in pending:
                ray.cancel(r, force=True)

    def close(self) -> None:
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()
        self._started = False


def check_executor_settings(executor, ray_address, num_gpus, device=None) -> tuple[str, str | None, float]:
    """Validate the shared config keys (ConfigError naming ``executor``/``ray_address``/``num_gpus``); ``device``:
    the run's device (a CUDA device on Ray needs ``num_gpus > 0``: Ray hides the GPUs from tasks without)."""
    if executor not in EXECUTORS:
        raise ConfigError("executor", f"unknown executor {executor!r}; allowed: {', '.join(EXECUTORS)}")
    if ray_address is not None and (not isinstance(ray_address, str) or not ray_address.strip()):
        raise ConfigError("ray_address", f"expected 'auto', HOST:PORT or ray://HOST:PORT, got {ray_address!r}")
    if isinstance(num_gpus, bool):
        raise ConfigError("num_gpus", f"expected a number of GPUs per task >= 0, got {num_gpus!r}")
    try:
        g = float(num_gpus)
    except (TypeError, ValueError):
        raise ConfigError("num_gpus", f"expected a number of GPUs per task >= 0, got {num_gpus!r}") from None
    if not (g >= 0 and g < 1e6):
        raise ConfigError("num_gpus", f"expected a number of GPUs per task >= 0, got {num_gpus!r}")
    if executor == "local" and g > 0:
        raise ConfigError("num_gpus", "GPUs per task are a Ray setting; use executor='ray' (--executor ray), or "
                                      "--device cuda for the local executor")
    if executor == "local" and ray_address is not None:
        raise ConfigError("ray_address", "a Ray address needs executor='ray' (--executor ray)")
    if executor == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ConfigError("executor", RAY_MISSING) from None
        if device is not None and str(device).startswith("cuda") and g == 0:
            raise ConfigError("num_gpus", "device cuda on Ray needs GPUs per task (--num-gpus 1, or a fraction "
                                          "such as 0.25 to share a GPU)")
    return executor, ray_address, g


def make_executor(executor: str = "local", *, ray_address: str | None = None, num_gpus: float = 0.0,
                  **kwargs) -> Executor:
    """The executor a config names (validated with :func:`check_executor_settings`)."""
    executor, ray_address, num_gpus = check_executor_settings(executor, ray_address, num_gpus)
    if executor == "local":
        return LocalExecutor()
    return RayExecutor(ray_address, num_gpus=num_gpus, **kwargs)


def ordered(results: Iterable[tuple[int, Any]], n: int) -> list:
    """The results of :meth:`Executor.map` as a list indexed by task (every task must have finished)."""
    out: list = [None] * n
    seen = set()
    for i, r in results:
        out[i] = r
        seen.add(i)
    if len(seen) != n:
        raise RuntimeError(f"executor returned {len(seen)} of {n} task results")
    return out
