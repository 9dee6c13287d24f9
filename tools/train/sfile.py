"""Minimal safetensors reader/writer (no `safetensors` package needed). BF16 <-> float32 via int16 views."""
import json, struct
import numpy as np
import torch

_NP = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32}


def save(path, tensors, dtypes):
    """tensors: name -> torch tensor; dtypes: name -> 'BF16' | 'F32'. Names written sorted."""
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().float().contiguous().cpu()
        if dtypes[name] == "BF16":
            raw = t.to(torch.bfloat16).view(torch.int16).numpy().tobytes()
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
    """-> name -> float32 torch tensor."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n)); data = f.read()
    out = {}
    for name, m in header.items():
        if name == "__metadata__": continue
        a, b = m["data_offsets"]
        if m["dtype"] == "BF16":
            i16 = torch.from_numpy(np.frombuffer(data[a:b], dtype="<i2").copy())
            t = i16.view(torch.bfloat16).float()
        else:
            t = torch.from_numpy(np.frombuffer(data[a:b], dtype=_NP[m["dtype"]]).copy()).float()
        out[name] = t.reshape(m["shape"])
    return out
