"""Evals: one module (or package) per eval (gsm8k, gpqa, aime, numerics), each exposing `EVAL` (the contract,
harness.evals.base), named by harness.evals.registry as "module:attr" and imported when asked for. Prompt
building and scoring are pure; requests go through harness.transport; harness.evals.runner holds what the
question evals share, harness.evals.answers the answer extraction more than one eval applies.
"""
