"""Train the tiny model of the local suite: `python -m harness.local.train [--out models/tiny-qwen3]`.

A dense Qwen3 (transformers' Qwen3ForCausalLM, 2 layers, hidden 128) with a character-level tokenizer
built here, trained on synthetic GSM8K-format problems (harness.local.problems). Deterministic: a
fixed seed, CPU. Every dimension the quantizers touch is a multiple of 32, the MXFP4 group size. The
committed weights under models/tiny-qwen3/ are this script's output.

Why dense and not MoE: amd-quark 0.13 does export a tiny Qwen3-MoE to MXFP4 (after splitting the fused
experts, see harness.local.export), but transformers 5 loads Qwen3-MoE experts only as fused 3-D
parameters and cannot map Quark's per-expert packed uint8 tensors back into them (a size-mismatch
report at load), so `transformers serve`, the local engine, cannot serve a quantized MoE. `--moe`
builds the MoE model: models/tiny-qwen3-moe/ is `--moe --steps 800` (4 experts, top 2), served by vLLM's
CPU build in the local-numerics suite.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

CHARS = sorted(set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,?!:+-=#\n$"))
SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>"]
SEED = 1234


def build_tokenizer(out: Path):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(SPECIALS + CHARS)}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("[\\s\\S]"), behavior="isolated")
    core.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<bos>", eos_token="<eos>",
                                        pad_token="<pad>", unk_token="<unk>", model_max_length=512)
    tokenizer.save_pretrained(out)
    return tokenizer


def model_config(vocab_size: int, tokenizer, *, moe: bool = False):
    from transformers import Qwen3Config, Qwen3MoeConfig

    common = dict(
        vocab_size=vocab_size, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=32, max_position_embeddings=512,
        rope_theta=10000.0, tie_word_embeddings=False, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    if moe:
        return Qwen3MoeConfig(**common, moe_intermediate_size=128, num_experts=4, num_experts_per_tok=2,
                              decoder_sparse_step=1, norm_topk_prob=True)
    return Qwen3Config(**common)


def build_model(tokenizer, *, moe: bool = False):
    from transformers import Qwen3ForCausalLM, Qwen3MoeForCausalLM

    config = model_config(len(tokenizer), tokenizer, moe=moe)
    return (Qwen3MoeForCausalLM if moe else Qwen3ForCausalLM)(config)


def encode(tokenizer, row: dict[str, str]) -> tuple[list[int], int]:
    """Tokens of one training text and where the answer starts (the loss covers the answer only)."""
    prompt = "Question: " + row["question"] + "\nAnswer:"
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(" " + row["answer"], add_special_tokens=False)["input_ids"]
    return [tokenizer.bos_token_id] + prompt_ids + answer_ids + [tokenizer.eos_token_id], len(prompt_ids) + 1


def batches(tokenizer, rows, batch_size: int, generator):
    import torch

    encoded = [encode(tokenizer, row) for row in rows]
    while True:
        order = torch.randperm(len(encoded), generator=generator).tolist()
        for start in range(0, len(order) - batch_size + 1, batch_size):
            chunk = [encoded[i] for i in order[start:start + batch_size]]
            width = max(len(ids) for ids, _ in chunk)
            ids = torch.full((batch_size, width), tokenizer.pad_token_id)
            labels = torch.full((batch_size, width), -100)
            for row, (tokens, answer_start) in enumerate(chunk):
                ids[row, :len(tokens)] = torch.tensor(tokens)
                labels[row, answer_start:len(tokens)] = torch.tensor(tokens[answer_start:])
            yield ids, labels


def train(out: Path, steps: int, batch_size: int, learning_rate: float, *, moe: bool = False) -> dict:
    import torch

    from harness.local import problems

    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(out)
    model = build_model(tokenizer, moe=moe).float()
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=learning_rate, total_steps=steps, pct_start=0.05)
    stream = batches(tokenizer, problems.train_rows(), batch_size, torch.Generator().manual_seed(SEED))
    start, losses = time.time(), []
    model.train()
    for step in range(1, steps + 1):
        ids, labels = next(stream)
        loss = model(input_ids=ids, attention_mask=(ids != tokenizer.pad_token_id), labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if step % 100 == 0 or step == steps:
            print(f"step {step}/{steps} loss {sum(losses[-100:]) / len(losses[-100:]):.4f} "
                  f"({time.time() - start:.0f} s)", flush=True)
    model = model.to(torch.bfloat16)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    return {"steps": steps, "batch_size": batch_size, "final_loss": round(sum(losses[-100:]) / 100, 4),
            "train_seconds": round(time.time() - start, 1)}


def held_out_accuracy(path: Path, count: int) -> float:
    """Greedy accuracy on the held-out synthetic set, scored with GSM8K's SGLang rule (in process)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness.evals import gsm8k
    from harness.local import problems

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16).eval()
    correct = 0
    for row in problems.held_out_rows(count):
        prompt = "Question: " + row["question"] + "\nAnswer:"
        ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            output = model.generate(ids, max_new_tokens=24, do_sample=False, eos_token_id=tokenizer.eos_token_id,
                                    pad_token_id=tokenizer.pad_token_id)
        text = tokenizer.decode(output[0, ids.shape[1]:], skip_special_tokens=True)
        correct += gsm8k.sglang_answer_value(str(text)) == gsm8k.sglang_answer_value(row["answer"])
    return correct / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("models/tiny-qwen3"))
    parser.add_argument("--steps", type=int, default=2500)
    parser.add_argument("--moe", action="store_true", help="the Qwen3-MoE variant (export tests only)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--eval-questions", type=int, default=300)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(2)
    summary = train(args.out, args.steps, args.batch_size, args.lr, moe=args.moe)
    summary["held_out_accuracy_bf16"] = round(held_out_accuracy(args.out, args.eval_questions), 4)
    summary["eval_questions"] = args.eval_questions
    (args.out / "training.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
