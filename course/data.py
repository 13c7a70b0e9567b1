"""Tokenizers and synthetic tasks whose solutions need interpretable attention. Nothing is downloaded.

Tokenizers: `ByteTokenizer` (UTF-8 bytes, 256 ids) and `CharTokenizer` (one id per character of an alphabet).

Tasks share one vocabulary layout: four special tokens, then `n_symbols` symbols drawn as letters.

    id  0 PAD "."   1 BOS "^"   2 SEP "|"   3 MASK "_"   4.. symbols "a", "b", ...

    copy       ^ s | s              the answer reads the token n+1 positions back (a diagonal stripe)
    reverse    ^ s | reversed(s)    an anti-diagonal stripe
    sort       ^ s | sorted(s)      each answer looks for the next-smallest input
    induction  ^ filler r r         the second copy of r is predictable only by looking back (induction heads)

`task.batch(B, generator) -> (x, y, loss_mask)`, all (B, seq_len - 1): x are the inputs, y the next tokens
(teacher forcing: the inputs are the gold tokens), loss_mask marks the positions whose prediction is scored.
The loss mask says *which predictions count*; the attention mask says *what each position may read*
(causal, inside the model). They are different tensors with different jobs.
"""

from __future__ import annotations

import torch

PAD, BOS, SEP, MASK = 0, 1, 2, 3
SPECIALS = ".^|_"  # drawn characters of PAD, BOS, SEP, MASK
SYMBOLS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def _ids(ids) -> list[int]:
    if isinstance(ids, torch.Tensor):
        if ids.dim() != 1:
            raise ValueError(f"decode takes one sequence (a 1-D tensor), got shape {tuple(ids.shape)}")
        return ids.tolist()
    return list(ids)


class ByteTokenizer:
    """UTF-8 bytes as token ids (vocab_size 256): any text round-trips, no vocabulary to learn."""

    vocab_size = 256

    def encode(self, text: str) -> torch.Tensor:
        """str -> (T,) long tensor of byte values."""
        return torch.tensor(list(text.encode("utf-8")), dtype=torch.long)

    def decode(self, ids) -> str:
        ids = _ids(ids)
        bad = [i for i in ids if not 0 <= i < 256]
        if bad:
            raise ValueError(f"byte ids must lie in [0, 256), got {bad[:5]}")
        return bytes(ids).decode("utf-8", errors="replace")


class CharTokenizer:
    """One id per character of `alphabet` (id = index in the alphabet)."""

    def __init__(self, alphabet: str):
        if not alphabet or len(set(alphabet)) != len(alphabet):
            raise ValueError(f"alphabet must be a non-empty string of distinct characters, got {alphabet!r}")
        self.alphabet = alphabet
        self.index = {ch: i for i, ch in enumerate(alphabet)}

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        """The sorted set of characters of `text`."""
        return cls("".join(sorted(set(text))))

    @property
    def vocab_size(self) -> int:
        return len(self.alphabet)

    def encode(self, text: str) -> torch.Tensor:
        """str -> (T,) long tensor."""
        unknown = sorted(set(text) - self.index.keys())
        if unknown:
            raise ValueError(f"characters {unknown} are not in the alphabet {self.alphabet!r}")
        return torch.tensor([self.index[ch] for ch in text], dtype=torch.long)

    def decode(self, ids) -> str:
        ids = _ids(ids)
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"ids must lie in [0, {self.vocab_size}), got {bad[:5]}")
        return "".join(self.alphabet[i] for i in ids)


def as_generator(generator: torch.Generator | int | None) -> torch.Generator | None:
    """An int seeds a fresh CPU generator; None uses torch's global RNG."""
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, int):
        return torch.Generator().manual_seed(generator)
    raise ValueError(
        f"generator must be a torch.Generator, an int seed or None, got {type(generator).__name__}"
    )


def _positive(name: str, value, minimum: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name}={value!r} must be an integer >= {minimum}")


class Task:
    """A synthetic sequence task. Subclasses implement `sequences`; `batch` shifts them for next-token
    loss."""

    name = "task"

    def __init__(self, length: int, n_symbols: int):
        _positive("length", length, 2)
        _positive("n_symbols", n_symbols, 2)
        if n_symbols > len(SYMBOLS):
            raise ValueError(f"n_symbols={n_symbols} must be <= {len(SYMBOLS)}")
        self.length, self.n_symbols = length, n_symbols
        self.tokenizer = CharTokenizer(SPECIALS + SYMBOLS[:n_symbols])

    @property
    def vocab_size(self) -> int:
        return len(SPECIALS) + self.n_symbols

    @property
    def seq_len(self) -> int:
        """Tokens in one full sequence (the model sees seq_len - 1 inputs)."""
        raise NotImplementedError

    def args(self) -> dict:
        """Constructor arguments (for model cards): `make_task(task.name, **task.args())` rebuilds the
        task."""
        return {"length": self.length, "n_symbols": self.n_symbols}

    def sequences(self, batch_size: int, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(tokens (B, seq_len) long, scored (B, seq_len) bool: True where the token is to be predicted)."""
        raise NotImplementedError

    def batch(self, batch_size: int, generator=None):
        """(x, y, loss_mask), each (B, seq_len - 1): y[:, t] = x's next token; loss only where loss_mask."""
        _positive("batch_size", batch_size)
        tokens, scored = self.sequences(batch_size, as_generator(generator))
        return tokens[:, :-1], tokens[:, 1:], scored[:, 1:]

    def _symbols(self, shape, generator) -> torch.Tensor:
        return len(SPECIALS) + torch.randint(self.n_symbols, shape, generator=generator)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.args().items())
        return f"{type(self).__name__}({args})"


