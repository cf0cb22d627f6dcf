#!/usr/bin/python3
"""ref_selfcheck.py - self-checks of the Python model tools (tools/): the
safetensors reader/writer, MLX quantization, the model generator and the
numpy reference forward pass. Each check can fail; the whole run takes a
few seconds on the tiny shapes.

Run: /usr/bin/python3 tests/tools/ref_selfcheck.py   (ctest: tools/ref_selfcheck)
Uses $SEM_BUILD_DIR/tmp-ref-selfcheck (or a temp dir) as scratch space.
"""
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np

SRC = os.environ.get("SEM_SOURCE_DIR") or os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
TOOLS = os.path.join(SRC, "tools")
sys.path.insert(0, TOOLS)
from semtools import mlx_quant as mq  # noqa: E402
from semtools import reference as ref  # noqa: E402
from semtools import safetensors_np as st  # noqa: E402

PY = "/usr/bin/python3"
FAILS = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        FAILS.append(what)


def raises(fn, exc=ValueError):
    try:
        fn()
    except exc:
        return True
    return False


def run(args):
    p = subprocess.run([PY] + args, capture_output=True, text=True)
    if p.returncode != 0:
        print(p.stdout, p.stderr)
        raise SystemExit("FAIL: %s exited %d" % (" ".join(args), p.returncode))
    return p.stdout, p.stderr


# ------------------------------------------------------------ safetensors --

def check_safetensors(tmp):
    rng = np.random.default_rng(1)
    t = {
        "f32": rng.standard_normal((3, 5)).astype(np.float32),
        "bf16": ("BF16", st.f32_to_bf16(rng.standard_normal(7))),
        "f16": rng.standard_normal((2, 3)).astype(np.float16),
        "f64": np.array(3.25),
        "i64": np.arange(-2, 3, dtype=np.int64),
        "i32": np.arange(4, dtype=np.int32),
        "u32": np.array([0, 0xFFFFFFFF], dtype=np.uint32),
        "u8": np.arange(3, dtype=np.uint8),
        "empty": np.zeros((0, 4), np.float32),
    }
    path = os.path.join(tmp, "a.safetensors")
    st.save_file(path, t, {"format": "pt", "note": "x"})
    raw = open(path, "rb").read()
    hlen = struct.unpack("<Q", raw[:8])[0]
    check(hlen % 8 == 0 and raw[8:9] == b"{", "header padded to 8 bytes and starts with {")
    with st.SafetensorsFile(path) as f:
        check(f.names() == list(t), "tensor order is insertion order")
        check(f.metadata == {"format": "pt", "note": "x"}, "__metadata__ round trip")
        same = all(np.array_equal(f.get(k), v[1] if isinstance(v, tuple) else v) for k, v in t.items())
        check(same, "every dtype round-trips bit-exactly")
        check(f.dtype("bf16") == "BF16" and f.shape("f64") == (), "dtype and scalar shape")
    # bf16 rounding: ties to even, NaN stays NaN, exactness of representable values
    x = np.array([1.0, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -8 + 2 ** -20, -2.5, np.inf, np.nan],
                 np.float32)
    y = st.bf16_to_f32(st.f32_to_bf16(x))
    check(list(y[:6]) == [1.0, 1.0, 1 + 4 * 2 ** -8, 1 + 2 * 2 ** -8, -2.5, np.inf] and np.isnan(y[6]),
          "bf16 rounds to nearest even")
    # malformed files are rejected
    def variant(mutate):
        h = json.loads(raw[8:8 + hlen])
        mutate(h)
        hb = json.dumps(h).encode()
        p = os.path.join(tmp, "bad.safetensors")
        with open(p, "wb") as fo:
            fo.write(struct.pack("<Q", len(hb)) + hb + raw[8 + hlen:])
        return lambda: st.SafetensorsFile(p)
    check(raises(variant(lambda h: h["f32"].update(data_offsets=[4, 64]))), "reader rejects overlap")
    check(raises(variant(lambda h: h["f32"].update(dtype="F99"))), "reader rejects unknown dtype")
    check(raises(variant(lambda h: h["f32"].update(shape=[3, 6]))), "reader rejects size mismatch")
    check(raises(variant(lambda h: h.pop("u8"))), "reader rejects a hole in the data")
    p = os.path.join(tmp, "trunc.safetensors")
    open(p, "wb").write(raw[:-1])
    check(raises(lambda: st.SafetensorsFile(p)), "reader rejects a truncated file")
    # streaming writer: chunks in any order; refuses to finish short
    specs = [("a", "F32", (4, 3)), ("b", "BF16", (5,))]
    p = os.path.join(tmp, "s.safetensors")
    w = st.SafetensorsWriter(p, specs)
    a = np.arange(12, dtype=np.float32).reshape(4, 3)
    w.write("b", st.f32_to_bf16(np.ones(5)))
    w.write("a", a[2:], 6)
    w.write("a", a[:2], 0)
    w.close()
    with st.SafetensorsFile(p) as f:
        check(np.array_equal(f.get("a"), a), "streaming writer assembles out-of-order chunks")
    w = st.SafetensorsWriter(p + "2", specs)
    w.write("a", a)
    check(raises(w.close) and not os.path.exists(p + "2"), "writer refuses a tensor left unwritten")
    # sharded dir: index + reader
    d = os.path.join(tmp, "sharded")
    os.makedirs(d)
    specs = [("t%d" % i, "F32", (i + 1, 8)) for i in range(7)]
    with st.ModelWriter(d, specs, 3, {"format": "pt"}) as mw:
        for n, _, shp in specs:
            mw.write(n, np.full(shp, float(n[1:]), np.float32))
    idx = json.load(open(os.path.join(d, st.INDEX_NAME)))
    files = sorted(set(idx["weight_map"].values()))
    check(files == ["model-0000%d-of-00003.safetensors" % i for i in (1, 2, 3)],
          "shards named model-0000i-of-00003.safetensors")
    check(idx["metadata"]["total_size"] == sum(st.nbytes_of(dt, s) for _, dt, s in specs),
          "index total_size")
    with st.open_weights(d) as mwr:
        check(sorted(mwr.names()) == sorted(n for n, _, _ in specs) and
              all(mwr.get(n)[0, 0] == float(n[1:]) for n, _, _ in specs),
              "sharded directory reads back through the index")


