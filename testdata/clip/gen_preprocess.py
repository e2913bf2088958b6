# Generates preprocess.safetensors: inputs and the outputs of clip.load's transform up to the
# center crop (torchvision Resize(res, BICUBIC) on a PIL image + CenterCrop(res)), computed with
# Pillow. Run with a Python that has Pillow (Debian: python3-pil): python3 gen_preprocess.py
import json, struct
from PIL import Image

RES = 32
CASES = [(37, 53), (20, 15), (64, 64), (32, 40), (100, 45), (33, 33), (7, 300)]  # (h, w)

def pixels(h, w, seed):
    # A smooth gradient plus LCG noise, so that both the filter lobes and clipping matter.
    state = seed * 2654435761 % 2**32
    out = bytearray()
    for y in range(h):
        for x in range(w):
            for c in range(3):
                state = (state * 1664525 + 1013904223) % 2**32
                base = (x * 255 // max(w - 1, 1) + y * 97 + c * 60) % 256
                v = base if (state >> 24) % 4 else (state >> 16) & 255
                out.append(v)
    return bytes(out)

def transform(img):
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = RES, int(RES * long / short)
    nw, nh = (new_short, new_long) if w <= h else (new_long, new_short)
    img = img.resize((nw, nh), Image.BICUBIC)
    top = int(round((nh - RES) / 2.0))
    left = int(round((nw - RES) / 2.0))
    return img.crop((left, top, left + RES, top + RES))

tensors = {}
for i, (h, w) in enumerate(CASES):
    raw = pixels(h, w, i + 1)
    img = Image.frombytes("RGB", (w, h), raw)
    out = transform(img).tobytes()
    tensors[f"case{i}.input"] = ([h, w, 3], raw)
    tensors[f"case{i}.output"] = ([RES, RES, 3], out)

header, blob = {}, b""
for name in sorted(tensors):
    shape, data = tensors[name]
    header[name] = {"dtype": "U8", "shape": shape, "data_offsets": [len(blob), len(blob) + len(data)]}
    blob += data
header["__metadata__"] = {"source": "Pillow " + Image.__version__ + " BICUBIC, torchvision Resize/CenterCrop sizing"}
hdr = json.dumps(header, separators=(",", ":")).encode()
hdr += b" " * (-len(hdr) % 8)
if len(hdr) % 256 == 0x80 and len(hdr) // 256 <= 5:
    # checkpoint.Load would take the length bytes 80 0x for a pickle header (legacy torch.save).
    hdr += b" " * 8
with open("preprocess.safetensors", "wb") as f:
    f.write(struct.pack("<Q", len(hdr)) + hdr + blob)
print("wrote", len(tensors), "tensors with", header["__metadata__"]["source"])
