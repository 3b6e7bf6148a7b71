"""Evals: GSM8K and GPQA with the exact protocols the baselines were measured with.

Prompt building and scoring are pure (harness.evals.gsm8k, harness.evals.gpqa); requests go
through harness.transport; harness.evals.runner ties them together for one server.
"""
