#!/usr/bin/python3
"""bench_swap.py - model swap latency of `semantic serve`, step by step.

Swaps between the SmolLM2-135M-, Qwen2.5-0.5B- and Llama-3.2-1B-shaped q4
models (generated with tools/gen_model.py into models/gen/swap/ if missing,
each with a real tokenizer: llama2's for the SmolLM2 shape (its vocabulary
of 49152 is kept), qwen3's for Qwen2.5, llama3's for Llama 3.2), in all six
directions, once with a warm page cache (the target's files read just
before) and once with a cold one (the target's files dropped from the page
cache with posix_fadvise(POSIX_FADV_DONTNEED) just before; they are not
mapped by anyone then, since the target is not loaded). One walk
S->Q->L->S->L->Q->S covers the six directions. Prints each swap's eight
steps in milliseconds (as POST /admin/models/swap reports them) and the
page-cache residency of the target's files before the swap.

Usage: tools/bench_swap.py [--bin build/release/semantic] [--models-dir models/gen/swap]
                           [--models A,B,C] [--threads N] [--rounds N]
Only the Python standard library; the server runs with --cache-dir none.
"""
import argparse
import ctypes
import ctypes.util
import json
import mmap
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = [("smollm2-135m", "llama2"), ("qwen2.5-0.5b", "qwen3"), ("llama-3.2-1b", "llama3")]
STEPS = ["drain", "evict", "shutdown", "unload", "load", "reconfigure", "update_tag", "reinit"]
ADMIN_KEY = "bench-swap"


def ensure_models(models_dir, names):
    for shape, tok in MODELS:
        if shape not in names:
            continue
        out = os.path.join(models_dir, shape)
        if os.path.exists(os.path.join(out, "config.json")):
            continue
        print("generating %s (q4, tokenizer %s) into %s ..." % (shape, tok, out), flush=True)
        subprocess.run(["/usr/bin/python3", os.path.join(REPO, "tools/gen_model.py"), "--shape", shape,
                        "--tokenizer", tok, "--dtype", "q4", "--out", out, "--if-missing", "--quiet"],
                       check=True)


def model_files(models_dir, name):
    d = os.path.join(models_dir, name)
    return [os.path.join(d, f) for f in sorted(os.listdir(d)) if os.path.isfile(os.path.join(d, f))]


_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
MAP_FAILED = ctypes.c_void_p(-1).value


def resident_fraction(paths):
    """Share of the files' pages in the page cache (mincore over a fresh read-only mapping)."""
    total = resident = 0
    page = mmap.PAGESIZE
    for p in paths:
        size = os.path.getsize(p)
        if size == 0:
            continue
        fd = os.open(p, os.O_RDONLY)
        try:
            a = _libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
            if a is None or a == MAP_FAILED:
                continue
            n = (size + page - 1) // page
            vec = (ctypes.c_ubyte * n)()
            if _libc.mincore(a, size, vec) == 0:
                resident += sum(b & 1 for b in vec)
                total += n
            _libc.munmap(a, size)
        finally:
            os.close(fd)
    return resident / total if total else 0.0


def drop_from_page_cache(paths):
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def read_into_page_cache(paths):
    for p in paths:
        with open(p, "rb") as f:
            while f.read(1 << 22):
                pass


def http(url, method="GET", body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json", "X-Admin-Key": ADMIN_KEY})
    try:
        with urllib.request.urlopen(req, timeout=900) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def start_server(args, first, tmp):
    port_file = os.path.join(tmp, "port")
    log = open(os.path.join(tmp, "server.log"), "w")
    cmd = [args.bin, "serve", "--models-dir", args.models_dir, "--model", first, "--cache-dir", "none",
           "--hf-cache", "/nonexistent", "--port", "0", "--port-file", port_file, "--log-level", "warn"]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log,
                            env=dict(os.environ, SEMANTIC_ADMIN_KEY=ADMIN_KEY))
    deadline = time.time() + 600
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit("server exited early; see %s" % log.name)
        if os.path.exists(port_file) and open(port_file).read().strip():
            url = "http://127.0.0.1:%s" % open(port_file).read().strip()
            try:
                if urllib.request.urlopen(url + "/health/ready", timeout=5).status == 200:
                    return proc, url
            except (urllib.error.URLError, ConnectionError):
                pass
        time.sleep(0.1)
    proc.kill()
    sys.exit("server never became ready")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.path.join(REPO, "build/release/semantic"))
    ap.add_argument("--models-dir", default=os.path.join(REPO, "models/gen/swap"))
    ap.add_argument("--models", default=",".join(m[0] for m in MODELS),
                    help="three model ids under --models-dir (default: the three shapes)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    names = args.models.split(",")
    if len(names) != 3:
        sys.exit("--models: three ids")
    s, q, l = names
    walk = [s, q, l, s, l, q, s]  # every ordered pair once
    ensure_models(args.models_dir, names)
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print("semantic swap latency: %s, %d cpus, %s" % (cpu, os.cpu_count(), platform.release()))
    for name in names:
        mib = sum(os.path.getsize(p) for p in model_files(args.models_dir, name)) / 1048576
        print("  %-14s %7.1f MiB on disk" % (name, mib))
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_server(args, s, tmp)
        try:
            header = "%-5s %-28s %6s %9s " % ("cache", "swap", "cached", "total") + \
                " ".join("%11s" % s for s in STEPS)
            print(header)
            for rnd in range(args.rounds):
                for mode in ("warm", "cold"):
                    for src, dst in zip(walk, walk[1:]):
                        files = model_files(args.models_dir, dst)
                        if mode == "cold":
                            drop_from_page_cache(files)
                        else:
                            read_into_page_cache(files)
                        frac = resident_fraction(files)
                        st, res = http(url + "/admin/models/swap", "POST", {"model_id": dst, "timeout_seconds": 600})
                        if st != 200:
                            sys.exit("swap %s -> %s failed: %d %s" % (src, dst, st, json.dumps(res)))
                        ms = {x["name"]: x["ms"] for x in res["steps"]}
                        print("%-5s %-28s %5.0f%% %9.1f " % (mode, "%s -> %s" % (src, dst), 100 * frac, res["duration_ms"]) +
                              " ".join("%11.1f" % ms.get(s, 0) for s in STEPS), flush=True)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)


if __name__ == "__main__":
    main()
