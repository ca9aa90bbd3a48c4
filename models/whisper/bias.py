"""Shallow-fusion context biasing: a prefix trie over the tokens of context phrases.

During beam search every token that extends a phrase (from where the
hypothesis is in the trie, or from the trie's root) gets a bonus of ``weight``
nats; when a hypothesis leaves a phrase before its end, every bonus it took
for that partial match is taken back. Only completed phrases keep their bonus,
so common first tokens of names do not leak into ordinary sentences.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Protocol

import numpy as np
import numpy.typing as npt


class _Encoder(Protocol):
    def encode(self, text: str) -> list[int]: ...


@dataclasses.dataclass(frozen=True, slots=True)
class BiasState:
    """Where a hypothesis is in the trie, and the bonus it would lose by leaving."""

    node: int = 0
    pending: float = 0.0
    #: A phrase was just completed: the next token may not start one again at once,
    #: which would reward saying the name twice.
    after_phrase: bool = False
    #: Phrases (their end nodes) this hypothesis has completed: a second time earns
    #: nothing, or the search would reward repeating a name or the whole sentence.
    done: frozenset[int] = frozenset()


class BiasTrie:
    """Token trie of the context phrases with a per-request bonus ``weight`` (nats/token)."""

    def __init__(self, sequences: Iterable[tuple[int, ...]], weight: float) -> None:
        if weight < 0:
            raise ValueError("bias weight must be >= 0")
        self.weight = weight
        self.children: list[dict[int, int]] = [{}]
        self.terminal: list[bool] = [False]
        for seq in sequences:
            node = 0
            for t in seq:
                nxt = self.children[node].get(t)
                if nxt is None:
                    nxt = len(self.children)
                    self.children[node][t] = nxt
                    self.children.append({})
                    self.terminal.append(False)
                node = nxt
            if node:
                self.terminal[node] = True

    @classmethod
    def empty(cls) -> BiasTrie:
        """Return a trie that biases nothing."""
        return cls([], 0.0)

    @classmethod
    def from_phrases(cls, phrases: Iterable[str], tokenizer: _Encoder,
                     weight: float = 2.0, *, endings: tuple[str, ...] = ("",)) -> BiasTrie:
        """Build from phrases, each as Whisper may write it: with and without a leading
        space, capitalised or not, followed by each of ``endings`` (e.g. ".")."""
        seqs: set[tuple[int, ...]] = set()
        for phrase in phrases:
            phrase = " ".join(phrase.split())
            if not phrase:
                continue
            forms = {phrase, phrase[0].upper() + phrase[1:]}
            for form in forms:
                for end in endings:
                    seqs.add(tuple(tokenizer.encode(" " + form + end)))
                    seqs.add(tuple(tokenizer.encode(form + end)))
        return cls(sorted(seqs), weight)

    def __len__(self) -> int:
        return sum(self.terminal)

    def allowed(self, node: int, vocab: int, eot: int) -> npt.NDArray[np.float64]:
        """As a grammar: 0 for tokens that continue a phrase from ``node`` (and end of
        text where a phrase is complete), minus infinity for everything else."""
        vec = np.full(vocab, -np.inf)
        for t in self.children[node]:
            vec[t] = 0.0
        if self.terminal[node]:
            vec[eot] = 0.0
        return vec

    def step(self, node: int, token: int) -> int:
        """As a grammar: the node after ``token`` (the caller only offers allowed tokens)."""
        return self.children[node].get(token, 0)

    def start(self) -> BiasState:
        """Return the state of a hypothesis that has matched nothing."""
        return BiasState()

    def bonus_vector(self, state: BiasState, vocab: int) -> npt.NDArray[np.float64]:
        """Return each next token's bonus (or take-back) for a hypothesis in ``state``."""
        vec = np.full(vocab, -state.pending)
        if self.weight == 0:
            return vec
        if not state.after_phrase:
            for t in self.children[0]:
                vec[t] = self.weight - state.pending
        if state.node:
            for t in self.children[state.node]:
                vec[t] = self.weight
        return vec

    def advance(self, state: BiasState, token: int) -> BiasState:
        """Return the state after ``token``."""
        nxt = self.children[state.node].get(token)
        pending = state.pending + self.weight
        if nxt is None and not state.after_phrase:
            nxt = self.children[0].get(token)
            pending = self.weight
        if nxt is None:
            return BiasState(done=state.done)
        if self.terminal[nxt]:
            after = nxt if self.children[nxt] else 0
            if nxt in state.done:
                # Said again: the bonus of this match is taken back at the next token.
                return BiasState(after, pending, after_phrase=True, done=state.done)
            # The phrase is complete: its bonus is kept for good.
            return BiasState(after, 0.0, after_phrase=True, done=state.done | {nxt})
        return BiasState(nxt, pending, done=state.done)
