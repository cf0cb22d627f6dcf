"""safetensors_np: read and write safetensors files with numpy only.

Format (https://huggingface.co/docs/safetensors): 8-byte little-endian u64 N,
then N bytes of UTF-8 JSON {name: {"dtype", "shape", "data_offsets": [b, e]},
"__metadata__": {str: str}}, then the data buffer. Offsets are relative to
the start of the data buffer, which must be covered without holes or
overlaps. The header may be padded with trailing spaces; we pad it so the
data buffer starts 8-byte aligned.

Invariants kept here:
  * BF16 tensors travel as raw uint16 arrays (numpy has no bfloat16);
    f32_to_bf16 / bf16_to_f32 convert, rounding to nearest-even.
  * Readers validate the header completely (dtype, shape, offsets, bounds,
    coverage) before handing out any array; arrays are read-only views of an
    mmap, so huge files never need to sit in memory.
  * Writers know every tensor's dtype and shape up front, write the header
    first and then accept the data in any order and in chunks (write at an
    element offset), so big models stream tensor by tensor. The file is
    written to a temporary name and renamed into place on close(); close()
    refuses to finish unless every byte of every tensor was written.
  * Sharded model dirs follow the HF / mlx-lm layout:
    model-00001-of-0000N.safetensors + model.safetensors.index.json
    {"metadata": {"total_size": bytes}, "weight_map": {name: file}}.

Single-threaded; no global state.
"""

import json
import mmap
import os
import struct

import numpy as np

# safetensors dtype name -> little-endian numpy dtype of the stored element.
DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),  # raw bits; see bf16_to_f32
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"),
    "U32": np.dtype("<u4"),
    "U16": np.dtype("<u2"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}

FLOAT_DTYPES = ("F64", "F32", "F16", "BF16")

MAX_HEADER_BYTES = 100 * 1024 * 1024  # same cap as the reference implementation
INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"


# ---------------------------------------------------------------- bf16 ----

