#!/usr/bin/python3
"""Train the demo model (a small Llama) on the tokenized demo corpus.

What it is for: step 3 of tools/demo/retrain.sh. Reads train.bin/valid.bin
(uint16 token streams written by tools/demo/tokenizer.js), trains
tools/demo/llama_torch.LlamaForCausalLM on CPU with Debian's python3-torch,
and writes OUT/weights.npz (float32, Hugging Face tensor names),
OUT/config.json (the model's HF config fields) and OUT/train_log.json
(hyper-parameters, loss curve, final metrics, wall time, machine).

Recipe (fixed; --preset picks the sizes):
  - batches of `batch` random windows of ctx+1 tokens from the training
    stream (documents are packed back to back as <s> text </s>), drawn
    with a torch.Generator seeded from --seed; loss = mean next-token
    cross entropy over all positions;
  - AdamW (betas 0.9/0.95, eps 1e-8, weight decay 0.1 on matrices and the
    embedding, none on norms), linear warm-up then cosine decay to 10%,
    gradient clipping at 1.0; float32, or bf16 autocast where the CPU has
    AVX512_BF16 (--dtype auto; without it bf16 is emulated and was 18x
    slower than float32 on the AMD EPYC that trained the committed model);
  - N(0, 0.02) init, norms at 1.
Reproducible: same seed, same thread count (--threads) and same BLAS give
the same weights (deterministic algorithms are requested from torch).
At the end the validation perplexity is measured with the protocol in
llama_torch.eval_windows (windows of ctx tokens, stride ctx).

Progress goes to stdout (step, loss, lr, tokens/s, ETA); run long trainings
in the background with nice (retrain.sh does). Single process.
"""

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_torch as lt  # noqa: E402

PRESETS = {
    # ~5.5M parameters. head_dim 64 (the engine's q8/q4 KV caches group
    # along head_dim in 64s) and intermediate 704 = 11*64 (MLX affine
    # groups of 64 need in_features % 64 == 0 for down_proj; 704 is the
    # multiple of 64 nearest to the usual 8/3 * hidden = 683).
    "full": dict(hidden_size=256, intermediate_size=704, num_hidden_layers=6,
                 num_attention_heads=4, num_key_value_heads=2, head_dim=64,
                 ctx=256, batch=8, steps=6250, warmup=200, lr=3e-3,
                 decay_frac=0.2),
    # ~1.3M parameters, for testing the pipeline (about 10 minutes).
    "quick": dict(hidden_size=128, intermediate_size=384, num_hidden_layers=4,
                  num_attention_heads=2, num_key_value_heads=1, head_dim=64,
                  ctx=256, batch=8, steps=1500, warmup=100, lr=3e-3,
                  decay_frac=0.2),
}


def hf_config(p, vocab_size):
    return {
        "vocab_size": vocab_size,
        "hidden_size": p["hidden_size"],
        "intermediate_size": p["intermediate_size"],
        "num_hidden_layers": p["num_hidden_layers"],
        "num_attention_heads": p["num_attention_heads"],
        "num_key_value_heads": p["num_key_value_heads"],
        "head_dim": p["head_dim"],
        "max_position_embeddings": p["ctx"],
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "tie_word_embeddings": True,
        "bos_token_id": 1,
        "eos_token_id": 2,
    }


def load_stream(path):
    arr = np.fromfile(path, dtype="<u2")
    return torch.from_numpy(arr.astype(np.int64))


def decay_start(p):
    return p["steps"] - int(round(p["decay_frac"] * p["steps"]))


def lr_at(step, p):
    """Warm-up, stable, decay (WSD): linear warm-up, constant, then a
    cosine decay to 10% over the last decay_frac of the steps. Before the
    decay starts the schedule does not depend on the total step count, so
    a run can be resumed from a checkpoint with a different --steps."""
    if step < p["warmup"]:
        return p["lr"] * (step + 1) / p["warmup"]
    start = decay_start(p)
    if step < start:
        return p["lr"]
    frac = (step - start) / max(1, p["steps"] - start)
    return p["lr"] * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


def param_groups(model):
    decay, no_decay = [], []
    for name, prm in model.named_parameters():
        (decay if prm.dim() == 2 else no_decay).append(prm)
    return [{"params": decay, "weight_decay": 0.1},
            {"params": no_decay, "weight_decay": 0.0}]


