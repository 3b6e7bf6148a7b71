"""Train the tiny model's EAGLE3 draft: `python -m harness.local.eagle3 [--out models/tiny-qwen3-eagle3]`.

The draft is what SGLang 0.5.17 loads as `LlamaForCausalLMEagle3` (sglang/srt/models/llama_eagle3.py): one
decoder layer whose attention reads [input_layernorm(embed), hidden_norm(fc(aux))] (2 x hidden wide), its own
final norm and lm_head; the token embedding is the target's (the EAGLE3 worker calls `set_embed` with it, so the
checkpoint carries none). This module re-implements that forward in pure torch (neox RoPE, RMSNorm in float32,
SiLU MLP, the fused residual adds of SGLang's RMSNorm) and trains it on the target's own greedy continuations.

What SGLang feeds the draft (read in its 0.5.17 code, see docs/eagle3-draft.md):
- the target captures aux hidden states *before* layer `id + 1` (qwen2.py: `layers_to_capture = [id + 1]`,
  captured as `hidden_states + residual`, in layer order). With two target layers the only two capture points
  are id -1 (the embedding output, before layer 0) and id 0 (the residual stream after layer 0): the draft's
  `eagle_aux_hidden_state_layer_ids` are [-1, 0] and its fc reads their concatenation, [embed, layer 0 out];
- draft extend shifts the input ids by one (eagle_worker_v2.py `_draft_extend_for_prefill`): at position t the
  draft gets the target's aux states at t and the embedding of token t+1, and predicts token t+2;
- each further draft step (topk 1) feeds the draft its own pre-norm hidden state (hidden + residual, width
  `hidden`, so fc is skipped) and its own last token, one position further, attending to the draft KV cache
  of the committed positions (built from target states) and to its own earlier chain entries.
Training uses exactly that chain ("training-time test", `--ttt-steps`), with the target's tokens as inputs.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

AUX_LAYER_IDS = [-1, 0]
SEED = 4321
MAX_NEW_TOKENS = 24  # the suite's gsm8k max_tokens
EVAL_QUESTIONS = 200  # the suite's tiny-qwen3 gsm8k questions
LAYER = "midlayer"  # the layer prefix of EAGLE3 checkpoints; llama_eagle3.load_weights maps it to layers.0


@dataclass(frozen=True)
class Shape:
    hidden: int = 128
    heads: int = 4
    kv_heads: int = 2
    head_dim: int = 32
    intermediate: int = 256
    vocab: int = 78
    aux: int = len(AUX_LAYER_IDS)
    eps: float = 1e-6
    rope_theta: float = 10000.0


def tensor_shapes(shape: Shape) -> dict[str, tuple[int, ...]]:
    """The checkpoint's tensors, named as EAGLE3 checkpoints name them."""
    h, q, kv = shape.hidden, shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim
    return {
        "fc.weight": (h, h * shape.aux),
        f"{LAYER}.input_layernorm.weight": (h,),
        f"{LAYER}.hidden_norm.weight": (h,),
        f"{LAYER}.self_attn.q_proj.weight": (q, 2 * h),
        f"{LAYER}.self_attn.k_proj.weight": (kv, 2 * h),
        f"{LAYER}.self_attn.v_proj.weight": (kv, 2 * h),
        f"{LAYER}.self_attn.o_proj.weight": (h, q),
        f"{LAYER}.post_attention_layernorm.weight": (h,),
        f"{LAYER}.mlp.gate_proj.weight": (shape.intermediate, h),
        f"{LAYER}.mlp.up_proj.weight": (shape.intermediate, h),
        f"{LAYER}.mlp.down_proj.weight": (h, shape.intermediate),
        "norm.weight": (h,),
        "lm_head.weight": (shape.vocab, h),
    }


