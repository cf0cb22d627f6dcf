#!/usr/bin/python3
"""check_perplexity.py - `semantic perplexity` (src/app/cmd_perplexity.c)
against the independent numpy forward pass, on a small random model with a
real tokenizer (tools/gen_model.py --shape tiny --tokenizer llama2).

Checks:
  1. the window protocol (tools/demo/llama_torch.eval_windows): window and
     scored-token counts for streams whose tail is kept (>= 2 tokens) or
     dropped (1 token);
  2. the C perplexity over a few windows equals numpy float64's within 1e-4
     relative with an f32 KV cache (the only difference is f32 arithmetic),
     and within 1e-3 with the default f16 KV;
  3. KV 8 and 4 bits: finite and close to 16 bits (mean NLL within 0.1 and
     0.3 nat: a random model's logits are sharp, so its perplexity is ~1e11
     and moves percents where a trained model's moves a fraction of one;
     tests/demo bounds the trained model's);
  4. --save-restore (the KV written to a cache file mid-window and loaded
     back into fresh blocks of 16 tokens, so several full blocks and a
     partial one) equals the run without it exactly, at 16, 8 and 4 bits,
     and the plain run within 1e-9;
  5. --text and --jsonl build the stream that `semantic tokenize` gives
     (jsonl: each passage with special tokens, then EOS; blank lines
     skipped): the same NLL as --ids of that stream, bit for bit;
  6. --reference reads reference.json's head ids and window;
  7. malformed input (missing file, id >= vocab, empty or 1-token stream,
     ctx < 2 or > max positions, bad JSON line, invalid UTF-8, no or two
     inputs, bad --kv-bits, absent or malformed reference.json) fails with
     a message and a non-zero status.
"""
import json
import math
import os
import subprocess
import sys
import tempfile

import numpy as np

SRC = os.environ.get("SEM_SOURCE_DIR", ".")
BUILD = os.environ.get("SEM_BUILD_DIR", "build/release")
BIN = os.environ.get("SEM_BIN", os.path.join(BUILD, "semantic"))
PY = "/usr/bin/python3"
sys.path.insert(0, os.path.join(SRC, "tools"))
from semtools import reference as npref  # noqa: E402

FAILS = []
MAX_POS = 256
# KV quantization bounds on a random model's mean NLL (nats): measured
# -0.01..-0.03 (q8) and -0.05..-0.14 (q4) on two seeds.
KV_NLL_BOUND = {8: 0.1, 4: 0.3}


def check(cond, what):
    print("%s %s" % ("ok  " if cond else "FAIL", what))
    if not cond:
        FAILS.append(what)


def sem(*args):
    return subprocess.run([BIN] + list(args), capture_output=True, text=True)


def ppl_json(*args):
    p = sem("perplexity", "--json", *args)
    if p.returncode != 0:
        sys.exit("FAIL: semantic perplexity %s\n%s" % (" ".join(args), p.stderr))
    return json.loads(p.stdout)


def make_model():
    out = os.path.join(BUILD, "models", "ppl-tiny-llama2")
    subprocess.run([PY, os.path.join(SRC, "tools/gen_model.py"), "--shape", "tiny",
                    "--tokenizer", "llama2", "--vocab", "32000", "--max-pos", str(MAX_POS),
                    "--seed", "11", "--if-missing", "--quiet", "--out", out], check=True)
    return out


def numpy_ppl(model, ids, ctx):
    """eval_windows + window_nll + perplexity, in float64."""
    total, count, windows = 0.0, 0, 0
    for s in range(0, len(ids), ctx):
        w = np.asarray(ids[s:s + ctx], dtype=np.int64)
        if len(w) < 2:
            continue
        lg = model.forward(w[:-1], model.new_cache())
        lg = lg - lg.max(axis=-1, keepdims=True)
        lp = lg - np.log(np.exp(lg).sum(axis=-1, keepdims=True))
        total += float(-lp[np.arange(len(w) - 1), w[1:]].sum())
        count += len(w) - 1
        windows += 1
    return math.exp(total / count), count, windows


def write_ids(path, ids, sep=" "):
    with open(path, "w") as f:
        f.write(sep.join(str(int(i)) for i in ids) + "\n")


