"""Text to ids: a word tokenizer and a vocabulary fitted on training texts only.

Tokens are lower-cased words matched by :data:`TOKEN_PATTERN` — the same
analyzer scikit-learn's ``CountVectorizer(lowercase=True,
token_pattern=TOKEN_PATTERN)`` applies, which is what fits the vocabulary.
Encoding a fitted vocabulary needs only ``re`` and NumPy, so a scoring process
never imports scikit-learn.

Ids: ``PAD = 0`` (padding after a sequence's end), ``OOV = 1`` (a word not in
the vocabulary), ``SEP = 2`` (between an optional context, such as the
question, and the answer). Words follow, most frequent first. A vocabulary may
also hold *aliases*: words outside it that read as the id of a word inside it
(:meth:`Vocabulary.alias`: the nearest by the teacher's word vectors), so that
a rare or unseen word a teacher knows is not an OOV to its student.

An encoded batch is ``ids`` (n, L) int32, right-padded with PAD, plus
``lengths`` (n,) int32, the true number of tokens of each row (0 for an empty
answer without context). ``L`` is the longest row, capped at ``max_len``.
With a context the sequence is ``context tokens + [SEP] + answer tokens``;
when that is longer than ``max_len``, the context is cut first (down to
``max_len // 2`` tokens), then the answer's tail.
"""
from __future__ import annotations

import re

import numpy as np

TOKEN_PATTERN = r"(?u)\b\w+\b"
#: a word longer than this never enters a vocabulary (it encodes as OOV): no real word is that
#: long, and a model file's reader refuses longer tokens (they would pad every token's storage)
MAX_TOKEN_CHARS = 256
PAD, OOV, SEP = 0, 1, 2
SPECIAL_TOKENS = ("<pad>", "<oov>", "<sep>")
_token_re = re.compile(TOKEN_PATTERN)


