"""The MXFP4 / FP8 MoE loading stack's contracts, checked from checkpoint headers and configs."""