class _MapTask(Task):
    """`^ s | f(s)`: the answer f(s) (length n) is scored, the question s is not."""

    @property
    def seq_len(self) -> int:
        return 2 * self.length + 2

    def answer(self, s: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def sequences(self, batch_size, generator=None):
        _positive("batch_size", batch_size)
        s = self._symbols((batch_size, self.length), as_generator(generator))  # (B, n)
        col = lambda tok: torch.full((batch_size, 1), tok, dtype=torch.long)
        tokens = torch.cat([col(BOS), s, col(SEP), self.answer(s)], 1)  # (B, 2n + 2)
        scored = torch.zeros_like(tokens, dtype=torch.bool)
        scored[:, self.length + 2 :] = True
        return tokens, scored


class CopyTask(_MapTask):
    name = "copy"

    def answer(self, s):
        return s


class ReverseTask(_MapTask):
    name = "reverse"

    def answer(self, s):
        return s.flip(-1)


class SortTask(_MapTask):
    name = "sort"

    def answer(self, s):
        return s.sort(-1).values


def repeated_tokens(
    batch_size: int,
    period: int,
    n_symbols: int,
    generator=None,
    offset: int = len(SPECIALS),
    bos: int | None = BOS,
) -> torch.Tensor:
    """`[bos] r r` with r a random sequence of `period` *distinct* ids in [offset, offset + n_symbols).

    The induction probe: in the second copy, position i should attend to i - period + 1, the token that
    followed the previous occurrence of its own token. Shape (B, period * 2 [+ 1]).
    """
    _positive("period", period)
    if n_symbols < period:
        raise ValueError(f"period={period} distinct tokens need n_symbols >= {period}, got {n_symbols}")
    g = as_generator(generator)
    r = offset + torch.rand(batch_size, n_symbols, generator=g).argsort(-1)[:, :period]  # (B, period)
    parts = [r, r] if bos is None else [torch.full((batch_size, 1), bos, dtype=torch.long), r, r]
    return torch.cat(parts, 1)


def tiled_repeats(
    batch_size: int, length: int, n_symbols: int, *, min_period: int = 4, generator=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens, scored), each (B, length): every row repeats r, p distinct random ids in [0, n_symbols), end
    to end (r r r ...), p drawn per row from [min_period, length // 2]; a token is scored from the second
    copy on. Training rows for induction: since p varies, only looking up the current token's earlier
    occurrence predicts the next one."""
    _positive("batch_size", batch_size)
    if not 2 <= min_period <= length // 2 or n_symbols < length // 2:
        raise ValueError(
            f"need 2 <= min_period <= length // 2 <= n_symbols, got min_period={min_period}, "
            f"length={length}, n_symbols={n_symbols}"
        )
    g = as_generator(generator)
    period = torch.randint(min_period, length // 2 + 1, (batch_size, 1), generator=g)  # (B, 1)
    r = torch.rand(batch_size, n_symbols, generator=g).argsort(-1)  # (B, S): r = its first p ids
    pos = torch.arange(length)[None, :]  # (1, length)
    return r.gather(1, pos % period), pos >= period


class InductionTask(Task):
    """`^ filler r r`: r has n distinct symbols, n drawn per row from [min_length, length]; filler (symbols
    not in r) pads every row to the same length. Only the second copy of r is scored.

    Varying n moves the repeat to a different distance in every row, so the model cannot solve the task with
    positional attention ("look back exactly n") and must learn the content-based induction mechanism:
    a previous-token head, then a head that attends to the token after the earlier occurrence of the current
    one."""

    name = "induction"

    def __init__(self, length: int, n_symbols: int, min_length: int | None = None):
        super().__init__(length, n_symbols)
        self.min_length = max(2, length // 2) if min_length is None else min_length
        _positive("min_length", self.min_length, 2)
        if self.min_length > length:
            raise ValueError(f"min_length={self.min_length} must be <= length={length}")
        if n_symbols <= length:
            raise ValueError(
                f"n_symbols={n_symbols} must exceed length={length} (r is distinct, filler differs)"
            )

    @property
    def seq_len(self) -> int:
        return 2 * self.length + 1

    def args(self) -> dict:
        return {**super().args(), "min_length": self.min_length}

    def sequences(self, batch_size, generator=None):
        _positive("batch_size", batch_size)
        g = as_generator(generator)
        B, S, L2 = batch_size, self.n_symbols, 2 * self.length
        perm = torch.rand(B, S, generator=g).argsort(-1)  # (B, S): r = perm[:n], filler from perm[n:]
        n = torch.randint(self.min_length, self.length + 1, (B, 1), generator=g)  # (B, 1)
        fill = L2 - 2 * n  # filler tokens per row
        p = torch.arange(L2)[None, :]  # (1, 2L)
        filler_idx = n + (torch.rand(B, L2, generator=g) * (S - n)).long()  # an index into perm[n:]
        repeat_idx = (p - fill).clamp(min=0) % n
        body = perm.gather(1, torch.where(p < fill, filler_idx, repeat_idx)) + len(SPECIALS)  # (B, 2L)
        tokens = torch.cat([torch.full((B, 1), BOS, dtype=torch.long), body], 1)
        scored = torch.cat([torch.zeros(B, 1, dtype=torch.bool), p > fill + n], 1)
        return tokens, scored

    def probe(self, batch_size: int, generator=None) -> torch.Tensor:
        """Clean `^ r r` sequences of the full length (B, seq_len) for measuring induction scores."""
        return repeated_tokens(batch_size, self.length, self.n_symbols, generator)


TASKS: dict[str, type[Task]] = {t.name: t for t in (CopyTask, ReverseTask, SortTask, InductionTask)}


def make_task(name: str, **kwargs) -> Task:
    """`make_task("sort", length=8, n_symbols=10)`."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; expected one of {sorted(TASKS)}")
    return TASKS[name](**kwargs)


BERT_SPLIT = (
    0.8,
    0.1,
    0.1,
)  # of the chosen tokens: [MASK], a random symbol, left unchanged (Devlin et al., 2019)


def mask_tokens(
    tokens: torch.Tensor,
    mask_prob: float = 0.15,
    generator=None,
    mask_id: int = MASK,
    n_specials: int = len(SPECIALS),
    split: tuple[float, float, float] | None = BERT_SPLIT,
    vocab_size: int | None = None,
):
    """Masked-LM inputs: choose a random `mask_prob` of the non-special tokens for the model to predict.

    BERT's rule (`split=(0.8, 0.1, 0.1)`, the default): of the chosen tokens, 80 % are replaced by `mask_id`,
    10 % by a random symbol (uniform over ids [n_specials, vocab_size); it may happen to equal the original)
    and 10 % are left unchanged. All chosen tokens are scored, so the model cannot tell from the input which
    visible tokens it will be asked about, and must keep a good representation of every token — `[MASK]` never
    occurs at fine-tuning time. `split=None` (or `(1, 0, 0)`) hides every chosen token behind `mask_id`.
    `vocab_size` defaults to the largest id in `tokens` + 1; pass the real one (e.g. `task.vocab_size`).

    Returns (inputs, targets, loss_mask), each (B, T): targets are the original tokens *at the same positions*
    (no shift: an encoder sees both sides), loss_mask marks the chosen ones. At least one token per row is
    chosen."""
    if not 0.0 < mask_prob <= 1.0:
        raise ValueError(f"mask_prob={mask_prob} must lie in (0, 1]")
    if tokens.dim() != 2:
        raise ValueError(f"tokens must be (B, T), got shape {tuple(tokens.shape)}")
    split = (1.0, 0.0, 0.0) if split is None else tuple(float(v) for v in split)
    if len(split) != 3 or min(split) < 0 or abs(sum(split) - 1.0) > 1e-6:
        raise ValueError(
            f"split={split} must be three non-negative shares ([MASK], random, unchanged) summing to 1"
        )
    maskable = tokens >= n_specials
    if not maskable.any(-1).all():
        raise ValueError("every row needs at least one non-special token to mask")
    vocab_size = int(tokens.max()) + 1 if vocab_size is None else vocab_size
    if vocab_size <= n_specials:
        raise ValueError(f"vocab_size={vocab_size} must exceed n_specials={n_specials}")
    g = as_generator(generator)
    u = torch.rand(tokens.shape, generator=g).masked_fill(~maskable, 2.0)
    chosen = (u < mask_prob) | (u == u.min(-1, keepdim=True).values)  # the row's lowest draw is always chosen
    if split == (1.0, 0.0, 0.0):  # no further draws: the same generator gives the same masks as before
        return tokens.masked_fill(chosen, mask_id), tokens, chosen
    how = torch.rand(tokens.shape, generator=g)
    to_mask = chosen & (how < split[0])
    to_random = chosen & (how >= split[0]) & (how < split[0] + split[1])
    random_ids = torch.randint(n_specials, vocab_size, tokens.shape, generator=g)
    inputs = torch.where(to_random, random_ids, tokens).masked_fill(to_mask, mask_id)
    return inputs, tokens, chosen
