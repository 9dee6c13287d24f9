"""Minimal safetensors reader/writer (no `safetensors` package needed). BF16 <-> float32 via int16 views."""
import json, struct
import numpy as np
import torch

_NP = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32}


def e4m3_bytes(v):
    """float32 values that are exactly E4M3 numbers (|v| <= 448) -> their E4M3 bytes (sign, 4-bit exponent
    with bias 7, 3-bit mantissa; exponent 0 is subnormal with step 2^-9)."""
    a = np.abs(v).astype(np.float64)
    sign = (np.signbit(v).astype(np.uint8) << 7)
    e = np.floor(np.log2(np.maximum(a, 2.0 ** -6)))
    normal = a >= 2.0 ** -6
    mant = np.where(normal, a / 2.0 ** e - 1.0, a / 2.0 ** -9) * np.where(normal, 8.0, 1.0)
    assert np.all(mant == np.round(mant)) and np.all(a <= 448), "not E4M3 values"
    field = np.where(normal, e + 7, 0).astype(np.uint8)
    return (sign | (field << 3) | np.round(mant).astype(np.uint8)).astype(np.uint8)


def _e4m3_to_f32(b):
    b = b.astype(np.int32)
    field, mant = (b >> 3) & 15, b & 7
    v = np.where(field == 0, mant * 2.0 ** -9, (1 + mant / 8.0) * 2.0 ** (field - 7.0))
    return np.where(b & 128, -v, v).astype(np.float32)


def save(path, tensors, dtypes):
    """tensors: name -> torch tensor; dtypes: name -> 'BF16' | 'F32'. Names written sorted."""
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().float().contiguous().cpu()
        if dtypes[name] == "BF16":
            raw = t.to(torch.bfloat16).view(torch.int16).numpy().tobytes()
        elif dtypes[name] == "F8_E4M3":   # t already holds E4M3 values (model.fp8_block_quantize / scale)
            raw = e4m3_bytes(t.numpy()).tobytes()
        else:
            raw = t.numpy().astype("<f4").tobytes()
        header[name] = {"dtype": dtypes[name], "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw); off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h))); f.write(h)
        for b in blobs: f.write(b)


def load(path):
    """-> name -> float32 torch tensor (F8_E4M3 tensors multiplied by their NAME_scale_inv blocks)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n)); data = f.read()
    out = {}
    for name, m in header.items():
        if name == "__metadata__": continue
        a, b = m["data_offsets"]
        if m["dtype"] == "F8_E4M3":   # the E4M3 values; the caller multiplies by NAME_scale_inv blocks
            t = torch.from_numpy(_e4m3_to_f32(np.frombuffer(data[a:b], dtype=np.uint8)))
        elif m["dtype"] == "BF16":
            i16 = torch.from_numpy(np.frombuffer(data[a:b], dtype="<i2").copy())
            t = i16.view(torch.bfloat16).float()
        else:
            t = torch.from_numpy(np.frombuffer(data[a:b], dtype=_NP[m["dtype"]]).copy()).float()
        out[name] = t.reshape(m["shape"])
    for name in [n for n in out if n + "_scale_inv" in out]:   # FP8 blocks: value x its block's scale
        s = out.pop(name + "_scale_inv")
        w = out[name]
        bo = bi = 128   # the block of every Spex/DeepSeek FP8 export (quantization_config.weight_block_size)
        out[name] = w * s.repeat_interleave(bo, 0).repeat_interleave(bi, 1)[:w.shape[0], :w.shape[1]]
    return out
