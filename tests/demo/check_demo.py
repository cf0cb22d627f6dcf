#!/usr/bin/python3
"""Checks of the demo model's tools and of the committed demo model.

What it is for: tests/demo/demo_model.test.sh runs this (numpy only, no
torch, no network, a few seconds). It checks
  1. tools/demo/rdata.py on hand-built R serializations (version 3 XDR,
     attributes, NA strings, references, zlib and bzip2 lazy-load records)
     and that truncated input is an error, not a crash;
  2. tools/demo/corpus.py's cleaning and packing on small synthetic books;
  3. each committed model directory (models/semantic-demo-5m{,-q8,-q4}):
     config fields the engine relies on, tensor names / dtypes / shapes,
     file sizes, and that the independent numpy forward pass
     (tools/semtools/reference.py) reproduces reference.json: the mean NLL
     of the first validation windows and the greedy continuations of the
     first prompts (up to a step whose top-2 gap is too small to call).
Exit status 0 when all pass; prints one line per check.
"""

import bz2
import gzip
import json
import os
import struct
import sys
import zlib

import numpy as np

SRC = os.environ.get("SEM_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(SRC, "tools", "demo"))
sys.path.insert(0, os.path.join(SRC, "tools"))
import corpus  # noqa: E402
import rdata  # noqa: E402
from semtools import reference as npref  # noqa: E402
from semtools import safetensors_np as stn  # noqa: E402

NAME = "semantic-demo-5m"
FAILS = []


def check(cond, what):
    print("%s %s" % ("ok  " if cond else "FAIL", what))
    if not cond:
        FAILS.append(what)


# ------------------------------------------------------------ R encoder --

def i32(v):
    return struct.pack(">i", v)


def charsxp(s):
    if s is None:
        return i32(9) + i32(-1)
    b = s.encode("utf-8")
    return i32(9 | (64 << 12)) + i32(len(b)) + b  # ASCII flag


def strsxp(items, attr=b""):
    return (i32(16 | (512 if attr else 0)) + i32(len(items)) +
            b"".join(charsxp(s) for s in items) + attr)


def names_attr(names, first_use=True):
    sym = (i32(1) + charsxp("names")) if first_use else i32(255 | (1 << 8))
    return i32(2 | (1 << 10)) + sym + strsxp(names) + i32(254)


def serialized(obj_bytes):
    return b"X\n" + i32(3) + i32(0x40201) + i32(0x30500) + i32(5) + \
        b"UTF-8" + obj_bytes


def check_rdata(tmp):
    # list(a = c("x", NA), b = 1:3), names via a symbol, then a reference
    obj = (i32(19 | 512) + i32(2) +
           strsxp(["x", None]) +
           i32(13) + i32(3) + i32(1) + i32(2) + i32(-(2 ** 31)) +
           names_attr(["a", "b"]))
    val = rdata.unserialize(serialized(obj))
    check(val == [["x", None], [1, 2, None]] and val.names() == ["a", "b"],
          "rdata: list with names, NA string and NA integer")
    # a lazy-load database with one zlib and one bzip2 record
    payload = serialized(strsxp(["It is a truth", "universally acknowledged"]))
    for kind, comp in ((1, zlib.compress(payload)),
                       (2, b"2" + bz2.compress(payload))):
        rec = struct.pack(">I", len(payload)) + comp
        with open(os.path.join(tmp, "db.rdb"), "wb") as f:
            f.write(rec)
        var = i32(13) + i32(2) + i32(0) + i32(len(rec))
        variables = (i32(19 | 512) + i32(1) + var + names_attr(["book"]))
        lgl = i32(10) + i32(1) + i32(1) if kind == 1 else \
            i32(14) + i32(1) + struct.pack(">d", 2.0)
        index = (i32(19 | 512) + i32(3) + variables +
                 i32(19) + i32(0) + lgl +
                 names_attr(["variables", "references", "compressed"],
                            first_use=False))
        with open(os.path.join(tmp, "db.rdx"), "wb") as f:
            f.write(gzip.compress(serialized(index)))
        got = rdata.read_lazyload(os.path.join(tmp, "db"))
        check(got == {"book": ["It is a truth", "universally acknowledged"]},
              "rdata: lazy-load record, compression type %d" % kind)
    try:
        rdata.unserialize(serialized(obj)[:-9])
        check(False, "rdata: truncated input raises RDataError")
    except rdata.RDataError:
        check(True, "rdata: truncated input raises RDataError")


# ---------------------------------------------------------------- corpus --

def check_corpus():
    lines = ["EMMA", "", "By Jane Austen", "", "CHAPTER I", "",
             "Emma Woodhouse, handsome, clever, and", "_rich_, with a home.",
             "", "She was the youngest.", "", "VOLUME II", "", "CHAPTER II",
             "", "[At this point in the first edition, Volume I ends.]", "",
             "Mr. Weston was a native.", "", "THE END", "", "Not text."]
    ch = corpus.austen_chapters(lines)
    check(ch == [["Emma Woodhouse, handsome, clever, and rich, with a home.",
                  "She was the youngest."], ["Mr. Weston was a native."]],
          "corpus: Austen chapters, front matter, italics, notes, end")
    moby = ("\ufeffThe Project Gutenberg EBook\r\n\r\nCHAPTER 1. Loomings."
            "\r\n\r\nCall me\r\nIshmael.\r\n\r\nBOOK I. CHAPTER 1. (A).--Text"
            "\r\n\r\nCHAPTER 2. The Carpet-Bag.\r\n\r\nI stuffed.\r\n\r\n"
            "End of Project Gutenberg's Moby Dick\r\nlicence\r\n")
    check(corpus.moby_chapters(moby) ==
          [["Call me Ishmael.", "BOOK I. CHAPTER 1. (A).--Text"],
           ["I stuffed."]], "corpus: Moby Dick chapters without Gutenberg text")
    kjv = "Ge1:1 In the beginning.\nGe1:2 And the earth.\n1Sa2:1 And Hannah."
    check(corpus.kjv_chapters(kjv) == [["In the beginning.", "And the earth."],
                                       ["And Hannah."]], "corpus: KJV chapters")
    units = ["a" * 400, "b" * 400, "c" * 400, "d" * 1500, "e" * 10]
    packed = corpus.pack(units, "\n\n")
    check(packed == ["a" * 400 + "\n\n" + "b" * 400, "c" * 400, "d" * 1500,
                     "e" * 10], "corpus: greedy passage packing")


# ----------------------------------------------------------------- model --

def check_model_dir(path, bits):
    cfg = json.load(open(os.path.join(path, "config.json")))
    ref = json.load(open(os.path.join(path, "reference.json")))
    check(cfg["architectures"] == ["LlamaForCausalLM"] and
          cfg["tie_word_embeddings"] and cfg["head_dim"] % 64 == 0 and
          cfg["intermediate_size"] % 64 == 0 and
          cfg["hidden_size"] % 64 == 0 and cfg["eos_token_id"] == 2 and
          cfg["bos_token_id"] == 1, "%s: config" % path)
    q = cfg.get("quantization")
    check((q is None and bits is None) or
          (q == {"group_size": 64, "bits": bits} and
           cfg.get("quantization_config") == q), "%s: quantization block" % path)
    gen = json.load(open(os.path.join(path, "generation_config.json")))
    check(gen["eos_token_id"] == 2, "%s: generation_config eos" % path)
    for fname in os.listdir(path):
        size = os.path.getsize(os.path.join(path, fname))
        check(size < 16 * 1024 * 1024, "%s/%s: %d bytes < 16 MiB"
              % (path, fname, size))
    with stn.SafetensorsFile(os.path.join(path, "model.safetensors")) as f:
        names = set(f.names())
        emb = "model.embed_tokens.weight"
        check("lm_head.weight" not in names, "%s: tied, no lm_head" % path)
        if bits:
            check(f.dtype(emb) == "U32" and
                  f.shape(emb) == (cfg["vocab_size"],
                                   cfg["hidden_size"] * bits // 32) and
                  f.dtype("model.embed_tokens.scales") == "BF16" and
                  f.dtype("model.norm.weight") == "BF16",
                  "%s: %d-bit packed tensors" % (path, bits))
        else:
            check(all(f.dtype(n) == "BF16" for n in names) and
                  f.shape(emb) == (cfg["vocab_size"], cfg["hidden_size"]),
                  "%s: BF16 tensors" % path)
    model = npref.Model(path)
    head = ref["head"]
    ids = np.array(head["ids"], dtype=np.int64)
    window = ref["perplexity"]["window"]
    for w in range(2):
        seg = ids[w * window:(w + 1) * window]
        logits = model.forward(seg[:-1], model.new_cache())
        logits = logits - logits.max(axis=-1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
        nll = float(-logp[np.arange(len(seg) - 1), seg[1:]].mean())
        want = head["window_mean_nll_numpy_f64"][w]
        check(abs(nll - want) < 1e-6 * max(1.0, abs(want)),
              "%s: window %d mean NLL %.6f (reference %.6f)" % (path, w, nll,
                                                               want))
    for case in ref["greedy"]["cases"][:2]:
        got, logits = model.greedy(case["prompt_ids"], ref["greedy"]["steps"])
        agree = True
        for k, (a, b) in enumerate(zip(got, case["ids"])):
            if a != b:
                agree = min(case["gaps"][:k + 1]) < 1e-3
                break
        check(agree, "%s: greedy continuation of %r" % (path, case["prompt"]))


def main():
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        check_rdata(tmp)
    check_corpus()
    base = os.environ.get("SEM_DEMO_MODEL") or os.path.join(SRC, "models",
                                                             NAME)
    for bits in (None, 8, 4):
        path = base + ("-q%d" % bits if bits else "")
        if not os.path.isdir(path):
            check(False, "%s exists" % path)
            continue
        check_model_dir(path, bits)
    if FAILS:
        print("%d check(s) failed" % len(FAILS))
        sys.exit(1)
    print("all demo checks passed")


if __name__ == "__main__":
    main()
