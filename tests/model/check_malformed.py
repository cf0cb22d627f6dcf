#!/usr/bin/python3
"""check_malformed.py - malformed model directories get clear errors.

Each case copies a generated tiny model, breaks one thing, and runs
`semantic model inspect` on it. It must exit with status 1 (not a signal:
under the ASan build a crash or a leak would show here), and stderr must
name the offending file and say what is wrong.
"""
import json
import os
import shutil
import struct
import subprocess
import sys

SRC = os.environ.get("SEM_SOURCE_DIR", ".")
BUILD = os.environ.get("SEM_BUILD_DIR", "build/release")
BIN = os.environ.get("SEM_BIN", os.path.join(BUILD, "semantic"))
PY = "/usr/bin/python3"
ST = "model.safetensors"


def gen(name, *args):
    out = os.path.join(BUILD, "models", name)
    subprocess.run([PY, os.path.join(SRC, "tools/gen_model.py"), "--shape", "tiny", "--layers", "1",
                    "--seed", "3", "--if-missing", "--quiet", "--out", out, *args], check=True)
    return out


def read_st(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    return header, data


def write_st(path, header, data, hlen=None):
    h = json.dumps(header, separators=(",", ":")).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h) if hlen is None else hlen))
        f.write(h)
        f.write(data)


def edit_header(fn):
    def apply(d):
        p = os.path.join(d, ST)
        header, data = read_st(p)
        fn(header)
        write_st(p, header, data)
    return apply


def truncate(d):
    p = os.path.join(d, ST)
    os.truncate(p, os.path.getsize(p) - 100)


def lie_offsets(h):
    t = h["model.norm.weight"]
    t["data_offsets"][1] += 1 << 20
    t["shape"] = [(t["data_offsets"][1] - t["data_offsets"][0]) // 4]


def overlap(h):
    a, b = h["model.layers.0.input_layernorm.weight"], h["model.layers.0.post_attention_layernorm.weight"]
    b["data_offsets"] = list(a["data_offsets"])


def drop(name):
    return lambda h: h.pop(name)


def wrong_shape(h):
    t = h["model.layers.0.mlp.up_proj.weight"]
    t["shape"] = list(reversed(t["shape"]))


def unknown_dtype(h):
    h["model.norm.weight"]["dtype"] = "F24"


def extra_tensor(h):
    end = max(t["data_offsets"][1] for k, t in h.items() if k != "__metadata__")
    h["model.layers.0.mystery.weight"] = {"dtype": "F32", "shape": [0], "data_offsets": [end, end]}


def edit_config(fn):
    def apply(d):
        p = os.path.join(d, "config.json")
        with open(p) as f:
            c = json.load(f)
        fn(c)
        with open(p, "w") as f:
            json.dump(c, f)
    return apply


def write_file(name, text):
    def apply(d):
        with open(os.path.join(d, name), "w") as f:
            f.write(text)
    return apply


def set_quant(bits, group):
    def fn(c):
        c["quantization"] = {"group_size": group, "bits": bits}
        c["quantization_config"] = dict(c["quantization"])
    return fn


def unset_quant(c):
    c.pop("quantization", None)
    c.pop("quantization_config", None)


# (what, base model, breaker, words that must appear in the message)
CASES = [
    ("truncated safetensors", "f32", truncate, [ST, "truncated"]),
    ("header lies about offsets", "f32", edit_header(lie_offsets), [ST, "model.norm.weight", "past the data section"]),
    ("overlapping tensors", "f32", edit_header(overlap), [ST, "overlap"]),
    ("missing tensor", "f32", edit_header(drop("model.layers.0.self_attn.k_proj.weight")), ["missing tensor", "k_proj"]),
    ("wrong shape", "f32", edit_header(wrong_shape), [ST, "up_proj", "shape"]),
    ("unknown dtype", "f32", edit_header(unknown_dtype), [ST, "unknown dtype", "F24"]),
    ("unexpected tensor", "f32", edit_header(extra_tensor), [ST, "unexpected tensor", "mystery"]),
    ("invalid config.json", "f32", write_file("config.json", "{\"architectures\": [\"LlamaForCausalLM\",}"), ["config.json", "invalid JSON"]),
    ("config.json not an object", "f32", write_file("config.json", "[1, 2]"), ["config.json", "not a JSON object"]),
    ("missing config field", "f32", edit_config(lambda c: c.pop("hidden_size")), ["config.json", "hidden_size"]),
    ("heads do not divide", "f32", edit_config(lambda c: c.update(num_key_value_heads=3)), ["config.json", "num_key_value_heads"]),
    ("absurd layer count", "f32", edit_config(lambda c: c.update(num_hidden_layers=10 ** 12)), ["config.json", "num_hidden_layers"]),
    ("unsupported architecture", "f32", edit_config(lambda c: c.update(architectures=["GPT2LMHeadModel"])), ["config.json", "unsupported architecture", "GPT2LMHeadModel"]),
    ("no config.json", "f32", lambda d: os.remove(os.path.join(d, "config.json")), ["config.json"]),
    ("no safetensors", "f32", lambda d: os.remove(os.path.join(d, ST)), ["safetensors"]),
    ("quantization bits disagree", "q4", edit_config(set_quant(8, 64)), [ST, "quantization block disagrees"]),
    ("quantization group disagrees", "q4", edit_config(set_quant(4, 32)), [ST, "quantization block disagrees"]),
    ("quantization block missing", "q4", edit_config(unset_quant), [ST, "U32", "no quantization block"]),
    ("quantization block on float weights", "f32", edit_config(set_quant(4, 64)), ["config.json", "no tensor has scales", "quantization block disagrees"]),
    ("unsupported bits", "q4", edit_config(set_quant(3, 64)), ["config.json", "bits 3"]),
    ("bad index.json", "f32", write_file("model.safetensors.index.json", "{\"weight_map\": {\"x\": \"../../etc/passwd\"}}"), ["bad shard file name", "passwd"]),
]


def main():
    failures = 0
    bases = {"f32": gen("malformed-base-f32", "--dtype", "f32"), "q4": gen("malformed-base-q4", "--dtype", "q4")}
    tmp = os.path.join(BUILD, "tmp-malformed")
    for what, base, breaker, words in CASES:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(bases[base], tmp)
        breaker(tmp)
        p = subprocess.run([BIN, "model", "inspect", tmp], capture_output=True, text=True)
        msg = p.stderr.strip()
        ok = p.returncode == 1 and all(w.lower() in msg.lower() for w in words)
        failures += not ok
        print(f"{'ok ' if ok else 'FAIL'} {what:38} exit {p.returncode}: {msg[:160]}")
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"{len(CASES) - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