def draft_config(shape: Shape, target: dict) -> dict:
    """config.json: the keys LlamaForCausalLMEagle3 and SGLang's EAGLE3 worker read."""
    return {
        "architectures": ["LlamaForCausalLMEagle3"],
        "model_type": "llama",
        "hidden_size": shape.hidden,
        "intermediate_size": shape.intermediate,
        "num_attention_heads": shape.heads,
        "num_key_value_heads": shape.kv_heads,
        "head_dim": shape.head_dim,
        "num_hidden_layers": 1,
        "hidden_act": "silu",
        "rms_norm_eps": shape.eps,
        "vocab_size": shape.vocab,
        "draft_vocab_size": shape.vocab,
        "max_position_embeddings": target["max_position_embeddings"],
        "rope_parameters": {"rope_theta": shape.rope_theta, "rope_type": "default"},
        "tie_word_embeddings": False,
        "attention_bias": False,
        "bos_token_id": target["bos_token_id"],
        "eos_token_id": target["eos_token_id"],
        "pad_token_id": target["pad_token_id"],
        "dtype": "bfloat16",
        "eagle_config": {"eagle_aux_hidden_state_layer_ids": list(AUX_LAYER_IDS), "use_aux_hidden_state": True},
    }


# --- the draft's forward, as SGLang computes it ----------------------------------------------------------

def rms_norm(x, weight, eps: float):
    import torch

    variance = x.float().pow(2).mean(-1, keepdim=True)
    return (x.float() * torch.rsqrt(variance + eps)) * weight


