"""`python -m harness.rig build|pack|unpack|headers`: the rig's checkpoints (see harness/rig/__init__.py)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m harness.rig", allow_abbrev=False,
                                     description=__doc__.split("\n")[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    build = verbs.add_parser("build", help="build the variants (amd-quark for the Quark exports)")
    build.add_argument("out", type=Path)
    build.add_argument("--only", nargs="*", default=None, help="variant ids, e.g. tiny-dsv3/bf16")
    pack = verbs.add_parser("pack", help="deduplicate and compress the checkpoints under OUT")
    pack.add_argument("out", type=Path)
    pack.add_argument("pack", type=Path)
    unpack = verbs.add_parser("unpack", help="restore the checkpoints of a pack")
    unpack.add_argument("pack", type=Path)
    unpack.add_argument("out", type=Path)
    headers = verbs.add_parser("headers", help="config.json and safetensors headers of every checkpoint, as JSON")
    headers.add_argument("out", type=Path)
    args = parser.parse_args()
    if args.verb == "build":
        from harness.local.models import source_dir
        from harness.rig.checkpoints import BY_ID, VARIANTS

        chosen = [BY_ID[i] for i in args.only] if args.only else list(VARIANTS)
        for variant in chosen:
            start = time.monotonic()
            variant.build(args.out / variant.model / variant.name, source_dir("tiny-qwen3"))
            print(json.dumps({"built": variant.id, "seconds": round(time.monotonic() - start, 1)}), flush=True)
    elif args.verb == "pack":
        from harness.rig.pack import pack as do_pack

        print(json.dumps(do_pack(args.out, args.pack)))
    elif args.verb == "unpack":
        from harness.rig.pack import unpack as do_unpack

        print(json.dumps({"unpacked": [str(p) for p in do_unpack(args.pack, args.out)]}))
    else:
        from harness.rig.pack import headers as read_headers

        print(json.dumps(read_headers(args.out), indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
