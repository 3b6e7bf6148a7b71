"""A corpus of hard completions for the scorers: number formats, boxed answers, no answer, text after the
answer, reasoning tags, multiple answer lines, very long and degenerate outputs. Every protocol's scorer is
checked against its upstream's on every one of them (tests/test_eval_upstreams.py; the upstream answers
are recorded by tools/eval_reference.py). Built by code, deterministically: its SHA-256 is in the goldens.
"""

from __future__ import annotations

import hashlib
import itertools
import json

# Answer spellings: numbers the GSM8K scorers read, letters the GPQA scorers read.
NUMBERS = ("42", "-42", "1,234", "1,234.", "3.50", "$18", "$1,000.00", "0", "007", "12.0", "1e5", "1/2",
           "\\boxed{18}", "$\\boxed{1{,}000}$", "\\boxed{\\frac{1}{2}}", "**72**", "72 apples", "٣", "４２",
           "-0", "10.", "2,500,000", "1 000")
LETTERS = ("A", "b", "$C$", "**D**", "(B)", "\\boxed{C}", "C.", "D)", "E", "AB", " $\\boxed{B}$", "\tD")
# How a completion presents its answer.
NUMBER_FRAMES = ("#### {x}", "####{x}", "The answer is {x}.", "The final answer is {x}", "{x}",
                 "#### {x}\n\nQuestion: what next? #### 5", "Answer: {x}\nBut wait, 7 more.",
                 "<think>#### 9</think>\n#### {x}", "<think>so #### {x}</think>", "#### {x}\n#### 11",
                 "Step 1: 3 + 4 = 7.\nStep 2: 7 * 6 = {x}.\n", "\\boxed{{{x}}}")
LETTER_FRAMES = ("Answer: {x}", "answer: {x}", "Answer:\n{x}", "Answer : {x}", "ANSWER:\t{x}", "**Answer:** {x}",
                 "Answer:{x}", "Final Answer: {x}", "The answer is {x}", "<think>Answer: A</think>\nAnswer: {x}",
                 "<think>Answer: {x}</think>", "<think>unclosed Answer: {x}", "Answer: {x}\nAnswer: A",
                 "Reasoning...\nAnswer: {x}\nI am confident.", "Answer: \n\n{x}")
# Whole completions no frame produces.
SPECIAL = (
    "", " ", "\n\n", "I do not know.", "No answer.",
    "1" * 4301, "9" * 4300, "The sum is " + "1" * 5000 + ".", "#### " + "2" * 4400,
    "A" * 5000 + "\nAnswer: C", "Answer: " + "B" * 3000, ("blah " * 4000) + "#### 17",
    "#### 12 #### 13 #### 14", "Answer: A Answer: B", "answer:a", "Answer: \\(\\boxed{D}\\)",
    "</think>Answer: D", "</think>#### 3", "<think></think><think>Answer: B</think>Answer: C",
    "The answer is 5\nThe answer is 6", "####\n42", "#### -", "#### .", "#### ,", "#### $",
    "Answer: $\\text{C}$", "Answer: \\textbf{A}", "Antwort: B", "ANSWER: d", "Answer:  D  ",
    "Question: 1+1?\nAnswer: 2", "x" * 20000, "3" * 100 + "." + "3" * 100, "#### 1,2,3", "#### 1.2.3",
)


def completions() -> list[str]:
    """The corpus, in a fixed order (no duplicates)."""
    built = [frame.format(x=x) for frame, x in itertools.product(NUMBER_FRAMES, NUMBERS)]
    built += [frame.format(x=x) for frame, x in itertools.product(LETTER_FRAMES, LETTERS)]
    built += list(SPECIAL)
    return list(dict.fromkeys(built))


def digest(texts: list[str]) -> str:
    return hashlib.sha256(json.dumps(texts).encode()).hexdigest()


# GSM8K labels the corpus is scored against (an answer row's text, as the upstreams read their labels).
GSM8K_ANSWERS = ("Some work.\n#### 42", "Work.\n#### 1,234", "#### 18", "#### -42", "#### 1000", "#### 72")
