"""Byte-level BPE, GPT-2 style: text -> UTF-8 bytes (ids 0..255), then learned merges of frequent pairs.

    tok = BPETokenizer.train(text, vocab_size=2048)   # 256 bytes + 1792 merges
    ids = tok.encode("The if statement")              # (T,) long tensor; decode(ids) gives the text back
    tok.pieces("unconditionally")                     # ['unc', 'ond', 'itionally']: how a word splits
    tok.save("text.tokenizer.json"); BPETokenizer.load("text.tokenizer.json")

Training: split the text into words (PATTERN: letters, digits, punctuation, spaces; a word keeps its leading
space), count every adjacent pair of ids across all words, merge the most frequent pair into a new id, repeat.
Encoding a word replays the merges in the order they were learned. Any string round-trips, since every byte
has an id and merges only join ids.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from itertools import pairwise
from pathlib import Path

import torch

# GPT-2's pre-tokenizer with Python's `re`: contractions, letters, digits, other symbols, then spaces.
PATTERN = re.compile(r"""'(?:[sdmt]|ll|ve|re)| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+""")


def merge(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every occurrence of `pair` in `ids` (left to right) by `new_id`."""
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


class BPETokenizer:
    def __init__(self, merges: list[tuple[int, int]]):
        self.merges = {tuple(pair): 256 + rank for rank, pair in enumerate(merges)}  # pair -> new id
        self.vocab = [bytes([b]) for b in range(256)]  # id -> bytes
        for a, b in self.merges:
            if not (a < len(self.vocab) and b < len(self.vocab)):
                raise ValueError(f"merge {(a, b)} uses an id not defined before it")
            self.vocab.append(self.vocab[a] + self.vocab[b])
        self._cache: dict[str, list[int]] = {}

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @classmethod
    def train(cls, text: str, *, vocab_size: int) -> BPETokenizer:
        """Learn vocab_size - 256 merges on `text` (ties go to the smallest pair: deterministic)."""
        if vocab_size < 256:
            raise ValueError(f"vocab_size={vocab_size} must be >= 256 (one id per byte)")
        words = [[list(w.encode("utf-8")), n] for w, n in Counter(PATTERN.findall(text)).items()]
        merges = []
        for new_id in range(256, vocab_size):
            pairs = Counter()
            for ids, n in words:
                for pair in pairwise(ids):
                    pairs[pair] += n
            if not pairs:
                break  # every word is a single token already
            best = min(pairs, key=lambda p: (-pairs[p], p))
            merges.append(best)
            for word in words:
                if best[0] in word[0]:
                    word[0] = merge(word[0], best, new_id)
        return cls(merges)

    def _encode_word(self, word: str) -> list[int]:
        if word not in self._cache:
            ids = list(word.encode("utf-8"))
            while len(ids) > 1:  # apply the earliest-learned merge present, as in training
                pair = min(pairwise(ids), key=lambda p: self.merges.get(p, len(self.vocab)))
                if pair not in self.merges:
                    break
                ids = merge(ids, pair, self.merges[pair])
            self._cache[word] = ids
        return self._cache[word]

    def encode(self, text: str) -> torch.Tensor:
        """str -> (T,) long tensor of token ids."""
        return torch.tensor(
            [i for w in PATTERN.findall(text) for i in self._encode_word(w)], dtype=torch.long
        )

    def decode(self, ids) -> str:
        """Token ids -> str; bytes that are not valid UTF-8 (a cut character) become U+FFFD."""
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"token ids must lie in [0, {self.vocab_size}), got {bad[:5]}")
        return b"".join(self.vocab[i] for i in ids).decode("utf-8", errors="replace")

    def piece(self, i: int) -> str:
        """The text of token `i` (a byte that is part of a character shows as an escape such as '\\xe2')."""
        return self.vocab[i].decode("utf-8", errors="backslashreplace")

    def pieces(self, text: str) -> list[str]:
        """How `text` splits into tokens: one string per token."""
        return [self.piece(i) for i in self.encode(text).tolist()]

    def save(self, path) -> None:
        pairs = sorted(self.merges, key=self.merges.get)
        data = {"kind": "byte-level BPE", "pattern": PATTERN.pattern, "merges": [list(p) for p in pairs]}
        Path(path).write_text(json.dumps(data) + "\n")

    @classmethod
    def load(cls, path) -> BPETokenizer:
        data = json.loads(Path(path).read_text())
        if data.get("pattern") != PATTERN.pattern:
            raise ValueError(
                f"{path} was written with pre-tokenizer pattern {data.get('pattern')!r}, not "
                f"{PATTERN.pattern!r}"
            )
        return cls([tuple(p) for p in data["merges"]])


def word_pieces(tokenizer: BPETokenizer, words) -> dict[str, list[str]]:
    """{word: its pieces} for a demo; each word is encoded with a leading space, as it appears
    mid-sentence."""
    return {w: tokenizer.pieces(" " + w) for w in words}
