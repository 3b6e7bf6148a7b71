"""Evals: one module per eval (gsm8k, gpqa, numerics), each exposing `EVAL` (harness.evals.base), listed by
harness.evals.registry. Prompt building and scoring are pure; requests go through harness.transport;
harness.evals.runner holds what the question evals share.
"""