def as_list(values, name="texts"):
    """``list(values)`` for a sequence of texts (or labels, ids, …); a single string is a
    ``TypeError`` naming the argument — ``list("acid rain")`` would be one text per character."""
    if isinstance(values, (str, bytes)):
        raise TypeError(f"{name} must be a sequence (one value per answer), not a single string; "
                        f"wrap it in a list: [{values[:20]!r}]")
    try:
        return list(values)
    except TypeError:
        raise TypeError(f"{name} must be a sequence (one value per answer), got {type(values).__name__}") from None


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens of ``text`` (``None`` and a float NaN — an empty cell — count as empty)."""
    if text is None or (isinstance(text, float) and text != text):
        return []
    return _token_re.findall(str(text).lower())


class Vocabulary:
    """Word → id map, fitted on training texts (and their contexts) only.

    Parameters
    ----------
    max_size : int
        Largest number of ids, the three special ids included.
    min_count : int
        A word must occur at least this many times in the training texts.
    max_len : int
        Longest encoded sequence (tokens); longer ones are cut.
    """

    def __init__(self, max_size: int = 2000, min_count: int = 1, max_len: int = 100):
        if max_size < len(SPECIAL_TOKENS) + 1:
            raise ValueError(f"max_size must be at least {len(SPECIAL_TOKENS) + 1}, got {max_size}")
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        if max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {max_len}")
        self.max_size = int(max_size)
        self.min_count = int(min_count)
        self.max_len = int(max_len)
        self.tokens: list[str] = list(SPECIAL_TOKENS)
        self._index: dict[str, int] = {t: i for i, t in enumerate(self.tokens)}
        self.aliases: dict[str, int] = {}  #: a word outside the vocabulary → the id it reads as

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, word) -> bool:
        """Whether ``word`` is a vocabulary word (an alias is not)."""
        return word in self._index

    def fit(self, texts, contexts=None) -> "Vocabulary":
        """Count words with scikit-learn's vectorizer and keep the most frequent.

        Ties in count are broken alphabetically, so a fit is deterministic.
        """
        from sklearn.feature_extraction.text import CountVectorizer

        docs = ["" if t is None else str(t) for t in as_list(texts, "texts")]
        if contexts is not None:
            docs += sorted({"" if c is None else str(c) for c in contexts})
        vec = CountVectorizer(lowercase=True, token_pattern=TOKEN_PATTERN)
        try:
            counts = np.asarray(vec.fit_transform(docs).sum(axis=0)).ravel()
            words = vec.get_feature_names_out()
        except ValueError:  # every document empty: no words at all
            counts, words = np.zeros(0, dtype=np.int64), np.array([], dtype=str)
        keep = (counts >= self.min_count) & (np.char.str_len(words.astype(str)) <= MAX_TOKEN_CHARS)
        words, counts = words[keep], counts[keep]
        order = np.lexsort((words, -counts))  # count descending, then word
        room = self.max_size - len(SPECIAL_TOKENS)
        self.tokens = list(SPECIAL_TOKENS) + [str(w) for w in words[order][:room]]
        self._index = {t: i for i, t in enumerate(self.tokens)}
        self.aliases = {}
        return self

    def alias(self, words, vectors) -> "Vocabulary":
        """Give each of ``words`` outside the vocabulary the id of the vocabulary word whose vector is nearest
        (cosine) to its own; ``vectors`` (len(words), H), one row per word (a vocabulary word without a row
        is never chosen). Words longer than :data:`MAX_TOKEN_CHARS`, or not single tokens, are left out."""
        words = [str(w) for w in as_list(words, "words")]
        v = np.asarray(vectors, dtype=np.float64)
        if v.ndim != 2 or len(v) != len(words) or not np.isfinite(v).all():
            raise ValueError(f"vectors must be one finite row per word: {len(words)} words, vectors of shape {v.shape}")
        norm = np.linalg.norm(v, axis=1, keepdims=True)
        v = v / np.where(norm > 0, norm, 1.0)
        row = {w: k for k, w in enumerate(words)}
        inside = [(i, row[t]) for i, t in enumerate(self.tokens) if i >= len(SPECIAL_TOKENS) and t in row]
        out = [k for k, w in enumerate(words) if w not in self._index and len(w) <= MAX_TOKEN_CHARS
               and tokenize(w) == [w]]
        self.aliases = {}
        if not inside or not out:
            return self
        ids = np.array([i for i, _ in inside])
        table = v[[k for _, k in inside]]
        for lo in range(0, len(out), 4096):  # (chunk, V) similarities at a time
            part = out[lo:lo + 4096]
            best = (v[part] @ table.T).argmax(axis=1)
            self.aliases.update((words[k], int(ids[b])) for k, b in zip(part, best))
        return self

    def _ids(self, text) -> list[int]:
        get, alias = self._index.get, self.aliases.get
        # a word's id is never 0 (PAD): the aliases are looked up only for the words outside the vocabulary
        return [get(tok) or alias(tok, OOV) for tok in tokenize(text)]

    def encode(self, texts, contexts=None, max_len: int | None = None):
        """Encode texts (and optional contexts) to ``(ids, lengths)``.

        Returns
        -------
        ids : (n, L) int32, PAD after each row's end; L = max(lengths) (at least 1).
        lengths : (n,) int32, true token counts, ``0 <= lengths <= max_len``.
        """
        max_len = self.max_len if max_len is None else int(max_len)
        texts = as_list(texts, "texts")
        if contexts is not None:
            contexts = as_list(contexts, "contexts")
            if len(contexts) != len(texts):
                raise ValueError(f"got {len(texts)} texts but {len(contexts)} contexts")
        rows = []
        ctx_cache: dict = {}
        for k, text in enumerate(texts):
            ans = self._ids(text)
            if contexts is None:
                seq = ans[:max_len]
            else:
                c = contexts[k]
                if c not in ctx_cache:
                    ctx_cache[c] = self._ids(c)
                ctx = ctx_cache[c]
                room_for_ctx = max(max_len - 1 - len(ans), max_len // 2)
                seq = (ctx[:room_for_ctx] + [SEP] + ans)[:max_len]
            rows.append(seq)
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int32, count=len(rows))
        width = max(1, int(lengths.max()) if len(rows) else 1)
        ids = np.zeros((len(rows), width), dtype=np.int32)
        for k, r in enumerate(rows):
            ids[k, : len(r)] = r
        return ids, lengths

    # --- serialisation (plain data, no pickle) ---
    def to_config(self) -> dict:
        return {"max_size": self.max_size, "min_count": self.min_count, "max_len": self.max_len}

    @classmethod
    def from_tokens(cls, tokens, config: dict, aliases=None) -> "Vocabulary":
        """The vocabulary of ``tokens`` (id = position) and ``aliases`` ``(words, ids)`` (None: none)."""
        tokens = [str(t) for t in tokens]
        if tuple(tokens[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise ValueError("vocabulary does not start with the special tokens <pad>, <oov>, <sep>")
        vocab = cls(**config)
        vocab.tokens = tokens
        vocab._index = {t: i for i, t in enumerate(tokens)}
        if aliases is not None:
            words, ids = [str(w) for w in aliases[0]], [int(i) for i in aliases[1]]
            if len(words) != len(ids):
                raise ValueError(f"{len(words)} alias words but {len(ids)} alias ids")
            bad = next((k for k, (w, i) in enumerate(zip(words, ids))
                        if w in vocab._index or not len(SPECIAL_TOKENS) <= i < len(tokens)), None)
            if bad is not None:
                raise ValueError(f"alias {bad} ({words[bad]!r} → {ids[bad]}) is a vocabulary word or reads as an "
                                 f"id outside {len(SPECIAL_TOKENS)}..{len(tokens) - 1}")
            vocab.aliases = dict(zip(words, ids))
            if len(vocab.aliases) != len(words):
                raise ValueError("an alias word is given twice")
        return vocab
