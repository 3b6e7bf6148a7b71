"""`harness eval NAME --base-url URL`: one question eval against a server that is already up, printed in the
result schema (`--backend lm-eval` runs it through lm-eval). The evals offered are the registry's."""

from __future__ import annotations

import argparse
import os

from harness.commands.base import Command, finite_float, print_json
from harness.evals.registry import EVALS


def arguments(parser: argparse.ArgumentParser) -> None:
    # The registered names, known without importing an eval (one that runs only inside a suite is refused at run).
    parser.add_argument("eval", choices=tuple(EVALS))
    parser.add_argument("--base-url", required=True, help="e.g. http://127.0.0.1:30000")
    # Checked by the eval's own parser, which names the nearest protocol of that eval.
    parser.add_argument("--protocol", help="the eval's protocol (default: its own; docs/evals.md lists them, and a "
                        "wrong one is answered with the eval's protocols)")
    parser.add_argument("--questions", type=int, help="number of questions (default: all)")
    parser.add_argument("--shots", type=int)
    parser.add_argument("--max-tokens", type=int)
    parser.add_argument("--temperature", type=finite_float)
    parser.add_argument("--repeats", type=int, help="gpqa: repeats with reshuffled choices")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--chat-template-kwargs", help='JSON, e.g. \'{"thinking": true}\'')
    parser.add_argument("--data", help="gpqa: a local CSV or zip")
    parser.add_argument("--eos-string", help="gsm8k lm-eval: the served tokenizer's EOS string, which lm-eval "
                        "appends to the stop list (default: asked of the server)")
    parser.add_argument("--strip-reasoning", action="store_true",
                        help="gpqa: remove <think>...</think> before extracting (not the upstreams' scoring)")
    parser.add_argument("--model", help="the model name to send (default: the server's first /v1/models id)")
    parser.add_argument("--backend", choices=("harness", "lm-eval"), default="harness",
                        help="lm-eval runs the same eval through lm_eval.simple_evaluate (optional extra)")
    parser.add_argument("--api-key", default=os.environ.get("HARNESS_API_KEY"),
                        help="sent as 'Authorization: Bearer K' (default: $HARNESS_API_KEY)")
    parser.add_argument("--json", action="store_true", help="print the result in the result schema")


def eval_config_from_args(args: argparse.Namespace):
    """An EvalConfig from `harness eval` flags, through the eval's own strict parser (the suite's)."""
    import json

    from harness.errors import ConfigError
    from harness.evals.registry import question_evals
    from harness.strict import Where

    evaluation = EVALS[args.eval]
    if evaluation.prepare is None:
        raise ConfigError(f"{args.eval}: runs only inside a suite's cell; harness eval runs "
                          f"{', '.join(question_evals())}")
    given = {"protocol": args.protocol or evaluation.default_protocol,
             "questions": args.questions, "shots": args.shots, "max_tokens": args.max_tokens,
             "temperature": args.temperature, "repeats": args.repeats, "seed": args.seed,
             "concurrency": args.concurrency, "data": args.data, "eos_string": args.eos_string,
             "strip_reasoning": args.strip_reasoning or None}
    if args.chat_template_kwargs:
        try:
            given["chat_template_kwargs"] = json.loads(args.chat_template_kwargs)
        except json.JSONDecodeError as error:
            raise ConfigError(f"--chat-template-kwargs: not JSON: {error}") from None
    return evaluation.parse({k: v for k, v in given.items() if v is not None}, Where("command line"))


def run(args: argparse.Namespace) -> int:
    import sys

    from harness.errors import EXIT_INFRA, EXIT_OK
    from harness.evals.base import EvalInfraError
    from harness.evals.registry import run_eval
    from harness.evals.runner import served_model
    from harness.results import CellResult, cell_result_to_dict
    from harness.transport import set_api_key

    config = eval_config_from_args(args)
    base_url = args.base_url.rstrip("/")
    set_api_key(base_url, args.api_key)
    model = args.model or served_model(base_url, "default")
    try:
        if args.backend == "lm-eval":
            from harness.evals.lmeval_backend import run_lm_eval

            result = run_lm_eval(config, base_url, model=model)
        else:
            result = run_eval(config, base_url, model=model)
    except EvalInfraError as problem:
        print(f"harness: error: {problem}", file=sys.stderr)
        return EXIT_INFRA
    if args.json:
        body = cell_result_to_dict(CellResult(cell_id="adhoc", suite="adhoc", status="ok", cell={},
                                              evals={config.name: result}))
        print_json(body["evals"][config.name])
    else:
        accuracy = result.metrics["accuracy"]
        print(f"{config.name} ({config.protocol}): accuracy {accuracy.value:.4f} +/- {accuracy.stderr or 0:.4f} "
              f"over {accuracy.n} questions; invalid {result.metrics['invalid_rate'].value:.4f}; "
              f"{result.request_errors} failed requests; {result.timings.get('questions_per_s', 0)} q/s")
    return EXIT_OK


COMMAND = Command("eval", "run one eval against a server that is already up", arguments, run)