def f32_to_bf16(x):
    """float array -> uint16 bf16 bits, round to nearest even; NaN stays a
    quiet NaN with its sign; +-inf and overflow to inf behave as in IEEE."""
    a = np.ascontiguousarray(x, dtype=np.float32)
    u = a.view(np.uint32)
    rounded = (u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
    out = rounded.astype(np.uint16)
    nan = np.isnan(a)
    if nan.any():
        out[nan] = ((u[nan] >> np.uint32(16)) | np.uint32(0x0040)).astype(np.uint16)
    return out


def bf16_to_f32(b):
    """uint16 bf16 bits -> float32 (exact)."""
    u = np.ascontiguousarray(b, dtype=np.uint16).astype(np.uint32) << np.uint32(16)
    return u.view(np.float32)


def round_to_dtype(x, dtype):
    """Round a float array to what the safetensors dtype can hold, returned
    as float32 (F32 unchanged, F16 via numpy's RNE cast, BF16 via RNE)."""
    x = np.asarray(x, dtype=np.float32)
    if dtype == "F32":
        return x
    if dtype == "F16":
        return x.astype(np.float16).astype(np.float32)
    if dtype == "BF16":
        return bf16_to_f32(f32_to_bf16(x))
    raise ValueError("round_to_dtype: not a float dtype: %s" % dtype)


def encode_float(x, dtype):
    """float array -> array holding the stored representation of dtype."""
    if dtype == "F64":
        return np.asarray(x, dtype=np.float64)
    if dtype == "F32":
        return np.asarray(x, dtype=np.float32)
    if dtype == "F16":
        return np.asarray(x, dtype=np.float32).astype(np.float16)
    if dtype == "BF16":
        return f32_to_bf16(x)
    raise ValueError("encode_float: not a float dtype: %s" % dtype)


def decode_float(arr, dtype, out=np.float32):
    """Stored array of a float dtype -> float32 (or float64) values."""
    if dtype == "BF16":
        return bf16_to_f32(arr).astype(out, copy=False)
    if dtype in ("F16", "F32", "F64"):
        return np.asarray(arr).astype(out)
    raise ValueError("decode_float: not a float dtype: %s" % dtype)


def nbytes_of(dtype, shape):
    n = DTYPES[dtype].itemsize
    for d in shape:
        n *= int(d)
    return n


# -------------------------------------------------------------- reader ----

class SafetensorsFile:
    """One .safetensors file, header validated, data mmapped read-only."""

    def __init__(self, path):
        self.path = str(path)
        self._mm = None
        with open(self.path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < 8:
                raise ValueError("%s: too short for a safetensors header" % self.path)
            (hlen,) = struct.unpack("<Q", f.read(8))
            if hlen > MAX_HEADER_BYTES or hlen > size - 8:
                raise ValueError("%s: header length %d out of range (file %d bytes)"
                                 % (self.path, hlen, size))
            raw = f.read(hlen)
            try:
                header = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as e:
                raise ValueError("%s: bad header JSON: %s" % (self.path, e))
            if not isinstance(header, dict):
                raise ValueError("%s: header is not a JSON object" % self.path)
            self.data_start = 8 + hlen
            self.data_len = size - self.data_start
            self.metadata = header.pop("__metadata__", None) or {}
            if not isinstance(self.metadata, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in self.metadata.items()):
                raise ValueError("%s: __metadata__ must map strings to strings" % self.path)
            self._info = {}
            spans = []
            for name, ent in header.items():
                self._info[name] = self._check_entry(name, ent)
                b, e = self._info[name][2]
                if e > b:
                    spans.append((b, e, name))
            spans.sort()
            pos = 0
            for b, e, name in spans:
                if b != pos:
                    raise ValueError("%s: tensor %s starts at %d, expected %d (hole or overlap)"
                                     % (self.path, name, b, pos))
                pos = e
            if pos != self.data_len:
                raise ValueError("%s: data buffer is %d bytes, tensors cover %d"
                                 % (self.path, self.data_len, pos))
            if size > 0:
                self._mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)

    def _check_entry(self, name, ent):
        if not isinstance(ent, dict):
            raise ValueError("%s: entry %s is not an object" % (self.path, name))
        dt = ent.get("dtype")
        shape = ent.get("shape")
        offs = ent.get("data_offsets")
        if dt not in DTYPES:
            raise ValueError("%s: tensor %s has unknown dtype %r" % (self.path, name, dt))
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise ValueError("%s: tensor %s has bad shape %r" % (self.path, name, shape))
        if (not isinstance(offs, list) or len(offs) != 2
                or not all(isinstance(o, int) for o in offs)
                or not 0 <= offs[0] <= offs[1] <= self.data_len):
            raise ValueError("%s: tensor %s has bad data_offsets %r" % (self.path, name, offs))
        if offs[1] - offs[0] != nbytes_of(dt, shape):
            raise ValueError("%s: tensor %s: %d bytes for %s%s"
                             % (self.path, name, offs[1] - offs[0], dt, shape))
        return (dt, tuple(shape), (offs[0], offs[1]))

    def names(self):
        """Tensor names in header order."""
        return list(self._info)

    def __contains__(self, name):
        return name in self._info

    def dtype(self, name):
        return self._info[name][0]

    def shape(self, name):
        return self._info[name][1]

    def get(self, name):
        """Read-only array view of the stored data (BF16 as uint16 bits)."""
        dt, shape, (b, e) = self._info[name]
        count = (e - b) // DTYPES[dt].itemsize
        if count == 0:
            return np.zeros(shape, dtype=DTYPES[dt])
        arr = np.frombuffer(self._mm, dtype=DTYPES[dt], count=count, offset=self.data_start + b)
        return arr.reshape(shape)

    def get_float(self, name, out=np.float32):
        """A float tensor decoded to float32 (or `out`) values."""
        return decode_float(self.get(name), self.dtype(name), out)

    def close(self):
        if self._mm is not None:
            try:
                self._mm.close()
            except BufferError:
                pass  # arrays still reference it; the GC closes it later
            self._mm = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class ModelWeights:
    """All tensors of a model directory: either model.safetensors.index.json
    with its shards, or the *.safetensors files present (each name once)."""

    def __init__(self, path):
        self.path = str(path)
        self.files = {}     # file name -> SafetensorsFile
        self.where = {}     # tensor name -> file name
        self.index = None
        if os.path.isfile(self.path):
            self._add(os.path.dirname(self.path) or ".", os.path.basename(self.path))
            return
        idx = os.path.join(self.path, INDEX_NAME)
        if os.path.exists(idx):
            with open(idx, "r", encoding="utf-8") as f:
                self.index = json.load(f)
            wmap = self.index.get("weight_map")
            if not isinstance(wmap, dict) or not wmap:
                raise ValueError("%s: weight_map missing or empty" % idx)
            for fname in sorted(set(wmap.values())):
                self._add(self.path, fname)
            for name, fname in wmap.items():
                if self.where.get(name) != fname:
                    raise ValueError("%s: %s maps to %s but that file does not hold it"
                                     % (idx, name, fname))
            extra = set(self.where) - set(wmap)
            if extra:
                raise ValueError("%s: tensors missing from weight_map: %s"
                                 % (idx, sorted(extra)[:5]))
            return
        names = sorted(n for n in os.listdir(self.path) if n.endswith(".safetensors"))
        if not names:
            raise FileNotFoundError("%s: no .safetensors files" % self.path)
        for fname in names:
            self._add(self.path, fname)

    def _add(self, d, fname):
        st = SafetensorsFile(os.path.join(d, fname))
        self.files[fname] = st
        for name in st.names():
            if name in self.where:
                raise ValueError("tensor %s appears in both %s and %s"
                                 % (name, self.where[name], fname))
            self.where[name] = fname

    @property
    def metadata(self):
        for st in self.files.values():
            return st.metadata
        return {}

    def names(self):
        return list(self.where)

    def __contains__(self, name):
        return name in self.where

    def file_of(self, name):
        return self.files[self.where[name]]

    def dtype(self, name):
        return self.file_of(name).dtype(name)

    def shape(self, name):
        return self.file_of(name).shape(name)

    def get(self, name):
        return self.file_of(name).get(name)

    def get_float(self, name, out=np.float32):
        return self.file_of(name).get_float(name, out)

    def close(self):
        for st in self.files.values():
            st.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_weights(path):
    """A ModelWeights over a model directory or a single .safetensors file."""
    return ModelWeights(path)


# -------------------------------------------------------------- writer ----

def _header_bytes(specs, metadata):
    header = {}
    if metadata:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise ValueError("__metadata__ must map strings to strings")
        header["__metadata__"] = dict(metadata)
    offsets = {}
    pos = 0
    for name, dt, shape in specs:
        if name == "__metadata__" or name in offsets:
            raise ValueError("bad or duplicate tensor name %r" % name)
        if dt not in DTYPES:
            raise ValueError("tensor %s: unknown dtype %r" % (name, dt))
        n = nbytes_of(dt, shape)
        header[name] = {"dtype": dt, "shape": [int(d) for d in shape],
                        "data_offsets": [pos, pos + n]}
        offsets[name] = (pos, n)
        pos += n
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    raw += b" " * ((-len(raw)) % 8)
    return raw, offsets, pos


class SafetensorsWriter:
    """Streaming writer: give every tensor's (name, dtype, shape) up front, in
    the order the data should be laid out, then write data in any order and
    in chunks with write(name, array, elem_offset)."""

    def __init__(self, path, specs, metadata=None):
        self.path = str(path)
        self.specs = [(n, d, tuple(int(x) for x in s)) for n, d, s in specs]
        self._dtype = {n: d for n, d, _ in self.specs}
        raw, self._offsets, self.data_len = _header_bytes(self.specs, metadata)
        self._data_start = 8 + len(raw)
        self._written = {n: 0 for n, _, _ in self.specs}
        self._tmp = "%s.tmp.%d" % (self.path, os.getpid())
        self._f = open(self._tmp, "wb")
        try:
            self._f.write(struct.pack("<Q", len(raw)))
            self._f.write(raw)
            self._f.truncate(self._data_start + self.data_len)
        except BaseException:
            self.abort()
            raise

    def write(self, name, array, elem_offset=0):
        """Write `array` (flattened, C order) as elements [elem_offset, ...) of
        tensor `name`. BF16 data must be uint16 bits (see f32_to_bf16)."""
        dt = self._dtype[name]
        want = DTYPES[dt]
        a = np.asarray(array)
        if a.dtype.kind != want.kind or a.dtype.itemsize != want.itemsize:
            raise TypeError("tensor %s is %s: got numpy %s" % (name, dt, a.dtype))
        a = np.ascontiguousarray(a, dtype=want)
        start, n = self._offsets[name]
        b = elem_offset * want.itemsize
        if elem_offset < 0 or b + a.nbytes > n:
            raise ValueError("tensor %s: write of %d bytes at %d exceeds %d"
                             % (name, a.nbytes, b, n))
        self._f.seek(self._data_start + start + b)
        self._f.write(memoryview(a.reshape(-1)).cast("B"))
        self._written[name] += a.nbytes

    def write_zero(self, name):
        """Leave tensor `name` all zero bytes (the file was pre-sized
        sparse, so nothing is written): instant models for load checks."""
        self._written[name] = self._offsets[name][1]

    def close(self):
        short = [n for n, _, _ in self.specs if self._written[n] != self._offsets[n][1]]
        if short:
            self.abort()
            raise ValueError("%s: tensors not fully written: %s" % (self.path, short[:5]))
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        os.replace(self._tmp, self.path)

    def abort(self):
        if not self._f.closed:
            self._f.close()
        if os.path.exists(self._tmp):
            os.unlink(self._tmp)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        if exc_type is not None:
            self.abort()
        else:
            self.close()


def _as_stored(value):
    """value: ndarray, or (dtype_name, ndarray) -> (dtype_name, ndarray).
    A bare uint16 array is U16; pass ("BF16", bits) for bfloat16."""
    if isinstance(value, tuple):
        dt, arr = value
        return dt, np.asarray(arr)
    arr = np.asarray(value)
    for name, npdt in DTYPES.items():
        if name != "BF16" and arr.dtype.kind == npdt.kind and arr.dtype.itemsize == npdt.itemsize:
            return name, arr
    raise TypeError("no safetensors dtype for numpy %s (use (dtype, array))" % arr.dtype)


def save_file(path, tensors, metadata=None):
    """Write a dict {name: array or (dtype, array)} in insertion order."""
    items = [(n,) + _as_stored(v) for n, v in tensors.items()]
    specs = [(n, dt, a.shape) for n, dt, a in items]
    with SafetensorsWriter(path, specs, metadata) as w:
        for n, _, a in items:
            w.write(n, a)


def shard_plan(specs, n_shards):
    """Split specs (in order) into n_shards contiguous, non-empty groups of
    roughly equal byte size."""
    if n_shards < 1 or n_shards > len(specs):
        raise ValueError("cannot split %d tensors into %d shards" % (len(specs), n_shards))
    sizes = [nbytes_of(d, s) for _, d, s in specs]
    total = sum(sizes)
    groups, cur, acc = [], [], 0
    for i, (spec, sz) in enumerate(zip(specs, sizes)):
        left_specs = len(specs) - i
        left_groups = n_shards - len(groups)
        if cur and (left_specs < left_groups or
                    (left_groups > 1 and acc + sz / 2 > total * (len(groups) + 1) / n_shards)):
            groups.append(cur)
            cur = []
        cur.append(spec)
        acc += sz
    groups.append(cur)
    assert len(groups) == n_shards, (len(groups), n_shards)
    return groups


class ModelWriter:
    """Writes a model's tensors into DIR as model.safetensors (n_shards == 1)
    or model-0000i-of-0000N.safetensors; writes model.safetensors.index.json
    when sharded, or when write_index is True (mlx-lm always writes one)."""

    def __init__(self, dirpath, specs, n_shards=1, metadata=None, write_index=None):
        self.dir = str(dirpath)
        groups = shard_plan(specs, n_shards)
        self.writers = []
        self.where = {}
        try:
            for i, group in enumerate(groups):
                fname = (SINGLE_NAME if n_shards == 1 else
                         "model-%05d-of-%05d.safetensors" % (i + 1, n_shards))
                w = SafetensorsWriter(os.path.join(self.dir, fname), group, metadata)
                self.writers.append(w)
                for n, _, _ in group:
                    self.where[n] = (fname, w)
        except BaseException:
            self.abort()
            raise
        self.total_size = sum(nbytes_of(d, s) for _, d, s in specs)
        self.write_index = (n_shards > 1) if write_index is None else (write_index or n_shards > 1)

    def write(self, name, array, elem_offset=0):
        self.where[name][1].write(name, array, elem_offset)

    def write_zero(self, name):
        self.where[name][1].write_zero(name)

    def close(self):
        for w in self.writers:
            w.close()
        if self.write_index:
            index = {"metadata": {"total_size": self.total_size},
                     "weight_map": {n: self.where[n][0] for n in sorted(self.where)}}
            tmp = os.path.join(self.dir, INDEX_NAME + ".tmp")
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(index, f, indent=4)
                f.write("\n")
            os.replace(tmp, os.path.join(self.dir, INDEX_NAME))

    def abort(self):
        for w in self.writers:
            w.abort()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        if exc_type is not None:
            self.abort()
        else:
            self.close()
