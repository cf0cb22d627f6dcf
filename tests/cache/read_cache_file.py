#!/usr/bin/python3
"""read_cache_file.py - an independent reader for Semantic's agent cache
files, written from the safetensors spec and the format description in
src/cache/cache.h, sharing no code with the project (not tools/semtools):
it parses the raw bytes itself with only the standard library and numpy.

For each file it checks what any safetensors reader relies on (8-byte
little-endian header length, a JSON object header with no duplicate keys,
known dtypes, shape x dtype size == byte span, tensors tiling the data
section), then the cache format: the metadata keys and values, the exact
tensor set with dtypes and shapes, and the CRC32C of the data section.
Version 2 files (sliding-window layers kept as a ring) add the metadata
sliding_window, sliding_layers (a '0'/'1' per layer) and ring_from (a block
boundary <= n_tokens), and a sliding layer's K/V tensors hold only
positions ring_from .. n_tokens - 1.

Files written by `test_cache_file --write-samples DIR` carry values from a
formula (below, the same one as the C side), so the reader also checks the
token ids and, per dtype, the K/V values: f16 and f32 exactly, bf16 exactly
against round-to-nearest-even, q8/q4 by dequantizing the MLX affine layout
(U32-packed weight, F16 scales and biases, group 64) within half a step.

Files written by the engine (`engine_test_families --write-ring-sample DIR`)
come with a rows file: the token ids the engine served (I32 [n_tokens]),
then per layer K then V as f32 [n_tokens - pos0, n_kv_heads, dim] (pos0 =
ring_from for a sliding layer, else 0), as the C side loads them back;
--rows checks that the file's tokens and decoded K/V equal them exactly.

Usage: read_cache_file.py FILE...            verify samples (exit 1 on any failure)
       read_cache_file.py --rows ROWS FILE   verify an engine file against its rows
       read_cache_file.py --expect-fail FILE  succeed only if FILE is rejected
"""
import json
import struct
import sys

import numpy as np

DTYPES = {"I32": ("<i4", 4), "U32": ("<u4", 4), "F16": ("<f2", 2), "BF16": ("<u2", 2),
          "F32": ("<f4", 4), "U8": ("u1", 1), "I8": ("i1", 1), "U16": ("<u2", 2),
          "I16": ("<i2", 2), "F64": ("<f8", 8), "I64": ("<i8", 8), "U64": ("<u8", 8),
          "BOOL": ("u1", 1)}
KV_BITS = {"f16": 16, "bf16": 16, "f32": 32, "q8": 8, "q4": 4}
FLOAT_ST = {"f16": "F16", "bf16": "BF16", "f32": "F32"}
GROUP = 64
META_KEYS = ["format", "version", "agent_id", "model_id", "fingerprint", "n_layers", "n_kv_heads",
             "head_dim", "v_head_dim", "block_tokens", "kv_dtype", "bits", "group_size", "n_tokens",
             "crc32c"]
RING_KEYS = ["sliding_window", "sliding_layers", "ring_from"]


