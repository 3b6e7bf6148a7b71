"""aiter.ops.flydsl.moe_common, reference: refused. SGLang 0.5.17 imports `GateMode` from it only for the
"situ" activation or a swiglu limit (moe/moe_runner/aiter.py:169-194: gpt-oss style MXFP4), which the
reference fused_moe does not implement."""


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    raise NotImplementedError(f"aiter reference kernels (harness): aiter.ops.flydsl.moe_common.{name} is not "
                              "implemented; only per_1x32 W4A4 MoE with SiLU is (docs/aiter-reference.md)")
