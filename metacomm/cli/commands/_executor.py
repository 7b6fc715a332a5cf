"""``--executor/--ray-address/--num-gpus``: the executor flags shared by ``ber``, ``fewshot`` and ``meta-train``."""

from __future__ import annotations

__all__ = ["add_executor_flags", "executor_kwargs"]


def add_executor_flags(p, unit: str) -> None:
    """Add the executor flags to parser ``p``; ``unit`` names one task (e.g. "sweep point")."""
    g = p.add_argument_group("scale-out (optional extra metacomm[ray])")
    g.add_argument("--executor", default="local", metavar="NAME",
                   help=f"where the independent tasks (one per {unit}) run: local (in this process, in order; "
                        "default) or ray (Ray tasks; needs pip install metacomm[ray]); results are identical")
    g.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="Ray cluster to join: auto (the running cluster, e.g. after `ray start --head`), HOST:PORT "
                        "or ray://HOST:PORT; default: start a local Ray instance")
    g.add_argument("--num-gpus", default=0.0, metavar="G",
                   help="GPUs reserved per Ray task (a number >= 0, fractions share a GPU; default 0)")


def executor_kwargs(args) -> dict:
    """The config keys of the executor flags."""
    return {"executor": args.executor, "ray_address": args.ray_address, "num_gpus": args.num_gpus}
