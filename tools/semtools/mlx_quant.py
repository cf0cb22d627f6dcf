"""mlx_quant: MLX "affine" quantization in numpy, as mlx.core.quantize does it.

Layout (what mlx-lm writes for a Linear/Embedding weight W [rows, cols]):
  X.weight  U32 [rows, cols*bits/32]   element c of a row sits in word
            c // (32/bits) at bit offset bits * (c % (32/bits)), i.e. the
            lowest bits hold the first element (4-bit: 8 per word, 8-bit: 4).
  X.scales  [rows, cols/group_size]    in the model dtype (F16 or BF16)
  X.biases  [rows, cols/group_size]    same dtype
  dequantized  w[r, c] = scales[r, c//G] * q[r, c] + biases[r, c//G]

How MLX picks scale and bias for a group (mlx/backend/cpu/quantized.cpp and
the Metal/CUDA affine_quantize kernels, all the same formula; arithmetic in
float32, the input already in the model dtype):
  n_bins = 2^bits - 1;  eps = 1e-7
  scale  = max((w_max - w_min) / n_bins, eps)
  side   = |w_min| > |w_max|          # which extreme has the larger magnitude
  scale  = side ? scale : -scale      # negative scale when w_max dominates
  edge   = side ? w_min : w_max
  q0     = round(edge / scale)
  if q0 != 0: scale = edge / q0; bias = edge   # the dominant extreme is exact
  else:       bias = 0                          # (all-zero group)
  q      = clamp(round((w - bias) / scale), 0, n_bins)
  scales/biases are then cast to the model dtype (the packed q used the
  float32 scale and bias).
So the extreme with the larger magnitude is reproduced exactly (q = 0 there),
a zero weight is not necessarily exact, and because |q0| may round up, the
opposite extreme can be clipped by up to one full step (error_bound()).

Backend differences, both selectable with `backend=`:
  "metal" (default; also CUDA) - how mlx-community checkpoints are made on
      Macs: w_max starts at 0, so an all-negative group uses w_max = 0, and
      round() is round-half-away-from-zero.
  "cpu" - w_max is the true maximum, std::rint rounds half to even.
For random normal weights the two agree except on exact .5 ties.

Single-threaded, pure functions, no global state.
"""

import numpy as np

from . import safetensors_np as stn

EPS = np.float32(1e-7)


def _round_half_away(x):
    """Exact round-half-away-from-zero for float32 arrays (Metal round())."""
    t = np.trunc(x)
    frac = x - t  # exact in binary floating point
    return t + np.where(np.abs(frac) >= np.float32(0.5), np.sign(x), np.float32(0)).astype(x.dtype)


def check_params(cols, group_size, bits):
    if bits not in (2, 4, 8):
        raise ValueError("bits must be 2, 4 or 8 (U32-packed power-of-two widths), got %d" % bits)
    if group_size not in (32, 64, 128):
        raise ValueError("group_size must be 32, 64 or 128, got %d" % group_size)
    if cols % group_size != 0:
        raise ValueError("cols %d is not a multiple of group_size %d" % (cols, group_size))