def rope(x, positions, theta: float):
    """Neox-style rotary embedding (SGLang's get_rope default for llama): halves rotated, not pairs."""
    import torch

    dim = x.shape[-1]
    inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    angles = positions.float()[..., None] * inv_freq  # [..., T, dim/2]
    cos, sin = torch.cat([angles.cos()] * 2, -1), torch.cat([angles.sin()] * 2, -1)
    first, second = x[..., : dim // 2], x[..., dim // 2:]
    return x * cos + torch.cat([-second, first], -1) * sin


class Draft:
    """The draft's parameters (float32, trainable) and its forward pieces."""

    def __init__(self, shape: Shape, embed, seed: int = SEED):
        import torch

        generator = torch.Generator().manual_seed(seed)
        self.shape, self.embed = shape, embed
        self.params = {}
        for name, dims in tensor_shapes(shape).items():
            if len(dims) == 1:
                value = torch.ones(dims)
            else:
                value = torch.randn(dims, generator=generator) / math.sqrt(dims[1])
            self.params[name] = value.requires_grad_(True)

    def p(self, name: str):
        return self.params[f"{LAYER}.{name}"]

    def qkv(self, tokens, hidden, positions):
        """Attention inputs of one draft step: (q, k, v) [B, heads, T, D] and the residual. `hidden` is the
        target's aux states (width aux x hidden: fc applies) or the draft's own output (width hidden)."""
        s = self.shape
        if hidden.shape[-1] != s.hidden:
            hidden = hidden @ self.params["fc.weight"].T
        residual = hidden
        x = torch_cat([rms_norm(self.embed[tokens], self.p("input_layernorm.weight"), s.eps),
                       rms_norm(hidden, self.p("hidden_norm.weight"), s.eps)])
        batch, length = tokens.shape

        def heads(weight, count):
            return (x @ weight.T).view(batch, length, count, s.head_dim).transpose(1, 2)

        q = rope(heads(self.p("self_attn.q_proj.weight"), s.heads), positions[:, None], s.rope_theta)
        k = rope(heads(self.p("self_attn.k_proj.weight"), s.kv_heads), positions[:, None], s.rope_theta)
        v = heads(self.p("self_attn.v_proj.weight"), s.kv_heads)
        group = s.heads // s.kv_heads  # query head h reads kv head h // group
        return q, k.repeat_interleave(group, 1), v.repeat_interleave(group, 1), residual

    def finish(self, attended, residual):
        """o_proj, the fused residual adds, MLP, final norm: (logits, the pre-norm hidden the next step gets)."""
        import torch

        s = self.shape
        batch, _, length, _ = attended.shape
        out = attended.transpose(1, 2).reshape(batch, length, -1) @ self.p("self_attn.o_proj.weight").T
        residual = out + residual
        x = rms_norm(residual, self.p("post_attention_layernorm.weight"), s.eps)
        x = torch.nn.functional.silu(x @ self.p("mlp.gate_proj.weight").T) * (x @ self.p("mlp.up_proj.weight").T)
        residual = x @ self.p("mlp.down_proj.weight").T + residual
        logits = rms_norm(residual, self.params["norm.weight"], s.eps) @ self.params["lm_head.weight"].T
        return logits, residual


def torch_cat(parts):
    import torch

    return torch.cat(parts, -1)


def chain(draft: Draft, tokens, aux, steps: int, start: int = 0):
    """The draft's logits for `steps` chained steps at the anchors of a batch [B, T] (a generator, one step each).

    Step 0 at every anchor t: aux state t, token t+1, position t, causal over the step 0 of anchors <= t (the
    draft extend); its logits are [B, T, V]. Step k >= 1 at anchors t >= `start`: see `later_steps`."""
    logits, hidden, k0, v0 = first_step(draft, tokens, aux)
    yield logits
    yield from later_steps(draft, tokens, hidden[:, start:], k0, v0, steps, start)


def first_step(draft: Draft, tokens, aux):
    """Step 0 (the draft extend) at every anchor: logits, the hidden the next step gets, keys and values."""
    import torch

    batch, length = aux.shape[:2]
    q0, k0, v0, residual = draft.qkv(tokens[:, 1:length + 1], aux, torch.arange(length).expand(batch, length))
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    scores = (q0 @ k0.transpose(-1, -2)) / math.sqrt(draft.shape.head_dim)
    attended = torch.softmax(scores.masked_fill(~causal, float("-inf")), -1) @ v0
    logits, hidden = draft.finish(attended, residual)
    return logits, hidden, k0, v0


def later_steps(draft: Draft, tokens, hidden, k0, v0, steps: int, start: int):
    """Steps 1..steps-1 at anchors t >= `start` (a generator): step k gets its own step k-1 output (`hidden`,
    from `start` on), token t+1+k, position t+k, and attends to step 0 of anchors <= t (`k0`, `v0`: the draft
    KV cache of the committed positions) and to its own steps 1..k at anchor t (the draft decode chain). Step k
    predicts token t+2+k. `tokens` must extend `steps` + 1 beyond the anchors; it is read when each step runs, so
    a caller may write a step's input (its own draft token) between steps."""
    import torch

    batch, _, length, _ = k0.shape
    positions = torch.arange(start, length).expand(batch, length - start)
    causal = torch.ones(length, length, dtype=torch.bool).tril()[start:]
    scale = 1.0 / math.sqrt(draft.shape.head_dim)
    keys, values = [], []
    for k in range(1, steps):
        q, kk, vv, residual = draft.qkv(tokens[:, start + 1 + k:length + 1 + k], hidden, positions + k)
        keys.append(kk)
        values.append(vv)
        past = ((q @ k0.transpose(-1, -2)) * scale).masked_fill(~causal, float("-inf"))
        own = torch.stack([(q * key).sum(-1) * scale for key in keys], -1)  # [B, H, T - start, k]
        weights = torch.softmax(torch.cat([past, own], -1), -1)
        attended = weights[..., :length] @ v0 + sum(weights[..., length + j, None] * values[j] for j in range(k))
        logits, hidden = draft.finish(attended, residual)
        yield logits


# --- the target's side ----------------------------------------------------------------------------------

def load_target(path: Path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16).float().eval()
    return model, AutoTokenizer.from_pretrained(path)


def prompt_ids(tokenizer, row: dict[str, str]) -> list[int]:
    """The eval's prompt (gsm8k sglang-fewshot, 0 shots) as SGLang tokenizes it (this tokenizer adds no BOS)."""
    from harness.evals import gsm8k

    return tokenizer(gsm8k.sglang_example(row, False))["input_ids"]


def greedy(model, tokenizer, prompts: list[list[int]], guesses: list[list[int]]) -> list[list[int]]:
    """The target's greedy continuations (up to MAX_NEW_TOKENS, through EOS). A guess (the reference answer) is
    checked in one teacher-forced forward: under causal attention it is the greedy continuation exactly when
    every next token is the argmax. Rows whose guess fails are generated token by token."""
    import torch

    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    sequences = [p + g[:MAX_NEW_TOKENS] for p, g in zip(prompts, guesses)]
    _, ids, lengths = pad_rows(sequences, pad)
    out: list[list[int]] = []
    with torch.no_grad():
        for first in range(0, len(prompts), 256):
            argmax = model(input_ids=ids[first:first + 256]).logits.argmax(-1)
            for row in range(argmax.shape[0]):
                index = first + row
                n, end = len(prompts[index]), int(lengths[index])
                guess = sequences[index][n:]
                predicted = argmax[row, n - 1:end - 1].tolist()
                ok = predicted == guess and (guess[-1] == eos or len(guess) == MAX_NEW_TOKENS)
                out.append(guess if ok else generate(model, prompts[index], eos, pad))
    return out


def generate(model, prompt: list[int], eos: int, pad: int) -> list[int]:
    import torch

    with torch.no_grad():
        ids = torch.tensor([prompt])
        generated = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=MAX_NEW_TOKENS,
                                   do_sample=False, eos_token_id=eos, pad_token_id=pad)
    tokens = generated[0, len(prompt):].tolist()
    return tokens[:tokens.index(eos) + 1] if eos in tokens else tokens