class Bad(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Bad(msg)


def crc32c_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
        t.append(c)
    return t


CRC_TABLE = crc32c_table()


def crc32c(data):
    c = 0xFFFFFFFF
    t = CRC_TABLE
    for b in data:
        c = (c >> 8) ^ t[(c ^ b) & 0xFF]
    return c ^ 0xFFFFFFFF


def no_dups(pairs):
    keys = [k for k, _ in pairs]
    check(len(keys) == len(set(keys)), "duplicate keys in the header")
    return dict(pairs)


def parse_safetensors(raw):
    """-> (metadata dict, {name: (dtype, shape, bytes)}, data section)"""
    check(len(raw) >= 8, "shorter than 8 bytes")
    (n,) = struct.unpack("<Q", raw[:8])
    check(n <= len(raw) - 8, "header length %d past the end" % n)
    header = json.loads(raw[8:8 + n].decode("utf-8"), object_pairs_hook=no_dups)
    check(isinstance(header, dict), "header is not an object")
    data = raw[8 + n:]
    meta = header.pop("__metadata__", {})
    check(all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()),
          "metadata must map str to str")
    tensors, spans = {}, []
    for name, e in header.items():
        dt = e["dtype"]
        check(dt in DTYPES, "tensor %s: unknown dtype %s" % (name, dt))
        shape = e["shape"]
        check(all(isinstance(d, int) and d >= 0 for d in shape), "tensor %s: bad shape" % name)
        b, en = e["data_offsets"]
        check(0 <= b <= en <= len(data), "tensor %s: offsets outside the data" % name)
        check(int(np.prod(shape, dtype=np.int64)) * DTYPES[dt][1] == en - b,
              "tensor %s: shape x dtype != byte span" % name)
        tensors[name] = (dt, tuple(shape), data[b:en])
        spans.append((b, en, name))
    spans.sort()
    pos = 0
    for b, en, name in spans:
        check(b == pos, "tensor %s: starts at %d, expected %d (gap or overlap)" % (name, b, pos))
        pos = en
    check(pos == len(data), "tensors cover %d of %d data bytes" % (pos, len(data)))
    return meta, tensors, data


def as_array(t):
    dt, shape, b = t
    a = np.frombuffer(b, dtype=DTYPES[dt][0]).reshape(shape)
    if dt == "BF16":
        a = (a.astype(np.uint32) << 16).view(np.float32)
    return a


def canonical(meta, k):
    v = meta[k]
    check(v.isdigit() and (v == "0" or v[0] != "0"), "metadata %s=%r is not canonical" % (k, v))
    return int(v)


def check_ring(meta, ints):
    """-> per layer, the first position its tensors hold (ring_from or 0)."""
    n_layers = ints["n_layers"]
    if meta["version"] == "1":
        check(not any(k in meta for k in RING_KEYS), "version 1 with ring metadata")
        return [0] * n_layers
    for k in RING_KEYS:
        check(k in meta, "metadata %s missing (version 2)" % k)
    window, ring_from = canonical(meta, "sliding_window"), canonical(meta, "ring_from")
    sl = meta["sliding_layers"]
    check(len(sl) == n_layers and set(sl) <= {"0", "1"}, "sliding_layers %r" % sl)
    check("0" in sl and "1" in sl, "a ring needs sliding and global layers: %r" % sl)
    check(window >= 1, "sliding_window 0")
    check(ring_from <= ints["n_tokens"] and ring_from % ints["block_tokens"] == 0,
          "ring_from %d is not a block boundary within the tokens" % ring_from)
    ints.update(sliding_window=window, ring_from=ring_from)
    return [ring_from if c == "1" else 0 for c in sl]


def check_meta(meta, data):
    for k in META_KEYS:
        check(k in meta, "metadata %s missing" % k)
    check(meta["format"] == "semantic-kv", "format is %r" % meta["format"])
    check(meta["version"] in ("1", "2"), "version is %r" % meta["version"])
    ints = {}
    for k in ["n_layers", "n_kv_heads", "head_dim", "v_head_dim", "block_tokens", "bits",
              "group_size", "n_tokens"]:
        ints[k] = canonical(meta, k)
    kd = meta["kv_dtype"]
    check(kd in KV_BITS, "kv_dtype %r" % kd)
    check(ints["bits"] == KV_BITS[kd], "bits %d for %s" % (ints["bits"], kd))
    check(ints["group_size"] == (GROUP if kd in ("q8", "q4") else 0), "group_size")
    fp = meta["fingerprint"]
    check(0 < len(fp) <= 64 and all(c in "0123456789abcdef" for c in fp), "fingerprint %r" % fp)
    crc = meta["crc32c"]
    check(len(crc) == 8 and all(c in "0123456789abcdef" for c in crc), "crc32c %r" % crc)
    got = crc32c(data)
    check(got == int(crc, 16), "crc32c of the data is %08x, metadata says %s" % (got, crc))
    pos0 = check_ring(meta, ints)
    return ints, kd, pos0