def check_protocol_and_numpy(model_dir, tmp):
    ref = npref.Model(model_dir)
    rng = np.random.default_rng(3)
    ids = rng.integers(0, 32000, size=200).tolist()
    path = os.path.join(tmp, "ids.txt")
    write_ids(path, ids)
    want, count, windows = numpy_ppl(ref, ids, 64)
    r32 = ppl_json("--model", model_dir, "--ids", path, "--ctx", "64", "--kv-bits", "32")
    check(r32["windows"] == 4 == windows and r32["tokens_scored"] == 196 == count,
          "protocol: 200 tokens, ctx 64 -> 4 windows (last of 8), 196 scored (got %d, %d)"
          % (r32["windows"], r32["tokens_scored"]))
    rel = abs(r32["runs"][0]["ppl"] - want) / want
    check(rel < 1e-4, "C (f32 KV) ppl %.6e vs numpy f64 %.6e: rel %.2e < 1e-4"
          % (r32["runs"][0]["ppl"], want, rel))
    r16 = ppl_json("--model", model_dir, "--ids", path, "--ctx", "64")
    rel16 = abs(r16["runs"][0]["ppl"] - want) / want
    check(rel16 < 1e-3, "C (f16 KV) ppl vs numpy f64: rel %.2e < 1e-3" % rel16)
    write_ids(path, ids[:193], sep=",")
    r = ppl_json("--model", model_dir, "--ids", path, "--ctx", "64", "--kv-bits", "32")
    want, count, windows = numpy_ppl(ref, ids[:193], 64)
    check(r["windows"] == 3 == windows and r["tokens_scored"] == 189 == count and
          abs(r["runs"][0]["ppl"] - want) / want < 1e-4,
          "protocol: 193 tokens, ctx 64 -> a 1-token tail is dropped (3 windows, 189 scored)")
    r = ppl_json("--model", model_dir, "--ids", path, "--ctx", "64", "--windows", "2", "--kv-bits", "32")
    check(r["windows"] == 2 and r["tokens_scored"] == 126, "--windows 2 scores 2 windows")
    return os.path.join(tmp, "ids.txt")


def check_kv_and_save_restore(model_dir, tmp):
    rng = np.random.default_rng(4)
    path = os.path.join(tmp, "ids_sr.txt")
    write_ids(path, rng.integers(0, 32000, size=150).tolist())
    common = ["--model", model_dir, "--ids", path, "--ctx", "70", "--block-tokens", "16"]
    plain = ppl_json(*common, "--kv-bits", "all")
    sr = ppl_json(*common, "--kv-bits", "all", "--save-restore")
    base = plain["runs"][0]
    check([x["bits"] for x in plain["runs"]] == [16, 8, 4], "--kv-bits all runs 16, 8, 4")
    for run in plain["runs"][1:]:
        d = run["mean_nll"] - base["mean_nll"]
        bound = KV_NLL_BOUND[run["bits"]]
        check(math.isfinite(run["ppl"]) and abs(d) < bound,
              "KV %d bits: ppl %.4e finite, mean NLL %+.4f nat from 16 bits (bound %.2f)"
              % (run["bits"], run["ppl"], d, bound))
    for a, b in zip(plain["runs"], sr["runs"]):
        s = b["save_restore"]
        check(s["identical"] and s["ppl"] == b["ppl"],
              "save/restore at %d bits: %.17g == %.17g without" % (a["bits"], s["ppl"], b["ppl"]))
        # The plain run feeds each window in one chunk, the split run in two
        # halves; the attention kernels may sum in another order then.
        check(abs(b["ppl"] - a["ppl"]) <= 1e-9 * a["ppl"],
              "save/restore at %d bits: the run cut in halves equals the plain run (%.17g)" % (a["bits"], a["ppl"]))


def tokenize_batch(model_dir, texts, tmp):
    path = os.path.join(tmp, "batch.jsonl")
    with open(path, "w", encoding="utf-8") as f:
        for t in texts:
            f.write(json.dumps(t) + "\n")
    p = sem("tokenize", "--model", model_dir, "--batch", path)
    if p.returncode != 0:
        sys.exit("FAIL: semantic tokenize --batch\n" + p.stderr)
    return [json.loads(line) for line in p.stdout.splitlines()]


