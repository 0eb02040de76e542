"""`imm merge`: one IMM merge step, theta = alpha * base + (1 - alpha) * (prev + DARE_p(sft - prev))."""
from __future__ import annotations


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "merge",
        help="merge base, prev and sft checkpoints into a new one (IMM step with DARE)",
        description=__doc__ + " Streams tensor by tensor; writes nothing unless every input is valid.",
    )
    p.add_argument("--base", required=True, metavar="DIR", help="the base model (theta_base)")
    p.add_argument("--prev", required=True, metavar="DIR", help="the model SFT started from (theta_prev)")
    p.add_argument("--sft", required=True, metavar="DIR", help="the fine-tuned model (theta_sft)")
    p.add_argument("--alpha", required=True, type=float, help="weight of base, in [0, 1]")
    p.add_argument("--drop", required=True, type=float, metavar="P", help="DARE drop rate, in [0, 1)")
    p.add_argument("--seed", required=True, type=int, help="seed of the DARE masks")
    p.add_argument("--out", required=True, metavar="DIR", help="new (or empty) folder for the result")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the maths runs (default cpu)")
    p.set_defaults(func=run)


def run(args) -> int:
    from engine.merge.stream import merge_checkpoints

    result = merge_checkpoints(args.base, args.prev, args.sft, args.out, alpha=args.alpha,
                               drop_rate=args.drop, seed=args.seed, device=args.device)
    print(f"merged {result.tensors} tensors ({result.parameters:,} parameters, "
          f"{result.bytes_written / 1e9:.2f} GB) into {result.out} in {result.seconds:.1f} s")
    return 0