def save_ckpt(path, model, opt, data_gen, step, log, spent, p):
    """Everything needed to continue bit-exactly: weights, AdamW state,
    the batch generator's state, the log and the schedule."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.save({"step": step, "model": model.state_dict(),
                "opt": opt.state_dict(), "data_gen": data_gen.get_state(),
                "log": log, "spent_s": spent, "hyper": p}, path + ".tmp")
    os.replace(path + ".tmp", path)


def load_ckpt(path, model, opt, data_gen, p):
    ck = torch.load(path)
    old = ck["hyper"]
    same = {k: v for k, v in old.items() if k != "steps"} == \
        {k: v for k, v in p.items() if k != "steps"}
    # the same step count is the same schedule everywhere; another count
    # shares it only up to the earlier decay start
    moved = old["steps"] != p["steps"] and ck["step"] > min(decay_start(old), decay_start(p))
    if not same or moved:
        sys.exit("train: checkpoint at step %d does not fit this schedule; "
                 "start afresh without --resume" % ck["step"])
    model.load_state_dict(ck["model"])
    opt.load_state_dict(ck["opt"])
    data_gen.set_state(ck["data_gen"])
    return ck["step"], ck["log"], ck["spent_s"]


def cpu_has_bf16():
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("flags") and "avx512_bf16" in
                       line.split() for line in f)
    except OSError:
        return False


def machine():
    name = platform.processor() or "unknown"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                name = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return name


def evaluate(model, stream, ctx, limit=None):
    windows = lt.eval_windows(len(stream), ctx)
    if limit:
        windows = windows[:limit]
    ppl, mean_nll, count = lt.perplexity(lt.window_nll(model, stream,
                                                       windows))
    return {"ppl": ppl, "mean_nll": mean_nll, "tokens_scored": count,
            "windows": len(windows)}


def train(args, p):
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    tok_stats = json.load(open(os.path.join(args.data, "tokenizer_stats.json")))
    vocab = tok_stats["vocab_size"]
    cfg = hf_config(p, vocab)
    train_ids = load_stream(os.path.join(args.data, "train.bin"))
    valid_ids = load_stream(os.path.join(args.data, "valid.bin"))
    if int(train_ids.max()) >= vocab or int(valid_ids.max()) >= vocab:
        sys.exit("train: token id out of range")
    model = lt.LlamaForCausalLM(cfg)
    gen = torch.Generator().manual_seed(args.seed)
    model.init_weights(gen, 0.02)
    n_params = sum(x.numel() for x in model.parameters())
    opt = torch.optim.AdamW(param_groups(model), lr=p["lr"],
                            betas=(0.9, 0.95), eps=1e-8)
    data_gen = torch.Generator().manual_seed(args.seed + 1)
    ctx, batch, steps = p["ctx"], p["batch"], p["steps"]
    print("train: preset %s, %d parameters, %d train tokens, %d steps of "
          "%dx%d, %d threads, %s" % (args.preset, n_params, len(train_ids),
                                     steps, batch, ctx, args.threads,
                                     "bf16 autocast" if args.bf16 else "fp32"),
          flush=True)
    log, first, spent = [], 0, 0.0
    ckpt_path = os.path.join(args.out, "ckpt.pt")
    if args.resume and os.path.exists(ckpt_path):
        first, log, spent = load_ckpt(ckpt_path, model, opt, data_gen, p)
        print("train: resumed at step %d" % first, flush=True)
    t0, window_loss, window_t = time.time() - spent, [], time.time()
    offs = torch.arange(ctx + 1)
    for step in range(first, steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, p)
        starts = torch.randint(0, len(train_ids) - ctx - 1, (batch,),
                               generator=data_gen)
        seq = train_ids[starts[:, None] + offs]
        model.train()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            logits = model(seq[:, :-1])
        loss = F.cross_entropy(logits.float().reshape(-1, vocab),
                               seq[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        window_loss.append(float(loss))
        done = step + 1
        if done % args.log_every == 0 or done == steps:
            now = time.time()
            tps = len(window_loss) * batch * ctx / max(now - window_t, 1e-9)
            eta = (now - t0) / done * (steps - done)
            mean = sum(window_loss) / len(window_loss)
            entry = {"step": done, "loss": mean, "lr": lr_at(step, p),
                     "tokens_per_s": tps, "elapsed_s": now - t0}
            line = ("step %5d/%d  loss %.4f  lr %.2e  %6.0f tok/s  "
                    "elapsed %5.0fs  eta %5.0fs" %
                    (done, steps, mean, entry["lr"], tps, now - t0, eta))
            if args.eval_every and (done % args.eval_every == 0):
                quick = evaluate(model, valid_ids, ctx, limit=64)
                entry["valid_ppl_64w"] = quick["ppl"]
                line += "  valid ppl (64 windows) %.2f" % quick["ppl"]
            print(line, flush=True)
            log.append(entry)
            window_loss, window_t = [], time.time()
        if args.ckpt_every and done % args.ckpt_every == 0 and done < steps:
            save_ckpt(ckpt_path, model, opt, data_gen, done, log,
                      time.time() - t0, p)
    wall = time.time() - t0
    if args.bench:
        sys.exit(0)
    final = evaluate(model, valid_ids, ctx)
    train_eval = evaluate(model, train_ids[:len(valid_ids)], ctx)
    print("train: done in %.0fs; final train loss (last %d steps) %.4f; "
          "validation ppl %.3f over %d tokens (%d windows of %d); "
          "train-slice ppl %.3f" % (wall, args.log_every, log[-1]["loss"],
                                    final["ppl"], final["tokens_scored"],
                                    final["windows"], ctx, train_eval["ppl"]),
          flush=True)
    return model, cfg, {
        "preset": args.preset, "hyper": p, "seed": args.seed,
        "threads": args.threads, "bf16_autocast": args.bf16,
        "parameters": n_params, "train_tokens": len(train_ids),
        "valid_tokens": len(valid_ids), "wall_s": wall,
        "machine": machine(), "torch": torch.__version__,
        "final_train_loss": log[-1]["loss"], "valid": final,
        "train_slice": train_eval, "log": log,
    }


def save(out, model, cfg, info):
    os.makedirs(out, exist_ok=True)
    tensors = {k: v.detach().float().numpy()
               for k, v in model.state_dict().items()}
    tmp = os.path.join(out, "weights.tmp.npz")
    np.savez(tmp, **tensors)
    os.replace(tmp, os.path.join(out, "weights.npz"))
    for name, obj in (("config.json", cfg), ("train_log.json", info)):
        with open(os.path.join(out, name), "w") as f:
            json.dump(obj, f, indent=1)
            f.write("\n")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    cache = os.path.join(os.path.dirname(os.path.dirname(here)),
                         ".cache/demo")
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="full")
    ap.add_argument("--quick", action="store_const", const="quick",
                    dest="preset", help="same as --preset quick")
    ap.add_argument("--data", default=os.path.join(cache, "tok"))
    ap.add_argument("--out", default=None,
                    help="default .cache/demo/train-PRESET")
    ap.add_argument("--steps", type=int, default=None,
                    help="override the preset's step count")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: fastest on a shared 2-core box)")
    ap.add_argument("--dtype", choices=("auto", "fp32", "bf16"),
                    default="auto", help="auto: bf16 autocast if the CPU "
                    "has AVX512_BF16, else float32")
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--eval-every", type=int, default=1000)
    ap.add_argument("--ckpt-every", type=int, default=250)
    ap.add_argument("--resume", action="store_true",
                    help="continue from OUT/ckpt.pt, bit-exactly: at any "
                    "step with the same --steps, before the decay phase of "
                    "both schedules with another")
    ap.add_argument("--bench", action="store_true",
                    help="only time the training steps; save nothing")
    args = ap.parse_args()
    args.bf16 = args.dtype == "bf16" or (args.dtype == "auto" and
                                         cpu_has_bf16())
    p = dict(PRESETS[args.preset])
    if args.steps:
        p["steps"] = args.steps
        p["warmup"] = min(p["warmup"], max(1, args.steps // 10))
    args.out = args.out or os.path.join(cache, "train-" + args.preset)
    model, cfg, info = train(args, p)
    save(args.out, model, cfg, info)
    print("train: wrote %s" % args.out)


if __name__ == "__main__":
    main()