def check_text_inputs(model_dir, tmp):
    passages = ["It is a truth universally acknowledged, that a single man in possession "
                "of a good fortune, must be in want of a wife.",
                "Call me Ishmael. Some years ago\u2014never mind how long precisely\u2014having "
                "little or no money in my purse,\n\nand nothing particular to interest me on shore.",
                "In the beginning God created the heaven and the earth. " * 3]
    jsonl = os.path.join(tmp, "valid.jsonl")
    with open(jsonl, "w", encoding="utf-8") as f:
        for i, t in enumerate(passages):
            f.write(json.dumps({"src": "test/%d" % i, "text": t}) + "\n")
            if i == 0:
                f.write("\n")  # blank lines are skipped, as tokenizer.js does
    enc = tokenize_batch(model_dir, passages, tmp)
    stream = [i for ids in enc for i in ids + [2]]
    ids_path = os.path.join(tmp, "stream.txt")
    write_ids(ids_path, stream)
    a = ppl_json("--model", model_dir, "--jsonl", jsonl, "--ctx", "32")
    b = ppl_json("--model", model_dir, "--ids", ids_path, "--ctx", "32")
    check(a["stream_tokens"] == len(stream) and a["runs"][0]["nll"] == b["runs"][0]["nll"],
          "--jsonl stream = <s> text </s> per passage (%d tokens), same NLL as --ids" % len(stream))
    text = os.path.join(tmp, "text.txt")
    with open(text, "w", encoding="utf-8") as f:
        f.write("\n\n".join(passages))
    want = tokenize_batch(model_dir, ["\n\n".join(passages)], tmp)[0]
    write_ids(ids_path, want)
    a = ppl_json("--model", model_dir, "--text", text, "--ctx", "32")
    b = ppl_json("--model", model_dir, "--ids", ids_path, "--ctx", "32")
    check(a["stream_tokens"] == len(want) and a["runs"][0]["nll"] == b["runs"][0]["nll"],
          "--text stream = the tokenizer's ids with special tokens (%d tokens)" % len(want))


def fake_model_dir(model_dir, tmp, name):
    d = os.path.join(tmp, name)
    os.mkdir(d)
    for f in os.listdir(model_dir):
        os.symlink(os.path.abspath(os.path.join(model_dir, f)), os.path.join(d, f))
    return d


def check_reference(model_dir, tmp):
    d = fake_model_dir(model_dir, tmp, "with-ref")
    rng = np.random.default_rng(5)
    ids = rng.integers(0, 32000, size=3 * 40).tolist()
    with open(os.path.join(d, "reference.json"), "w") as f:
        json.dump({"perplexity": {"window": 40, "ppl": 12.5},
                   "head": {"windows": 3, "ids": ids, "ppl_torch_f32": 11.0,
                            "ppl_numpy_f64": 11.0}}, f)
    path = os.path.join(tmp, "ref_ids.txt")
    write_ids(path, ids)
    a = ppl_json("--model", d, "--reference")
    b = ppl_json("--model", d, "--ids", path, "--ctx", "40")
    check(a["ctx"] == 40 and a["windows"] == 3 and a["runs"][0]["nll"] == b["runs"][0]["nll"] and
          a["reference"]["head_ppl_torch_f32"] == 11.0,
          "--reference: head ids in windows of reference.json's window")
    text = sem("perplexity", "--model", d, "--reference")
    check(text.returncode == 0 and "PyTorch f32 11.000000" in text.stdout and "tokens scored" in text.stdout,
          "--reference text summary names the reference figures")


def expect_error(args, rc, words, what):
    p = sem("perplexity", *args)
    ok = p.returncode == rc and all(w in p.stderr for w in words) and "AddressSanitizer" not in p.stderr
    check(ok, "error: %s -> exit %d, says %s" % (what, p.returncode, words))
    if not ok:
        print("   stderr: " + p.stderr.strip().replace("\n", "\n   "))