def pad_rows(sequences: list[list[int]], pad: int):
    import torch

    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad)
    for row, s in enumerate(sequences):
        ids[row, :len(s)] = torch.tensor(s)
    return width, ids, torch.tensor([len(s) for s in sequences])


def aux_states(model, sequences: list[list[int]], pad: int):
    """The target's aux states [B, T, aux x hidden] at every position (the embedding and the residual stream
    after layer 0, i.e. HF hidden_states[0] and [1]), the padded ids and the lengths."""
    import torch

    _, ids, lengths = pad_rows(sequences, pad)
    parts = []
    with torch.no_grad():
        for first in range(0, ids.shape[0], 256):
            states = model(input_ids=ids[first:first + 256], output_hidden_states=True).hidden_states
            parts.append(torch.cat([states[i + 1] for i in AUX_LAYER_IDS], -1))
    aux = torch.cat(parts)
    # SGLang serves the target in BF16: its aux states are BF16 values.
    return aux.to(torch.bfloat16).float(), ids, lengths


# --- data, training, offline accept length ----------------------------------------------------------------

def dataset(model, tokenizer, rows):
    """(aux, ids, lengths, prompt lengths) of the target's greedy continuations of the rows' prompts."""
    import torch

    prompts = [prompt_ids(tokenizer, row) for row in rows]
    completions = greedy(model, tokenizer, prompts, [reference(tokenizer, row) for row in rows])
    aux, ids, lengths = aux_states(model, [p + c for p, c in zip(prompts, completions)], tokenizer.pad_token_id)
    return aux, ids, lengths, torch.tensor([len(p) for p in prompts])