def quantize(w, group_size=64, bits=4, dtype="F16", backend="metal"):
    """Quantize a 2-D float array w [rows, cols] whose values are first
    rounded to `dtype` (F32, F16 or BF16: the model dtype MLX would see).

    Returns (wq, scales, biases): wq uint32 [rows, cols*bits/32]; scales and
    biases float32 [rows, cols/group_size] holding values exactly
    representable in `dtype` (store them with safetensors_np.encode_float)."""
    w = np.asarray(w)
    if w.ndim != 2:
        raise ValueError("quantize expects a 2-D array, got shape %s" % (w.shape,))
    rows, cols = w.shape
    check_params(cols, group_size, bits)
    if backend not in ("metal", "cpu"):
        raise ValueError("backend must be metal or cpu")
    w = stn.round_to_dtype(w, dtype)
    g = w.reshape(rows, cols // group_size, group_size)
    n_bins = np.float32((1 << bits) - 1)
    w_max = g.max(axis=-1)
    w_min = g.min(axis=-1)
    if backend == "metal":
        w_max = np.maximum(w_max, np.float32(0))
    rnd = _round_half_away if backend == "metal" else np.rint
    side = np.abs(w_min) > np.abs(w_max)
    scale = np.maximum((w_max - w_min) / n_bins, EPS)
    scale = np.where(side, scale, -scale).astype(np.float32)
    edge = np.where(side, w_min, w_max).astype(np.float32)
    q0 = rnd(edge / scale)
    nz = q0 != 0
    safe_q0 = np.where(nz, q0, np.float32(1))
    scale = np.where(nz, edge / safe_q0, scale).astype(np.float32)
    bias = np.where(nz, edge, np.float32(0)).astype(np.float32)
    q = rnd((g - bias[..., None]) / scale[..., None])
    q = np.clip(q, np.float32(0), n_bins).astype(np.uint32).reshape(rows, cols)
    wq = pack(q, bits)
    scales = stn.round_to_dtype(scale, dtype)
    biases = stn.round_to_dtype(bias, dtype)
    return wq, scales, biases


def pack(q, bits):
    """uint32 codes [rows, cols] -> packed uint32 [rows, cols*bits/32]."""
    rows, cols = q.shape
    per = 32 // bits
    if cols % per:
        raise ValueError("cols %d not a multiple of %d" % (cols, per))
    shifts = (np.arange(per, dtype=np.uint32) * np.uint32(bits))
    words = q.astype(np.uint32).reshape(rows, cols // per, per) << shifts
    return np.bitwise_or.reduce(words, axis=-1).astype(np.uint32)


def unpack(wq, bits):
    """packed uint32 [rows, words] -> uint32 codes [rows, words*32/bits]."""
    wq = np.asarray(wq, dtype=np.uint32)
    rows, words = wq.shape
    per = 32 // bits
    shifts = (np.arange(per, dtype=np.uint32) * np.uint32(bits))
    mask = np.uint32((1 << bits) - 1)
    return ((wq[:, :, None] >> shifts) & mask).reshape(rows, words * per)


def dequantize(wq, scales, biases, group_size=64, bits=4, out=np.float32):
    """w = scale * q + bias per group, computed and returned in `out`
    (float32 or float64). scales/biases are float arrays (decode BF16/F16
    with safetensors_np.decode_float first)."""
    q = unpack(wq, bits)
    rows, cols = q.shape
    ng = cols // group_size
    if scales.shape != (rows, ng) or biases.shape != (rows, ng):
        raise ValueError("scales/biases shape %s/%s, expected %s"
                         % (scales.shape, biases.shape, (rows, ng)))
    s = np.asarray(scales, dtype=out)[:, :, None]
    b = np.asarray(biases, dtype=out)[:, :, None]
    w = q.reshape(rows, ng, group_size).astype(out) * s + b
    return w.reshape(rows, cols)


# Half an ulp, relative, of each scale dtype (the scale is rounded to it
# after the codes were chosen with the float32 scale).
_HALF_ULP = {"F32": 2.0 ** -24, "F16": 2.0 ** -11, "BF16": 2.0 ** -8}


def error_bound(scales, bits, dtype):
    """Per-group bound on |w - dequantize(quantize(w))| (w rounded to dtype).
    Codes inside the range are off by at most half a step; the extreme
    opposite to `edge` may be clipped by up to one step (when |q0| rounds
    up, e.g. a symmetric group); and rounding the scale to `dtype` moves
    code q by q * ulp/2 * |scale|."""
    s = np.abs(np.asarray(scales, dtype=np.float64))
    n_bins = (1 << bits) - 1
    return s * (1.0 + n_bins * _HALF_ULP[dtype]) * (1 + 1e-6) + 1e-30
