"""Answer extraction that more than one eval applies to a response: one home, so that two evals that say they
strip a reasoning model's thinking strip the same text."""

from __future__ import annotations

import re

# A reasoning model's thinking: `<think>...</think>`, or everything up to a `</think>` whose opening tag the
# chat template put in the prompt.
REASONING = re.compile(r"(?s)<think>.*?</think>|^.*?</think>")


def strip_reasoning(text: str) -> str:
    """The response without its thinking (GSM8K's chat protocol; GPQA's `strip_reasoning: true`)."""
    return REASONING.sub("", text).strip()
