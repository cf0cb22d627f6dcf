"""semtools: shared numpy-only helpers for Semantic's Python model tools.

Modules:
  safetensors_np  read/write safetensors files and sharded model dirs (numpy only)
  mlx_quant       MLX affine quantization (quantize / dequantize), bit-compatible
                  with mlx.core.quantize on the CPU backend
  bf16 helpers live in safetensors_np (numpy has no bfloat16 dtype).

Everything here is single-threaded, deterministic and depends on nothing but
the standard library and numpy (Debian's python3-numpy, run with
/usr/bin/python3).
"""
