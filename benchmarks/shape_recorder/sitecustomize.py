"""Put this directory on a server's PYTHONPATH (a scratch suite's `server.env: {PYTHONPATH: <dir>, SHAPES_OUT:
<file>}`): every distinct (tokens, in_features, out_features) a linear layer sees is appended to SHAPES_OUT, one
line each. How many distinct token counts an eval made: `cut -d' ' -f1 SHAPES_OUT | sort -u | wc -l`
(docs/memory.md, "The local suite")."""

import os

if os.environ.get("SHAPES_OUT"):
    import torch.nn.functional as F

    _seen: set[tuple[int, int, int]] = set()
    _linear = F.linear
    _out = open(os.environ["SHAPES_OUT"], "a", buffering=1)  # noqa: SIM115 (open for the process's life)

    def _recording_linear(x, weight, bias=None):
        key = (x.numel() // x.shape[-1], weight.shape[1], weight.shape[0])
        if key not in _seen:
            _seen.add(key)
            _out.write(" ".join(map(str, key)) + "\n")
        return _linear(x, weight, bias)

    F.linear = _recording_linear