def expected_tensors(ints, kd, pos0):
    n, h = ints["n_tokens"], ints["n_kv_heads"]
    want = {"tokens": ("I32", (n,))}
    for l in range(ints["n_layers"]):
        rows = n - pos0[l]
        for kv, dim in (("k", ints["head_dim"]), ("v", ints["v_head_dim"])):
            if kd in FLOAT_ST:
                want["layers.%d.%s" % (l, kv)] = (FLOAT_ST[kd], (rows, h, dim))
            else:
                want["layers.%d.%s.weight" % (l, kv)] = ("U32", (rows, h, dim * KV_BITS[kd] // 32))
                want["layers.%d.%s.scales" % (l, kv)] = ("F16", (rows, h, dim // GROUP))
                want["layers.%d.%s.biases" % (l, kv)] = ("F16", (rows, h, dim // GROUP))
    return want


def formula(p0, n, layer, heads, dim, is_v):
    """The sample writer's values for positions p0..n-1: [n - p0, heads, dim]
    float32, exact in f16."""
    p = np.arange(p0, n).reshape(n - p0, 1, 1)
    h = np.arange(heads).reshape(1, heads, 1)
    d = np.arange(dim).reshape(1, 1, dim)
    if is_v:
        x = p * 5 + layer * 11 + h * 17 + d * 7 + 100
    else:
        x = p * 7 + layer * 13 + h * 31 + d * 3
    return ((x % 2048 - 1024) / 256.0).astype(np.float32)


def bf16_round(x):
    b = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    b = ((b + 0x7FFF + ((b >> 16) & 1)) >> 16).astype(np.uint32)
    return (b << 16).view(np.float32)


def dequant(tensors, name, bits, dim):
    w = as_array(tensors[name + ".weight"])
    s = as_array(tensors[name + ".scales"]).astype(np.float32)
    b = as_array(tensors[name + ".biases"]).astype(np.float32)
    per = 32 // bits
    c = np.arange(dim)
    q = (w[..., c // per] >> (bits * (c % per)).astype(np.uint32)) & ((1 << bits) - 1)
    g = c // GROUP
    return s[..., g] * q.astype(np.float32) + b[..., g], s[..., g]


def decode(tensors, name, kd, dim):
    """A K or V tensor as float32 [rows, heads, dim], the way the pool reads it."""
    if kd in FLOAT_ST:
        return as_array(tensors[name]).astype(np.float32)
    return dequant(tensors, name, KV_BITS[kd], dim)[0]


def check_values(tensors, ints, kd, pos0):
    n = ints["n_tokens"]
    toks = as_array(tensors["tokens"])
    check(np.array_equal(toks, (np.arange(n) * 37 + 11) % 50000), "token ids differ")
    worst = 0.0
    for l in range(ints["n_layers"]):
        for kv, dim in (("k", ints["head_dim"]), ("v", ints["v_head_dim"])):
            want = formula(pos0[l], n, l, ints["n_kv_heads"], dim, kv == "v")
            name = "layers.%d.%s" % (l, kv)
            if kd in ("f16", "f32"):
                got = as_array(tensors[name]).astype(np.float32)
                check(np.array_equal(got, want), "%s differs from the formula" % name)
            elif kd == "bf16":
                got = as_array(tensors[name])
                check(np.array_equal(got, bf16_round(want)), "%s differs from bf16(formula)" % name)
            else:
                got, scale = dequant(tensors, name, KV_BITS[kd], dim)
                err = np.abs(got - want)
                # half a quantization step, plus the F16 rounding of the bias
                bound = 0.5 * scale * 1.001 + np.abs(want) * 2.0 ** -10 + 1e-6
                check(np.all(err <= bound), "%s: dequantized error %g above the bound" % (name, err.max()))
                worst = max(worst, float((err / (scale + 1e-12)).max()))
    return worst


def check_rows(tensors, ints, kd, pos0, rows_path):
    """The engine file's tokens and decoded K/V against the C side's rows."""
    n, h = ints["n_tokens"], ints["n_kv_heads"]
    rows = open(rows_path, "rb").read()
    check(len(rows) >= 4 * n, "%s: shorter than the tokens" % rows_path)
    check(np.array_equal(as_array(tensors["tokens"]), np.frombuffer(rows[:4 * n], "<i4")),
          "token ids differ from the engine's")
    at = 4 * n
    for l in range(ints["n_layers"]):
        for kv, dim in (("k", ints["head_dim"]), ("v", ints["v_head_dim"])):
            shape = (n - pos0[l], h, dim)
            size = 4 * int(np.prod(shape))
            check(at + size <= len(rows), "%s: ends inside layer %d %s" % (rows_path, l, kv))
            want = np.frombuffer(rows[at:at + size], "<f4").reshape(shape)
            at += size
            got = decode(tensors, "layers.%d.%s" % (l, kv), kd, dim)
            bad = np.argwhere(got != want)
            check(len(bad) == 0, "layers.%d.%s: %d values differ from the C side's, first at "
                  "position %d" % (l, kv, len(bad), pos0[l] + bad[0][0] if len(bad) else 0))
    check(at == len(rows), "%s: %d bytes past the last layer" % (rows_path, len(rows) - at))


def verify(path, rows_path=None):
    raw = open(path, "rb").read()
    meta, tensors, data = parse_safetensors(raw)
    ints, kd, pos0 = check_meta(meta, data)
    want = expected_tensors(ints, kd, pos0)
    check(set(tensors) == set(want), "tensor set differs: extra %s, missing %s" %
          (sorted(set(tensors) - set(want))[:3], sorted(set(want) - set(tensors))[:3]))
    for name, (dt, shape) in want.items():
        check(tensors[name][:2] == (dt, shape), "tensor %s is %s %s, expected %s %s" %
              (name, tensors[name][0], tensors[name][1], dt, shape))
    extra = ""
    if rows_path:
        check_rows(tensors, ints, kd, pos0, rows_path)
        extra = " equal to %s" % rows_path
    else:
        check(meta["agent_id"] == "agent-" + kd, "agent_id %r" % meta["agent_id"])
        check(meta["model_id"] == "mlx-community/Test-Model-4bit", "model_id %r" % meta["model_id"])
        worst = check_values(tensors, ints, kd, pos0)
        if kd in ("q8", "q4"):
            extra = " worst error %.3f step" % worst
    if meta["version"] == "2":
        extra += "; ring: sliding_layers %s, sliding_window %d, ring_from %d" % (
            meta["sliding_layers"], ints["sliding_window"], ints["ring_from"])
    print("ok %s: version %s, %s, %d layers, %d tokens, %d tensors, %d data bytes, crc32c %s%s" %
          (path, meta["version"], kd, ints["n_layers"], ints["n_tokens"], len(tensors), len(data),
           meta["crc32c"], extra))


def main(argv):
    rows = None
    if len(argv) >= 3 and argv[1] == "--rows":
        rows, argv = argv[2], argv[:1] + argv[3:]
    if len(argv) == 3 and argv[1] == "--expect-fail":
        try:
            verify(argv[2], rows)
        except (Bad, ValueError, KeyError) as e:
            print("rejected as expected: %s: %s" % (argv[2], e))
            return 0
        print("FAIL: %s was accepted" % argv[2])
        return 1
    if len(argv) < 2:
        print(__doc__)
        return 2
    rc = 0
    for p in argv[1:]:
        try:
            verify(p, rows)
        except (Bad, ValueError, KeyError) as e:
            print("FAIL %s: %s" % (p, e))
            rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv))
