"""A tiny BERT and a synthetic class-incremental text stream, for fast learner tests.

The model directory is a real Hugging Face directory (config, safetensors weights,
WordPiece tokenizer files) built from a config, so every code path that loads a base
model from disk runs exactly as it does for all-MiniLM-L6-v2, only in milliseconds.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch
from transformers import BertConfig, BertModel, BertTokenizer

from learners.data import Example

FILLER = [f"w{i}" for i in range(40)]


def keywords(label: str) -> list[str]:
    """Three words that only ``label``'s texts use."""
    return [f"{label}k{j}" for j in range(3)]


def build_tiny_bert(directory: Path, labels: list[str], *, hidden: int = 32, seed: int = 0) -> Path:
    """Write a 2-layer BERT whose vocabulary covers the synthetic stream's words."""
    directory.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *FILLER]
    for label in labels:
        vocab += keywords(label)
    # transformers 5 takes the vocabulary itself (``vocab=``); ``vocab_file=`` is ignored.
    tokenizer = BertTokenizer(vocab={word: i for i, word in enumerate(vocab)}, do_lower_case=True)
    tokenizer.save_pretrained(str(directory))
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=hidden * 2, max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(str(directory))
    return directory


def synthetic_examples(labels: list[str], per_label: int, *, seed: int, start_id: int = 0) -> list[Example]:
    """Texts of filler words with one of the label's keywords mixed in; shuffled, ids consecutive."""
    rng = random.Random(seed)
    rows = []
    for label in labels:
        for _ in range(per_label):
            words = rng.sample(FILLER, rng.randint(3, 8)) + [rng.choice(keywords(label))]
            rng.shuffle(words)
            rows.append((" ".join(words), label))
    rng.shuffle(rows)
    return [Example(sample_id=start_id + i, text=text, label=label) for i, (text, label) in enumerate(rows)]