def reference(tokenizer, row: dict[str, str]) -> list[int]:
    """The row's answer as the target was trained to write it (harness.local.train.encode), through EOS."""
    return tokenizer(" " + row["answer"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]


def chain_loss(draft: Draft, aux, ids, lengths, prompt_lengths, steps: int):
    """Cross-entropy of every chain step on the continuation's tokens (the only ones a verify accepts)."""
    import torch

    batch, length = ids.shape
    padded = torch.cat([ids, torch.zeros(batch, steps + 2, dtype=ids.dtype)], 1)
    start = max(int(prompt_lengths.min()) - 2, 0)  # later steps only where they can predict an answer token
    total: float | torch.Tensor = 0.0  # a tensor from the first step on, so that backward reaches every step
    per_step = []
    for k, logits in enumerate(chain(draft, padded, aux, steps, start)):
        first = 0 if k == 0 else start
        target_index = torch.arange(first, length) + 2 + k
        labels = padded[:, first + 2 + k:length + 2 + k]
        mask = (target_index[None] < lengths[:, None]) & (target_index[None] >= prompt_lengths[:, None])
        loss = torch.nn.functional.cross_entropy(logits[mask], labels[mask])
        per_step.append(loss.item())
        total = total + loss
    return total / steps, per_step


def train(draft: Draft, data, *, steps: int, batch_size: int, lr: float, ttt_steps: int, log=print) -> dict:
    import torch

    aux, ids, lengths, prompt_lengths = data
    params = list(draft.params.values())
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.05 if steps >= 40 else 0.5)
    generator = torch.Generator().manual_seed(SEED)
    start, recent = time.time(), []
    for step in range(1, steps + 1):
        rows = torch.randint(0, ids.shape[0], (batch_size,), generator=generator)
        width = int(lengths[rows].max())
        loss, per_step = chain_loss(draft, aux[rows, :width], ids[rows, :width], lengths[rows],
                                    prompt_lengths[rows], ttt_steps)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        recent.append(per_step)
        if step % 100 == 0 or step == steps:
            means = [round(sum(r[k] for r in recent) / len(recent), 4) for k in range(ttt_steps)]
            log(f"step {step}/{steps} loss per chain step {means} ({time.time() - start:.0f} s)")
            last, recent = means, []
    return {"steps": steps, "batch_size": batch_size, "lr": lr, "ttt_steps": ttt_steps,
            "final_loss_per_chain_step": last, "train_seconds": round(time.time() - start, 1)}


