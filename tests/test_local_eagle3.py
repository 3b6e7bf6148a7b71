"""The tiny model's trained EAGLE3 draft (harness.local.eagle3): what SGLang 0.5.17's llama_eagle3 loads, a
training step, the offline replay of the draft chain, and the derived aux-order defect."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
from safetensors.torch import load_file  # noqa: E402

from harness.local import eagle3, models  # noqa: E402
from tests.conftest import ROOT  # noqa: E402

DRAFT = ROOT / "models" / "tiny-qwen3-eagle3"
TARGET = ROOT / "models" / "tiny-qwen3"

# sglang/srt/models/llama_eagle3.py (0.5.17) LlamaForCausalLMEagle3.load_weights: legacy names, then the stacked
# q/k/v and gate/up shards, then "model." prefixed unless the name is already a parameter.
LEGACY = {"midlayer": "layers.0", "aux_norm_low": "fc_norm.0", "aux_norm_mid": "fc_norm.1",
          "aux_norm_high": "fc_norm.2"}
STACKED = [(".qkv_proj", ".q_proj", "q"), (".qkv_proj", ".k_proj", "k"), (".qkv_proj", ".v_proj", "v"),
           (".gate_up_proj", ".gate_proj", 0), (".gate_up_proj", ".up_proj", 1)]


def sglang_parameters(config: dict) -> dict[str, tuple[int, ...]]:
    """LlamaForCausalLMEagle3's parameters and shapes at TP 1, built from the draft's config as its __init__
    builds them (fc over len(eagle_aux_hidden_state_layer_ids) aux blocks, layer 0's qkv over 2 x hidden)."""
    h, heads, kv, d = (config["hidden_size"], config["num_attention_heads"], config["num_key_value_heads"],
                       config["head_dim"])
    aux = len(config["eagle_config"]["eagle_aux_hidden_state_layer_ids"])
    layer = "model.layers.0."
    return {
        "model.embed_tokens.weight": (config["vocab_size"], h),
        "model.fc.weight": (h, h * aux),
        layer + "self_attn.qkv_proj.weight": ((heads + 2 * kv) * d, 2 * h),
        layer + "self_attn.o_proj.weight": (h, heads * d),
        layer + "mlp.gate_up_proj.weight": (2 * config["intermediate_size"], h),
        layer + "mlp.down_proj.weight": (h, config["intermediate_size"]),
        layer + "input_layernorm.weight": (h,),
        layer + "post_attention_layernorm.weight": (h,),
        layer + "hidden_norm.weight": (h,),
        "model.norm.weight": (h,),
        "lm_head.weight": (config["draft_vocab_size"], h),
    }


def sglang_name(name: str, params: dict) -> tuple[str, object]:
    """Where load_weights puts a checkpoint tensor: (parameter, shard id or None)."""
    for legacy, new in LEGACY.items():
        name = name.replace(legacy, new)
    for param, weight, shard in STACKED:
        if weight in name:
            name = name.replace(weight, param)
            return (name if name in params else f"model.{name}"), shard
    return (name if name in params else f"model.{name}"), None


def test_the_draft_is_what_llama_eagle3_loads():
    config = json.loads((DRAFT / "config.json").read_text())
    target = json.loads((TARGET / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLMEagle3"] and config["num_hidden_layers"] == 1
    assert config["tie_word_embeddings"] is False and config["draft_vocab_size"] == target["vocab_size"]
    assert config["hidden_size"] == target["hidden_size"]  # else set_embed keeps no target embedding
    # The target captures before layer id + 1 (qwen2.py): every id must name a layer it runs.
    ids = config["eagle_config"]["eagle_aux_hidden_state_layer_ids"]
    assert sorted({i + 1 for i in ids}) == sorted(i + 1 for i in ids)
    assert all(0 <= i + 1 < target["num_hidden_layers"] for i in ids)
    params = sglang_parameters(config)
    filled: dict[str, list] = {}
    for name, tensor in load_file(DRAFT / "model.safetensors").items():
        assert tensor.dtype == torch.bfloat16, name
        param, shard = sglang_name(name, params)
        assert param in params, f"{name} -> {param}: no such parameter, load_weights drops it"
        filled.setdefault(param, []).append((shard, tuple(tensor.shape)))
    d = config["head_dim"]
    shards = {"q": config["num_attention_heads"] * d, "k": config["num_key_value_heads"] * d,
              "v": config["num_key_value_heads"] * d, 0: config["intermediate_size"], 1: config["intermediate_size"]}
    for param, pieces in filled.items():
        if pieces[0][0] is None:
            assert pieces == [(None, params[param])], param
        else:
            assert sum(shards[s] for s, _ in pieces) == params[param][0], param
            assert all(shape == (shards[s], params[param][1]) for s, shape in pieces), param
    # The embedding is the target's (eagle_worker_v2.init_lm_head -> set_embed): not in the checkpoint.
    assert set(params) - set(filled) == {"model.embed_tokens.weight"}
    assert eagle3.tensor_shapes(eagle3.Shape()) == {n: tuple(t.shape) for n, t in
                                                   load_file(DRAFT / "model.safetensors").items()}
    assert (DRAFT / "model.safetensors").stat().st_size < 2_000_000


def synthetic(batch: int = 3, length: int = 14, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    shape = eagle3.Shape()
    ids = torch.randint(3, shape.vocab, (batch, length), generator=generator)
    aux = torch.randn(batch, length, shape.hidden * shape.aux, generator=generator)
    return aux, ids, torch.tensor([length, length - 2, length - 1][:batch]), torch.tensor([5, 6, 4][:batch])


def test_a_training_step_runs_and_moves_the_loss():
    embed = torch.randn(eagle3.Shape().vocab, eagle3.Shape().hidden, generator=torch.Generator().manual_seed(1))
    draft = eagle3.Draft(eagle3.Shape(), embed)
    data = synthetic()
    before, _ = eagle3.chain_loss(draft, *data, steps=3)
    summary = eagle3.train(draft, data, steps=8, batch_size=3, lr=1e-2, ttt_steps=3, log=lambda _: None)
    after, per_step = eagle3.chain_loss(draft, *data, steps=3)
    assert len(per_step) == 3 and summary["steps"] == 8
    assert float(after.detach()) < float(before.detach())


def test_the_offline_chain_equals_the_training_chain():
    """propose (draft extend once, then one decode step at a time on the cached keys) gives the tokens the
    batched training chain gives when fed the same draft tokens."""
    embed = torch.randn(eagle3.Shape().vocab, eagle3.Shape().hidden, generator=torch.Generator().manual_seed(2))
    draft = eagle3.Draft(eagle3.Shape(), embed, seed=7)
    aux, ids, _, _ = synthetic()
    t, steps = 9, 3
    with torch.no_grad():
        logits, hidden, k0, v0 = eagle3.first_step(draft, ids[:1, :t + 2], aux[:1, :t + 1])
        proposal = eagle3.propose(draft, logits[0, t], hidden[:, t:t + 1], k0, v0, ids[:1, :t + 2], steps)
        row = torch.cat([ids[:1, :t + 2], torch.zeros(1, steps, dtype=ids.dtype)], 1)
        chained = []
        for k, step in enumerate(eagle3.chain(draft, row, aux[:1, :t + 1], steps)):
            chained.append(int(step[0, -1].argmax()))
            row[0, t + 2 + k] = chained[-1]
    assert proposal == chained


def test_the_aux_order_defect_reverses_fc_blocks_only(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path))
    path = models.ensure("local:tiny-qwen3-eagle3/aux-order-defect", log=lambda _: None)
    assert path.parent == tmp_path
    good, bad = load_file(DRAFT / "model.safetensors"), load_file(path / "model.safetensors")
    assert set(good) == set(bad)
    for name in good:
        if name == "fc.weight":
            assert torch.equal(bad[name], torch.cat(good[name].chunk(2, 1)[::-1], 1))
            assert not torch.equal(bad[name], good[name])
        else:
            assert torch.equal(bad[name], good[name]), name
    ids = json.loads((path / "config.json").read_text())["eagle_config"]["eagle_aux_hidden_state_layer_ids"]
    good_ids = json.loads((DRAFT / "config.json").read_text())["eagle_config"]["eagle_aux_hidden_state_layer_ids"]
    assert ids == good_ids[::-1]
    assert models.ensure("local:tiny-qwen3-eagle3/bf16") == DRAFT


def test_the_committed_draft_beats_its_defect_offline():
    """The committed draft's offline accept length on a few held-out questions, against its aux-order defect
    (the torch twin of the derived checkpoint)."""
    from harness.local import problems

    torch.set_num_threads(1)
    model, tokenizer = eagle3.load_target(TARGET)
    data = eagle3.dataset(model, tokenizer, problems.held_out_rows(12))
    draft = eagle3.load(DRAFT, model.get_input_embeddings().weight.detach())
    good = eagle3.accept_lengths(draft, data, 3)["accept_length"]
    bad = eagle3.accept_lengths(eagle3.swap_aux_order(draft), data, 3)["accept_length"]
    assert good > 2.0 and bad < good - 0.3


def test_the_trained_suite_serves_the_draft_and_gates_its_defect(tmp_path, monkeypatch):
    from harness.cellrun import materialize
    from harness.engines.sglang import SGLANG
    from harness.matrix import expand, select
    from harness.suite import find_suite, load_suite

    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path))
    cells = expand(load_suite(find_suite("gpu-sglang-eagle3-trained", ROOT / "suites")))
    served = select(cells, ["tiny-qwen3/bf16/eagle3/*"])[0]
    argv = list(SGLANG.command(materialize(served, create=False), python="python", port=1, devices=[0]).argv)
    assert argv[argv.index("--speculative-draft-model-path") + 1] == str(DRAFT)
    assert argv[argv.index("--speculative-algorithm") + 1] == "EAGLE3"
    canary = select(cells, ["tiny-qwen3-eagle3-aux-order-defect/*"])[0]
    assert canary.baseline_id == served.id
    assert materialize(canary, create=False).draft.path.startswith(str(tmp_path / "tiny-qwen3-eagle3-"))


def test_preflight_leaves_a_llama_eagle3_draft_to_llama_eagle3():
    """The MLA draft rule (kimi-k25-eagle3-mla) says nothing about a plain Llama EAGLE3 draft: a FAIL would keep
    the trained draft's cells from ever launching."""
    from harness.loading.manifest import load_manifest
    from harness.loading.rules import Outcome, eagle3_mla_draft

    result = eagle3_mla_draft(load_manifest(DRAFT))
    assert result.outcome == Outcome.NOT_APPLICABLE and "LlamaForCausalLMEagle3" in result.reason
