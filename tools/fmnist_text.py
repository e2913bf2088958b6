#!/usr/bin/env python3
"""The tiny fixed text encoder of the Fashion-MNIST text-to-image model (numpy only).

Twin of cachebench's Go captions.TinyEncoder; both produce the same float32 bits, and
captions/testdata/fmnist_text_golden.npz (written by --golden) is what the Go test compares.

As a module (put tools/ on sys.path):
    from fmnist_text import encode, encode_batch, caption, TEMPLATES, CLASSES, VOCAB, WIDTH, MAX_LEN
    feat, n = encode("a photo of a Sneaker")   # feat: float32 [MAX_LEN, WIDTH], zero past n words
    feats, valid = encode_batch([...])         # float32 [N, MAX_LEN, WIDTH], int64 [N]

Recipe (captions/README.md has it too). Words are the maximal runs of ASCII letters, lower-cased.
Token t of a caption is float32(word[w_t] + 0.5 * pos[t]) (sum in float64). The vector of a key
(a word, or "@<t>" for position t) is: state = FNV-1a-64(UTF-8 key) ^ SEED; 4*WIDTH splitmix64
outputs x_k; u_k = (x_k >> 11) * 2**-53; v_j = (((u_4j + u_4j+1) + u_4j+2) + u_4j+3 - 2) * sqrt(3).
Only correctly rounded IEEE operations, evaluated in that order, so Go and Python agree bit for
bit (Box-Muller's log and cos differ in the last bit between libms).

Usage:
  /usr/bin/python3 tools/fmnist_text.py --golden OUT.npz   # write the self-check encodings
  /usr/bin/python3 tools/fmnist_text.py --check IN.npz     # recompute and compare them
  /usr/bin/python3 tools/fmnist_text.py "a photo of a Bag"  # print an encoding
"""
import argparse
import math
import re
import sys

import numpy as np

WIDTH = 32
MAX_LEN = 12
SEED = 0x63617074696F6E73  # "captions" in ASCII

CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
TEMPLATES = ("{}", "a photo of a {}", "a {} on a plain background", "a black and white photo of a {}")

_M64 = (1 << 64) - 1
_WORD = re.compile(r"[A-Za-z]+")


def words(text):
    """The caption's words: maximal runs of ASCII letters, lower-cased."""
    return [w.lower() for w in _WORD.findall(text)]


VOCAB = tuple(sorted({w for s in TEMPLATES + CLASSES for w in words(s.replace("{}", " "))}))


def caption(cls, template=0):
    """The caption of Fashion-MNIST label cls (0-9) in TEMPLATES[template]."""
    if not 0 <= cls < len(CLASSES):
        raise ValueError(f"class {cls}, want a Fashion-MNIST label 0 to {len(CLASSES) - 1}")
    if not 0 <= template < len(TEMPLATES):
        raise ValueError(f"template {template}, want 0 to {len(TEMPLATES) - 1}")
    return TEMPLATES[template].replace("{}", CLASSES[cls], 1)


def key_vector(key):
    """The float64 vector of a word or position key ("@0" ... "@11"), as a list of WIDTH floats."""
    h = 0xCBF29CE484222325
    for b in key.encode("utf-8"):
        h = ((h ^ b) * 0x100000001B3) & _M64
    state = h ^ SEED

    def nxt():
        nonlocal state
        state = (state + 0x9E3779B97F4A7C15) & _M64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
        z ^= z >> 31
        return float(z >> 11) * 2.0 ** -53

    out = []
    for _ in range(WIDTH):
        s = nxt()
        s += nxt()
        s += nxt()
        s += nxt()
        out.append((s - 2.0) * math.sqrt(3.0))
    return out


_TABLE = {w: np.array(key_vector(w), dtype=np.float64) for w in VOCAB}
_POS = np.array([key_vector(f"@{t}") for t in range(MAX_LEN)], dtype=np.float64)


def encode(text):
    """(float32 [MAX_LEN, WIDTH], valid word count) of a caption; ValueError for 0 or > MAX_LEN words or an unknown word."""
    ws = words(text)
    if not ws:
        raise ValueError(f"caption {text!r} has no words, want 1 to {MAX_LEN} "
                         "(the model's null caption is its own, not an encoding)")
    if len(ws) > MAX_LEN:
        raise ValueError(f"caption {text!r} has {len(ws)} words, the tiny encoder takes at most {MAX_LEN}")
    out = np.zeros((MAX_LEN, WIDTH), dtype=np.float32)
    for t, w in enumerate(ws):
        if w not in _TABLE:
            raise ValueError(f"caption {text!r}: word {w!r} is not in the tiny encoder's vocabulary ({' '.join(VOCAB)})")
        out[t] = (_TABLE[w] + 0.5 * _POS[t]).astype(np.float32)
    return out, len(ws)


def encode_batch(texts):
    """(float32 [N, MAX_LEN, WIDTH], int64 [N] valid counts) of a list of captions."""
    feats = np.zeros((len(texts), MAX_LEN, WIDTH), dtype=np.float32)
    valid = np.zeros(len(texts), dtype=np.int64)
    for i, t in enumerate(texts):
        feats[i], valid[i] = encode(t)
    return feats, valid


def golden_captions():
    """Every (class, template) caption, class-major, then a few that test tokenizing and order."""
    caps = [caption(c, t) for c in range(len(CLASSES)) for t in range(len(TEMPLATES))]
    caps += [
        "A PHOTO OF A SNEAKER!!",
        "  a\tphoto-of_a  coat. ",
        "bag a of photo a",
        "dress " * MAX_LEN,
        "t",
    ]
    return caps


def _utf8_lines(lines):
    return np.frombuffer("\n".join(lines).encode("utf-8"), dtype=np.uint8)


def golden():
    caps = golden_captions()
    feats, valid = encode_batch(caps)
    return {"captions": _utf8_lines(caps), "vocab": _utf8_lines(VOCAB), "features": feats, "valid": valid}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--golden", metavar="OUT.npz", help="write the self-check encodings")
    ap.add_argument("--check", metavar="IN.npz", help="recompute the self-check encodings and compare")
    ap.add_argument("caption", nargs="*", help="captions to encode and print")
    args = ap.parse_args()
    if args.golden:
        np.savez_compressed(args.golden, **golden())
        print(f"wrote {args.golden}: {len(golden_captions())} captions, vocabulary of {len(VOCAB)} words")
    if args.check:
        want = golden()
        with np.load(args.check) as got:
            for k, v in want.items():
                if got[k].dtype != v.dtype or got[k].shape != v.shape or got[k].tobytes() != v.tobytes():
                    sys.exit(f"{args.check}: field {k!r} differs from this encoder's output")
        print(f"{args.check}: all {len(golden_captions())} encodings agree bit for bit")
    for c in args.caption:
        feat, n = encode(c)
        print(f"{c!r}: {n} words {words(c)}")
        print(np.array2string(feat[:n], precision=4, max_line_width=160))
    if not (args.golden or args.check or args.caption):
        print("vocabulary:", " ".join(VOCAB))


if __name__ == "__main__":
    main()