def accept_lengths(draft: Draft, data, num_steps: int) -> dict:
    """SGLang's EAGLE3 with topk 1 replayed offline: each verify proposes `num_steps` chained draft tokens after
    the target's last token and accepts the longest prefix equal to the target's greedy tokens, plus the target's
    own next token. The target is deterministic, so its greedy continuation is known ahead, and step 0 over the
    whole sequence equals the incremental draft extends (causal). Returns the mean accept length per verify
    (accepted drafts + 1)."""
    import torch

    aux, ids, lengths, prompt_lengths = data
    accepted: list[int] = []
    padded = torch.cat([ids, torch.full((ids.shape[0], num_steps + 2), -1)], 1)
    with torch.no_grad():
        first = [first_step(draft, padded[i:i + 64].clamp(min=0), aux[i:i + 64]) for i in range(0, len(ids), 64)]
        for row in range(ids.shape[0]):
            n, end = int(prompt_lengths[row]), int(lengths[row])
            sequence = torch.cat([ids[row:row + 1, :end], torch.full((1, num_steps + 2), -1)], 1)
            logits, hidden, k0, v0 = (part[row % 64:row % 64 + 1] for part in first[row // 64])
            committed = n  # positions with target states; token `committed` is the target's next one
            while committed < end:
                t = committed - 1
                proposal = propose(draft, logits[0, t], hidden[:, t:t + 1], k0[:, :, :t + 1], v0[:, :, :t + 1],
                                   sequence[:, :t + 2], num_steps)
                truth = sequence[0, t + 2:t + 2 + num_steps].tolist()
                count = 0
                while count < num_steps and proposal[count] == truth[count]:
                    count += 1
                accepted.append(count + 1)
                committed += count + 1
    return {"accept_length": round(sum(accepted) / len(accepted), 4), "verifies": len(accepted),
            "questions": int(ids.shape[0]), "num_steps": num_steps, "eagle_topk": 1,
            "num_draft_tokens": num_steps + 1}


def propose(draft: Draft, logits, hidden, k0, v0, tokens, num_steps: int) -> list[int]:
    """The draft tokens of one verify at the last committed anchor t: step 0's token (from the draft extend's
    `logits`), then the decode chain, each step fed the draft's own previous token."""
    import torch

    t = k0.shape[2] - 1
    row = torch.cat([tokens, torch.zeros(1, num_steps, dtype=tokens.dtype)], 1)
    proposal = [int(logits.argmax())]
    row[0, t + 2] = proposal[0]
    for k, later in enumerate(later_steps(draft, row, hidden, k0, v0, num_steps, t), start=1):
        proposal.append(int(later[0, -1].argmax()))
        row[0, t + 2 + k] = proposal[-1]
    return proposal


# --- files --------------------------------------------------------------------------------------------------

def save(draft: Draft, out: Path, target_config: dict) -> None:
    import torch
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    tensors = {name: value.detach().to(torch.bfloat16).contiguous() for name, value in draft.params.items()}
    save_file(tensors, out / "model.safetensors", metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(draft_config(draft.shape, target_config), indent=2) + "\n")


def load(path: Path, embed) -> Draft:
    """A saved draft, its BF16 weights as float32 (what SGLang computes with, up to BF16 arithmetic)."""
    from safetensors.torch import load_file

    draft = Draft(Shape(), embed)
    for name, value in load_file(path / "model.safetensors").items():
        draft.params[name] = value.float()
    return draft


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", type=Path, default=Path("models/tiny-qwen3"))
    parser.add_argument("--out", type=Path, default=Path("models/tiny-qwen3-eagle3"))
    parser.add_argument("--prompts", type=int, default=4000, help="training prompts (harness.local.problems)")
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--ttt-steps", type=int, default=3, help="chained draft steps trained (training-time test)")
    parser.add_argument("--num-steps", type=int, nargs="+", default=[2, 3], help="offline accept length at these")
    args = parser.parse_args()
    import torch

    from harness.local import problems

    torch.set_num_threads(1)  # the ops are tiny: one thread is several times faster than two on a busy host
    torch.manual_seed(SEED)
    model, tokenizer = load_target(args.target)
    embed = model.get_input_embeddings().weight.detach()
    started = time.time()
    data = dataset(model, tokenizer, problems.train_rows(args.prompts))
    print(f"target continuations of {args.prompts} prompts ({time.time() - started:.0f} s)", flush=True)
    draft = Draft(Shape(), embed)
    summary = train(draft, data, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                    ttt_steps=args.ttt_steps, log=lambda line: print(line, flush=True))
    save(draft, args.out, json.loads((args.target / "config.json").read_text()))
    held_out = dataset(model, tokenizer, problems.held_out_rows(EVAL_QUESTIONS))
    saved = load(args.out, embed)
    summary["aux_layer_ids"] = AUX_LAYER_IDS
    summary["prompts"] = args.prompts
    summary["offline_accept_length"] = [accept_lengths(saved, held_out, n) for n in args.num_steps]
    swapped = swap_aux_order(saved)
    summary["offline_accept_length_aux_order_defect"] = [accept_lengths(swapped, held_out, n)
                                                         for n in args.num_steps]
    summary["eval"] = f"{problems.DATASET_NAME} held-out rows, the gsm8k sglang-fewshot prompt, 0 shots"
    summary["command"] = ("python -m harness.local.eagle3 " + " ".join(
        f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
        for k, v in vars(args).items()))
    (args.out / "training.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


def swap_aux_order(draft: Draft) -> Draft:
    """The aux-order defect in torch (the checkpoint's is made by harness.local.models): fc's input halves swapped."""
    import copy

    import torch

    other = copy.copy(draft)
    other.params = dict(draft.params)
    fc = draft.params["fc.weight"]
    other.params["fc.weight"] = torch.cat(fc.chunk(draft.shape.aux, 1)[::-1], 1)
    return other


if __name__ == "__main__":
    main()
