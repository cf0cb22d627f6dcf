#!/usr/bin/python3
"""check_families.py - DeepSeek-V2 and Gemma 3 against the independent numpy
reference (tools/ref_forward.py: semtools/ref_deepseek2.py, ref_gemma3.py),
the same way check_reference.py checks Llama and Qwen2 (whose compare() it
reuses: max |ours - ref| <= tol * max |ref|, tol 1e-4 for every weight
format, 32-token greedy continuations identical except after a reported
reference near-tie; f32 KV cache).

Cases, on the families' tiny shapes (tools/gen_model.py --shape tiny):
  deepseek2: F32 (HF per-expert tensors), MLX q4 g64 (mlx-lm's stacked
    switch_mlp experts), q_lora_rank (q_a_proj/q_b_proj), group-limited
    greedy routing with norm_topk_prob, stacked BF16 experts, q8 with q_lora.
    YaRN with mscale != mscale_all_dim, so both the cos/sin factor and the
    softmax mscale^2 are exercised.
  gemma3: F32, MLX q4 g64, BF16 with layer_types (bf16-rounded embedding
    scale), the Gemma3ForConditionalGeneration layout (text_config, tensors
    under language_model.model., vision tensors skipped), q8.
    The tiny window is 32 tokens: prompts of 300 (40 quick) cross it, and
    attention and final logit softcapping are on.
Prompts of 1, 7 and 300 tokens (quick: 1, 7, 40, fewer cases, for ASan).

Gemma's sliding layers keep only their window in the KV pool, as a ring of
blocks (kv/kv.h). With the default 256-token blocks a 300-token prompt
barely turns it, so the Gemma cases also run with 16-token blocks and
24-token prefill chunks (not a multiple of the block): the ring is then 3
blocks, reused ~19 times over 300 tokens, and chunks straddle its turns.

Also shows the check can fail: one perturbed element of a DeepSeek expert
and of a Gemma q_norm is caught.

Usage: check_families.py [--quick] [--archs deepseek2,gemma3]
"""
import json
import os
import shutil
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check_reference as cr  # noqa: E402

TMP = os.path.join(cr.BUILD, "tmp-check-families")

VARIANTS = {
    "qlora": ["--q-lora-rank", "64"],
    "groups": ["--topk-groups", "4:2", "--norm-topk-prob"],
    "stacked": ["--expert-layout", "stacked"],
    "types": ["--layer-types"],
    "multimodal": ["--multimodal"],
}

# (dtype, group, variant): full set, quick set.
CASES = {
    "deepseek2": ([("f32", 0, None), ("q4", 64, None), ("f32", 0, "qlora"), ("f32", 0, "groups"),
                   ("bf16", 0, "stacked"), ("q8", 32, "qlora")],
                  [("f32", 0, None), ("q4", 64, None), ("f32", 0, "groups")]),
    "gemma3": ([("f32", 0, None), ("q4", 64, None), ("bf16", 0, "types"), ("f32", 0, "multimodal"),
                ("q8", 32, None)],
               [("f32", 0, None), ("q4", 64, None), ("f32", 0, "multimodal")]),
}

# A tensor and element to perturb per family (the check must catch it).
PERTURB = {"deepseek2": "model.layers.1.mlp.experts.2.up_proj.weight",
           "gemma3": "model.layers.2.self_attn.q_norm.weight"}


def model_dir(arch, dtype, group, variant=None):
    name = f"{arch}-{dtype}" + (f"-g{group}" if group else "") + (f"-{variant}" if variant else "")
    out = os.path.join(cr.MODELS, name)
    extra = VARIANTS.get(variant, []) + (["--group-size", str(group)] if group else [])
    cr.run([cr.PY, os.path.join(cr.SRC, "tools/gen_model.py"), "--arch", arch, "--dtype", dtype,
            "--shape", "tiny", "--seed", "7", "--if-missing", "--quiet", "--out", out] + extra)
    return out


def perturbed_copy(model, tensor):
    dst = os.path.join(TMP, "perturbed")
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(model, dst)
    with open(os.path.join(dst, "model.safetensors"), "r+b") as f:
        hlen = struct.unpack("<Q", f.read(8))[0]
        t = json.loads(f.read(hlen))[tensor]
        assert t["dtype"] == "F32"
        off = 8 + hlen + t["data_offsets"][0] + 4 * 5
        f.seek(off)
        v = struct.unpack("<f", f.read(4))[0]
        f.seek(off)
        f.write(struct.pack("<f", v + 0.5))
    return dst


def perturbation_caught(arch):
    base = model_dir(arch, "f32", 0)
    bad = perturbed_copy(base, PERTURB[arch])
    ref_out, our_out = os.path.join(TMP, "ref.f32"), os.path.join(TMP, "bad.f32")
    toks = cr.prompt(40, 3)
    cr.run([cr.PY, os.path.join(cr.SRC, "tools/ref_forward.py"), "--model", base, "--tokens", toks, "--out", ref_out])
    cr.run([cr.BIN, "generate", "--model", bad, "--tokens", toks, "-n", "1", "--kv-bits", "32", "--logits-out", our_out])
    ref, our = np.fromfile(ref_out, dtype=np.float32), np.fromfile(our_out, dtype=np.float32)
    rel = float(np.abs(ref - our).max() / np.abs(ref).max())
    caught = rel > cr.TOL["f32"]
    print(f"{arch}: perturbed {PERTURB[arch]}: max rel err {rel:.3e} -> {'caught' if caught else 'NOT CAUGHT'}")
    return caught


# Extra `semantic generate` options per family, each run as its own case:
# Gemma again with a small ring (see above).
RING = ["--block-tokens", "16", "--chunk", "24"]
GEN_ARGS = {"deepseek2": [("", [])], "gemma3": [("", []), ("ring", RING)]}


def check_family(arch, quick, lengths):
    failures = 0
    for dtype, group, variant in CASES[arch][1 if quick else 0]:
        model = model_dir(arch, dtype, group, variant)
        for (tag, gen_args), n in [(g, n) for g in GEN_ARGS[arch] for n in lengths]:
            if tag and n <= 32:
                continue  # the ring only matters past the window
            fmt = dtype + (f"g{group}" if group else "") + (f"-{variant}" if variant else "") + (f"+{tag}" if tag else "")
            rel, same, rg, og = cr.compare(model, cr.prompt(n, n), cr.TOL[dtype], TMP, f"{arch} {fmt} n={n}", gen_args)
            ok = rel <= cr.TOL[dtype] and same
            failures += not ok
            print(f"{arch:9} {fmt:15} {n:6d} {rel:12.3e} {cr.TOL[dtype]:8.0e}  "
                  f"{'identical' if rg == og else 'near-tie' if same else 'DIFFERENT'}" + ("" if ok else "   <-- FAIL"))
            if rg != og:
                print(f"   ref: {rg}\n   our: {og}")
    return failures + (not perturbation_caught(arch))


def main():
    quick = "--quick" in sys.argv
    archs = list(CASES)
    if "--archs" in sys.argv:
        archs = sys.argv[sys.argv.index("--archs") + 1].split(",")
    os.makedirs(cr.MODELS, exist_ok=True)
    os.makedirs(TMP, exist_ok=True)
    lengths = [1, 7, 300] if not quick else [1, 7, 40]
    print(f"{'arch':9} {'format':15} {'prompt':>6} {'max rel err':>12} {'tol':>8}  greedy-32")
    failures = sum(check_family(a, quick, lengths) for a in archs)
    shutil.rmtree(TMP, ignore_errors=True)
    print(f"{'PASS' if failures == 0 else 'FAIL'}: {failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