# -------------------------------------------------------------- quantize --

def check_quant():
    rng = np.random.default_rng(2)
    ok_bound = ok_edge = True
    for dt in ("F32", "F16", "BF16"):
        for bits in (4, 8):
            for gs in (32, 64, 128):
                w = (rng.standard_normal((16, 256)) * rng.uniform(0.01, 2)).astype(np.float32)
                wq, s, b = mq.quantize(w, gs, bits, dt)
                ok_shape = wq.shape == (16, 256 * bits // 32) and s.shape == (16, 256 // gs)
                d = mq.dequantize(wq, s, b, gs, bits, np.float64)
                wr = st.round_to_dtype(w, dt).astype(np.float64)
                err = np.abs(d - wr).reshape(16, -1, gs).max(-1)
                ok_bound &= ok_shape and bool((err <= mq.error_bound(s, bits, dt)).all())
                # the larger-magnitude extreme of each group is exact
                g = wr.reshape(16, -1, gs)
                i = np.abs(g).argmax(-1)
                ext = np.take_along_axis(g, i[..., None], -1)
                got = np.take_along_axis(d.reshape(16, -1, gs), i[..., None], -1)
                ok_edge &= bool(np.array_equal(ext, got) or dt != "F32")
    check(ok_bound, "quantize->dequantize error within bound (bits 4/8, groups 32/64/128, f32/f16/bf16)")
    check(ok_edge, "the dominant extreme of every group is exact (f32 scales)")
    q = (np.arange(32, dtype=np.uint32) % 16).reshape(1, 32)
    check(mq.pack(q, 4)[0, :2].tolist() == [0x76543210, 0xFEDCBA98], "4-bit packing: element c at bits 4*(c%8)")
    check(mq.pack(q[:, :8] * 16, 8)[0].tolist() == [0x30201000, 0x70605040], "8-bit packing: element c at bits 8*(c%4)")
    check(np.array_equal(mq.unpack(mq.pack(q, 4), 4), q), "unpack inverts pack")
    z = np.zeros((1, 64), np.float32)
    wq, s, b = mq.quantize(z, 64, 4, "F16")
    check(np.all(mq.dequantize(wq, s, b, 64, 4) == 0) and b[0, 0] == 0, "all-zero group is exact")
    c = np.full((1, 64), -0.75, np.float32)
    wq, s, b = mq.quantize(c, 64, 4, "F16")
    check(np.all(mq.dequantize(wq, s, b, 64, 4) == -0.75), "constant group is exact")
    # hand-computed group: min -1, max 0.5 -> scale 0.1, edge -1 -> q0=-10, scale 0.1 (f32)
    v = np.linspace(-1, 0.5, 32, dtype=np.float32).reshape(1, 32)
    wq, s, b = mq.quantize(v, 32, 4, "F32", "cpu")
    check(abs(s[0, 0] - np.float32(1.0) / np.float32(10)) < 1e-7 and b[0, 0] == -1.0,
          "scale/bias as MLX picks them (edge = -1, q0 = -10)")
    # symmetric group: w_max dominates, negative scale, |q0| rounds up -> min clipped by one step
    v = np.array([[-7.5, 7.5] + [0.0] * 30], np.float32)  # scale0 = 1, edge/scale0 = -7.5
    wq, s, b = mq.quantize(v, 32, 4, "F32", "cpu")
    d = mq.dequantize(wq, s, b, 32, 4)
    check(s[0, 0] == -0.9375 and b[0, 0] == 7.5 and d[0, 1] == 7.5 and d[0, 0] == 7.5 - 15 * 0.9375,
          "symmetric group: negative scale, max exact, min clipped by a step (MLX behaviour)")
    # backends differ on exact .5 ties only
    v = np.array([[0.0, 1.0, 1.5, 2.5, 3.0] + [0.0] * 27], np.float32) * np.float32(-1)
    a = mq.dequantize(*mq.quantize(v, 32, 2, "F32", "cpu"), 32, 2)
    m = mq.dequantize(*mq.quantize(v, 32, 2, "F32", "metal"), 32, 2)
    check(not np.array_equal(a, m), "metal (half away) and cpu (half even) rounding differ on ties")


# ---------------------------------------------------------------- models --

def gen(out, *args):
    run([os.path.join(TOOLS, "gen_model.py"), "--quiet", "--out", out, "--layers", "2",
         "--seed", "11"] + list(args))
    return out


def check_models(tmp):
    f32 = gen(os.path.join(tmp, "f32"), "--untied")
    f32b = gen(os.path.join(tmp, "f32b"), "--untied", "--shards", "3")
    q4 = gen(os.path.join(tmp, "q4"), "--untied", "--arch", "llama", "--dtype", "q4",
             "--group-size", "32", "--quant-override", "model.layers.1.mlp.down_proj=8:64",
             "--quant-override", "model.layers.0.mlp.up_proj=none", "--shards", "2")
    cfg = json.load(open(os.path.join(f32, "config.json")))
    check(cfg["architectures"] == ["LlamaForCausalLM"] and cfg["num_hidden_layers"] == 2
          and cfg["tie_word_embeddings"] is False and cfg["torch_dtype"] == "float32",
          "config.json fields")
    with st.open_weights(f32) as a, st.open_weights(f32b) as b:
        same = sorted(a.names()) == sorted(b.names()) and all(
            np.array_equal(a.get(n), b.get(n)) for n in a.names())
        check(same and len(b.files) == 3, "sharding does not change any tensor")
        check(a.metadata == {"format": "pt"}, "float model metadata format=pt")
        expect = {"model.embed_tokens.weight", "lm_head.weight", "model.norm.weight"}
        check(expect <= set(a.names()) and "model.layers.1.mlp.down_proj.weight" in a,
              "HF tensor names")
    f32c = gen(os.path.join(tmp, "f32c"), "--untied")
    check(open(os.path.join(f32, "model.safetensors"), "rb").read() ==
          open(os.path.join(f32c, "model.safetensors"), "rb").read(), "generation is deterministic")
    qcfg = json.load(open(os.path.join(q4, "config.json")))
    qb = qcfg["quantization"]
    check(qb["bits"] == 4 and qb["group_size"] == 32 and
          qb["model.layers.1.mlp.down_proj"] == {"group_size": 64, "bits": 8} and
          "model.layers.0.mlp.up_proj" not in qb and qcfg["quantization_config"] == qb,
          "quantization block with per-module override")
    with st.open_weights(q4) as w:
        check(w.metadata == {"format": "mlx"} and w.dtype("model.embed_tokens.weight") == "U32" and
              w.dtype("model.embed_tokens.scales") == "F16" and
              w.shape("model.layers.1.mlp.down_proj.weight") == (256, 512 * 8 // 32) and
              w.dtype("model.layers.0.mlp.up_proj.weight") == "F16" and
              "model.layers.0.mlp.up_proj.scales" not in w and
              w.dtype("model.norm.weight") == "F16", "quantized tensors, dtypes and the float override")
    # the q4 model holds the f32 model's weights, quantized (same seed -> same draws)
    mf, mq4 = ref.Model(f32), ref.Model(q4)
    worst = 0.0
    for key in ("wq", "wk", "wv", "wo", "wg", "wd"):
        for li in range(2):
            exact = st.round_to_dtype(mf.L[li][key], "F16").astype(np.float64)
            worst = max(worst, float(np.abs(mq4.L[li][key] - exact).max() /
                                     np.abs(exact).max()))
    check(0 < worst < 0.2, "q4 weights dequantize close to the f32 draws (worst rel %.3f)" % worst)
    check(np.array_equal(mq4.L[0]["wu"], st.round_to_dtype(mf.L[0]["wu"], "F16")),
          "unquantized override module holds the f16-rounded draws")
    return f32, q4, mf, mq4


# ------------------------------------------------------------- reference --

def naive_forward(m, ids):
    """Token-by-token, head-by-head loops: an independent path to logits."""
    H, hd = m.hidden, m.head_dim
    rep = m.heads // m.kv_heads
    ks = [[] for _ in m.L]
    vs = [[] for _ in m.L]
    out = []
    for pos, t in enumerate(ids):
        x = m.embed[t].astype(np.float64).copy()
        for li, L in enumerate(m.L):
            h = x / math.sqrt(float(np.dot(x, x)) / H + m.eps) * L["in_norm"]
            q = L["wq"] @ h + (L["bq"] if L["bq"] is not None else 0)
            k = L["wk"] @ h + (L["bk"] if L["bk"] is not None else 0)
            v = L["wv"] @ h + (L["bv"] if L["bv"] is not None else 0)

            def rot(vec):
                r = vec.copy()
                for i in range(hd // 2):
                    a = pos * m.inv_freq[i]
                    x1, x2 = vec[i], vec[i + hd // 2]
                    r[i] = x1 * math.cos(a) - x2 * math.sin(a)
                    r[i + hd // 2] = x2 * math.cos(a) + x1 * math.sin(a)
                return r
            q = np.concatenate([rot(q[j * hd:(j + 1) * hd]) for j in range(m.heads)])
            k = np.concatenate([rot(k[j * hd:(j + 1) * hd]) for j in range(m.kv_heads)])
            ks[li].append(k)
            vs[li].append(v)
            att = np.zeros(m.heads * hd)
            for hh in range(m.heads):
                g = hh // rep
                qh = q[hh * hd:(hh + 1) * hd]
                sc = np.array([np.dot(qh, kk[g * hd:(g + 1) * hd]) / math.sqrt(hd) for kk in ks[li]])
                p = np.exp(sc - sc.max())
                p /= p.sum()
                att[hh * hd:(hh + 1) * hd] = sum(pp * vv[g * hd:(g + 1) * hd]
                                                 for pp, vv in zip(p, vs[li]))
            x = x + L["wo"] @ att
            h = x / math.sqrt(float(np.dot(x, x)) / H + m.eps) * L["post_norm"]
            gt, up = L["wg"] @ h, L["wu"] @ h
            x = x + L["wd"] @ (gt / (1 + np.exp(-gt)) * up)
        x = x / math.sqrt(float(np.dot(x, x)) / H + m.eps) * m.norm
        out.append(m.lm_head @ x)
    return np.array(out)


def check_reference(tmp, f32, q4, mf, mq4):
    rng = np.random.default_rng(3)
    ids = [int(t) for t in rng.integers(0, 1024, 40)]
    full = mf.forward(ids, mf.new_cache())
    scale = np.abs(full).max()
    pre = mf.forward(ids[:17], mf.new_cache())
    check(np.abs(pre - full[:17]).max() <= 1e-12 * scale, "causal: a prefix's logits equal the full run's")
    c = mf.new_cache()
    mf.forward(ids[:23], c)
    inc = mf.forward(ids[23:], c)
    check(np.abs(inc - full[23:]).max() <= 1e-12 * scale, "KV-cache continuation equals the full run")
    nv = naive_forward(mf, ids[:6])
    check(np.abs(nv - full[:6]).max() <= 1e-10 * scale, "vectorized forward equals a naive per-head loop")
    qw = gen(os.path.join(tmp, "qwen"), "--arch", "qwen2", "--rope-scaling", "llama3")
    mqw = ref.Model(qw)
    check(mqw.L[0]["bq"] is not None and np.abs(mqw.L[0]["bk"]).max() > 0, "qwen2 q/k/v biases loaded")
    fq = mqw.forward(ids[:6], mqw.new_cache())
    check(np.abs(naive_forward(mqw, ids[:6]) - fq).max() <= 1e-10 * np.abs(fq).max(),
          "qwen2 + llama3 rope: vectorized equals naive")
    # RoPE: identity at position 0, relative-position property
    x = rng.standard_normal((1, 3, 64))
    cos, sin = ref.rope_cos_sin(mf.inv_freq, [0])
    check(np.array_equal(ref.apply_rope(x, cos, sin), x), "RoPE at position 0 is the identity")
    qv, kv = rng.standard_normal((1, 1, 64)), rng.standard_normal((1, 1, 64))

    def dot_at(pq, pk):
        cq, sq = ref.rope_cos_sin(mf.inv_freq, [pq])
        ck, sk = ref.rope_cos_sin(mf.inv_freq, [pk])
        return float(np.sum(ref.apply_rope(qv, cq, sq) * ref.apply_rope(kv, ck, sk)))
    check(abs(dot_at(9, 4) - dot_at(105, 100)) < 1e-9, "RoPE scores depend on relative position only")
    # llama3 scaling (HF formula): high freqs kept, low freqs / factor, smooth in between
    rs = {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
          "original_max_position_embeddings": 256, "rope_type": "llama3"}
    base = ref.rope_inv_freq(64, 10000.0, None)
    sc = ref.rope_inv_freq(64, 10000.0, rs)
    wl = 2 * math.pi / base
    hi, lo = wl < 64, wl > 256
    mid = ~hi & ~lo
    smooth = (256 / wl[mid] - 1) / 3
    check(np.array_equal(sc[hi], base[hi]) and np.allclose(sc[lo], base[lo] / 8) and mid.any()
          and np.allclose(sc[mid], (1 - smooth) * base[mid] / 8 + smooth * base[mid]),
          "llama3 rope scaling matches the HF formula")
    # quantized model runs and differs from f32 only by quantization noise
    lq = mq4.forward(ids[:10], mq4.new_cache())
    rel = np.abs(lq - full[:10]).max() / scale
    check(0 < rel < 0.5, "q4 logits near the f32 model's (max rel diff %.3f)" % rel)
    # CLI contract
    out = os.path.join(tmp, "l.f32")
    gout = os.path.join(tmp, "g.f32")
    toks = ",".join(map(str, ids))
    so, se = run([os.path.join(TOOLS, "ref_forward.py"), "--model", f32, "--tokens", toks,
                  "--out", out, "--greedy", "6", "--greedy-out", gout, "--gaps", "--top", "3"])
    got = np.fromfile(out, dtype="<f4").reshape(-1, mf.vocab)
    check(got.shape == (40, mf.vocab) and np.allclose(got, full, rtol=1e-6, atol=1e-5)
          and "logits [40][%d]" % mf.vocab in se, "--out writes [n][vocab] float32 and logs the shape")
    greedy = [int(t) for t in [l for l in so.splitlines() if l.startswith("greedy:")][0][7:].split(",")]
    steps = np.fromfile(gout, dtype="<f4").reshape(6, mf.vocab)
    check(len(greedy) == 6 and greedy == [int(np.argmax(r)) for r in steps] and
          greedy[0] == int(np.argmax(full[-1])), "--greedy ids are the argmax of --greedy-out rows")
    recomputed = mf.forward(ids + greedy, mf.new_cache())
    check([int(np.argmax(r)) for r in recomputed[39:45]] == greedy,
          "greedy with KV cache equals recomputing the whole sequence")
    top = [l for l in so.splitlines() if l.startswith("top:")][0]
    check(int(top[5:].split(":")[0]) == greedy[0], "--top lists the argmax first")
    run([os.path.join(TOOLS, "ref_forward.py"), "--model", q4, "--tokens", toks[:40],
         "--out", out, "--last-only"])
    last = np.fromfile(out, dtype="<f4")
    want = mq4.forward([int(t) for t in toks[:40].split(",") if t], mq4.new_cache())[-1]
    check(last.shape == (mq4.vocab,) and np.allclose(last, want, rtol=1e-6, atol=1e-5),
          "--last-only writes one row (quantized, sharded model)")


def main():
    build = os.environ.get("SEM_BUILD_DIR")
    tmp = os.path.join(build, "tmp-ref-selfcheck") if build else tempfile.mkdtemp()
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        check_safetensors(tmp)
        check_quant()
        f32, q4, mf, mq4 = check_models(tmp)
        check_reference(tmp, f32, q4, mf, mq4)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("%s: %d failure(s)" % ("PASS" if not FAILS else "FAIL", len(FAILS)))
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
