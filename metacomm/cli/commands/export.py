"""``metacomm export``: the (pruned, quantised) decoder of a learned codec as an ONNX file for deployment.

    metacomm export --checkpoint CKPT --bits 4 --format onnx --out codec.onnx

Input ``y`` float32 ``[batch, 2, n]`` (Re; Im of the n received samples), outputs ``block_logits`` and ``message``
(arg-max). CKPT: a fading-ae meta-train checkpoint or a ``metacomm pack compression`` run's ``codecs.pt``
(``--method``). Needs ``pip install 'metacomm[onnx]'``. An existing ``--out`` is replaced only when it is a model
exported by metacomm, or with ``--overwrite``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from metacomm.cli import _names

if TYPE_CHECKING:
    from metacomm.experiments.export import ExportConfig


#: the one-line help in metacomm --help (read without building this parser)
COMMAND_HELP = "export the (quantised) decoder to ONNX"


def add_parser(subparsers, name):
    p = subparsers.add_parser(name, help=COMMAND_HELP, description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="fading-ae meta-train checkpoint or a compression codecs.pt")
    p.add_argument("--bits", type=int, default=8, help="weight bit-width 1-16 (32: float)")
    p.add_argument("--sparsity", type=float, default=0.0, help="magnitude-pruning fraction in [0, 1)")
    p.add_argument("--format", default="onnx", help=f"output format: {_names.listing('metacomm.experiments.export', 'FORMATS')}")
    p.add_argument("--method", default=None, help="initialisation of a codecs.pt (ptq, qat, maml-ste, metaquant)")
    p.add_argument("--out", required=True, help="output file, e.g. codec.onnx")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing --out that is not a model exported by metacomm")
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    from metacomm.experiments.export import ExportConfig

    return execute(ExportConfig(checkpoint=args.checkpoint, out=args.out, bits=args.bits, sparsity=args.sparsity,
                                format=args.format, method=args.method, overwrite=args.overwrite))


def execute(cfg: ExportConfig) -> int:
    from metacomm.experiments.export import run_export

    run_export(cfg)
    return 0
