"""The embedded default: a tiny MoE model trained by the project, its Quark MXFP4/FP8 exports, and
the synthetic GSM8K-format data it is evaluated on, so `harness run --suite local` runs for real on
any machine (CPU, or one GPU) with no download.
"""
