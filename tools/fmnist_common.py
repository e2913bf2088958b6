"""Shared helpers for the Fashion-MNIST tools: IDX loading, the 32x32 preprocessing and a
hand-written safetensors reader/writer (no safetensors package is available)."""
import gzip
import json
import os
import struct
import zlib

import numpy as np
import torch

FMNIST_DIR = "/usr/share/datasets/fashion-mnist"


def _open(path):
    if os.path.exists(path):
        return open(path, "rb")
    if os.path.exists(path + ".gz"):
        return gzip.open(path + ".gz", "rb")
    raise FileNotFoundError(path)


def load_idx(path):
    with _open(path) as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_fmnist(split, root=FMNIST_DIR):
    """split 'train' or 't10k'. Returns (images uint8 [N,28,28], labels int64 [N])."""
    x = load_idx(os.path.join(root, f"{split}-images-idx3-ubyte"))
    y = load_idx(os.path.join(root, f"{split}-labels-idx1-ubyte")).astype(np.int64)
    return x, y


def to_model_space(x_uint8):
    """uint8 [N,28,28] -> float32 tensor [N,1,32,32] in [-1,1]: pad 2 px with the background
    value 0 (-> -1 after scaling), then x/127.5 - 1."""
    x = np.pad(x_uint8, ((0, 0), (2, 2), (2, 2)), mode="constant", constant_values=0)
    x = x.astype(np.float32) / 127.5 - 1.0
    return torch.from_numpy(x).unsqueeze(1)


_DT = {torch.float32: ("F32", np.float32), torch.int64: ("I64", np.int64),
       torch.float64: ("F64", np.float64)}


def save_safetensors(path, tensors, metadata=None):
    """Write {name: tensor} as safetensors: 8-byte LE header length, JSON header (sorted keys,
    dtype/shape/data_offsets), padded with spaces to a multiple of 8, then raw LE data."""
    header = {}
    blobs = []
    off = 0
    for k in sorted(tensors):
        t = tensors[k].detach().cpu().contiguous()
        name, npdt = _DT[t.dtype]
        b = t.numpy().astype(np.dtype(npdt).newbyteorder("<"), copy=False).tobytes()
        header[k] = {"dtype": name, "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    if metadata:
        header["__metadata__"] = {str(a): str(b) for a, b in metadata.items()}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def load_safetensors(path):
    with open(path, "rb") as f:
        n, = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    inv = {v[0]: v[1] for v in _DT.values()}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        arr = np.frombuffer(data[a:b], dtype=np.dtype(inv[v["dtype"]]).newbyteorder("<"))
        out[k] = torch.from_numpy(arr.astype(inv[v["dtype"]]).reshape(v["shape"]).copy())
    return out


def export(ema, path, meta):
    """write a model's (EMA) weights as float32 safetensors with metadata."""
    sd = {k: v.float().contiguous() for k, v in ema.state_dict().items()}
    save_safetensors(path, sd, meta)


def save_grid(s, K, path):
    """write the samples as a grayscale PNG grid (rows = classes, K columns); stdlib zlib only."""
    img = ((s.squeeze(1) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    g = img.reshape(10, K, 32, 32).transpose(0, 2, 1, 3).reshape(10 * 32, K * 32)
    raw = b"".join(b"\x00" + row.tobytes() for row in g)

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", g.shape[1], g.shape[0], 8, 0, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
