"""The real-SGLang rig: tiny random-weight checkpoints in the architectures the guarded fixes touch.

`python -m harness.rig build OUT` makes them on a CPU (amd-quark for the Quark exports),
`python -m harness.rig pack OUT PACK` stores them deduplicated and compressed small enough to travel to a
GPU machine with the SGLang bundle, `python -m harness.rig unpack PACK OUT` restores them there. They are
addressed as `local:<model>/<variant>` (harness.local.models) and served by benchmarks/gpu_sglang_run.sh.
"""