def check_errors(model_dir, tmp):
    m = ["--model", model_dir]
    good = os.path.join(tmp, "good.txt")
    write_ids(good, [1, 2, 3, 4, 5])

    def ids_file(name, content, mode="w"):
        path = os.path.join(tmp, name)
        with open(path, mode) as f:
            f.write(content)
        return path
    expect_error(m + ["--ids", os.path.join(tmp, "absent.txt")], 1, ["--ids", "absent.txt"], "missing --ids file")
    expect_error(m + ["--text", os.path.join(tmp, "absent.txt")], 1, ["--text"], "missing --text file")
    expect_error(m + ["--ids", ids_file("big.txt", "1 2 32000 4")], 1, ["32000", "index 2", "vocabulary"],
                 "id >= vocab")
    expect_error(m + ["--ids", ids_file("neg.txt", "1 2 -3")], 1, ["bad token id"], "negative id")
    expect_error(m + ["--ids", ids_file("junk.txt", "1 2 x3")], 1, ["bad token id", "byte 4"], "junk in ids")
    expect_error(m + ["--ids", ids_file("empty.txt", "")], 1, ["0 token", "at least 2"], "empty stream")
    expect_error(m + ["--ids", ids_file("one.txt", "7\n")], 1, ["1 token", "at least 2"], "1-token stream")
    expect_error(m + ["--ids", good, "--ctx", "1"], 2, ["--ctx 1", "at least 2"], "ctx 1")
    expect_error(m + ["--ids", good, "--ctx", "0"], 2, ["--ctx 0"], "ctx 0")
    expect_error(m + ["--ids", good, "--ctx", str(MAX_POS + 1)], 1, ["exceeds", str(MAX_POS)], "ctx > max positions")
    expect_error(m + ["--ids", good, "--kv-bits", "5"], 2, ["--kv-bits"], "bad --kv-bits")
    expect_error(m + ["--ids", good, "--windows", "0"], 2, ["--windows"], "--windows 0")
    expect_error(m, 2, ["exactly one"], "no input")
    expect_error(m + ["--ids", good, "--reference"], 2, ["exactly one"], "two inputs")
    expect_error(["--ids", good], 2, ["--model"], "no model")
    expect_error(["--model", os.path.join(tmp, "nomodel"), "--ids", good], 1, ["nomodel"], "missing model")
    bad = ids_file("bad.jsonl", '{"text": "fine"}\n{"text": 3}\n')
    expect_error(m + ["--jsonl", bad], 1, ["line 2", "text"], "jsonl line without a string text")
    bad = ids_file("bad2.jsonl", '{"text": "fine"}\n{"text": "open\n')
    expect_error(m + ["--jsonl", bad], 1, ["line 2", "not JSON"], "jsonl line that is not JSON")
    bad = ids_file("bad.txt", b"caf\xc3 \xff\xfe", mode="wb")
    expect_error(m + ["--text", bad], 1, ["bad.txt"], "invalid UTF-8 text")
    d = fake_model_dir(model_dir, tmp, "no-ref")
    expect_error(["--model", d, "--reference"], 1, ["reference.json"], "absent reference.json")
    with open(os.path.join(d, "reference.json"), "w") as f:
        json.dump({"head": {"ids": [1, "x"]}, "perplexity": {"window": 256}}, f)
    expect_error(["--model", d, "--reference"], 1, ["head.ids[1]"], "reference.json with a bad id")
    with open(os.path.join(d, "reference.json"), "w") as f:
        f.write("{\"head\": ")
    expect_error(["--model", d, "--reference"], 1, ["reference.json"], "truncated reference.json")


def main():
    model_dir = make_model()
    p = sem("perplexity", "--help")
    check(p.returncode == 0 and "--save-restore" in p.stdout and "--kv-bits" in p.stdout, "--help")
    p = sem("--help")
    check("perplexity" in p.stdout, "listed in semantic --help")
    with tempfile.TemporaryDirectory() as tmp:
        check_protocol_and_numpy(model_dir, tmp)
        check_kv_and_save_restore(model_dir, tmp)
        check_text_inputs(model_dir, tmp)
        check_reference(model_dir, tmp)
        check_errors(model_dir, tmp)
    if FAILS:
        print("%d check(s) failed" % len(FAILS))
        sys.exit(1)
    print("all perplexity checks passed")


if __name__ == "__main__":
    main()
