"""Precomputed rewrites: rephrase chains in interaction logs, solved as an absorbing Markov chain.

Within one session, a request that failed and was followed within
:attr:`MiningConfig.window_ms` by a similar request starts a *rephrase chain*
that ends at the first success (or at the user giving up). Every normalised
form (:func:`streams.rewrite.form`) is a transient state; every chain moves
from form to form and is absorbed either in "succeeded as form g" or in
"failed". Requests that succeed at once are one-step chains into their own
success, so a form that usually works keeps its own success as the likeliest
end.

With transient-to-transient probabilities ``Q`` and transient-to-absorbing
``R``, the absorption probabilities are ``B = (I - Q)^-1 R``. We never invert:
``(I - Q)^T`` is factorised once with ``scipy.sparse.linalg.splu`` and each
candidate's row of ``B`` is one sparse triangular solve (in batches). A rule
``form -> rewrite`` is kept when the form started at least ``min_support``
chains, its best other success has probability at least
``min_probability``, and that beats succeeding as itself.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import structlog
from rapidfuzz import fuzz
from scipy.sparse.linalg import splu

from models.rewrite import Candidate
from streams.rewrite import Interaction, Outcome, RewriteRule, RewriteSource, form

log = structlog.get_logger(__name__)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class MiningConfig:
    """How chains are cut and which mined pairs are kept.

    window_ms: the longest gap between two requests of one chain (default 45 s).
    min_similarity: the least rapidfuzz token-set ratio, 0-100, between a
        request and the next for them to be one chain (default 40).
    min_support: chains that must start at a form before it gets a rule (default 3).
    min_probability: the least absorption probability of the rewrite (default 0.5).
    batch: candidate rows of ``B`` solved per call (memory: states x batch floats).
    """

    window_ms: int = 45_000
    min_similarity: float = 40.0
    min_support: int = 3
    min_probability: float = 0.5
    batch: int = 256

    def __post_init__(self) -> None:
        if self.window_ms <= 0:
            raise ValueError(f"window_ms must be > 0, got {self.window_ms}")
        if not 0.0 <= self.min_similarity <= 100.0:
            raise ValueError(f"min_similarity must be in [0, 100], got {self.min_similarity}")
        if self.min_support < 1:
            raise ValueError(f"min_support must be >= 1, got {self.min_support}")
        if not 0.0 < self.min_probability <= 1.0:
            raise ValueError(f"min_probability must be in (0, 1], got {self.min_probability}")
        if self.batch < 1:
            raise ValueError(f"batch must be >= 1, got {self.batch}")


@dataclasses.dataclass(frozen=True, slots=True)
class Chain:
    """One rephrase chain: the forms in order and whether the last one succeeded."""

    forms: tuple[str, ...]
    success: bool


def _similar(a: str, b: str, config: MiningConfig) -> bool:
    return fuzz.token_set_ratio(a, b) >= config.min_similarity


#: What chains are cut from: (session_id, ts ms, form, succeeded), small enough to sort 1 M.
Turn = tuple[str, int, str, bool]


def turn(record: Interaction) -> Turn:
    """The parts of ``record`` that chains are cut from."""
    return (record.session_id, record.ts, form(record.utterance),
            record.outcome is Outcome.SUCCESS)


def chains(records: Iterable[Interaction], config: MiningConfig | None = None) -> Iterator[Chain]:
    """Cut each session's requests into rephrase chains.

    ``records`` must come grouped by session and in time order within one
    (sort :func:`turn` tuples for logs that are not, as :func:`mine_logs` does).
    A chain is cut after a success, after a gap longer than the window, and
    between two requests that are not similar.
    """
    return chains_of_turns((turn(r) for r in records), config)


def chains_of_turns(turns: Iterable[Turn], config: MiningConfig | None = None
                    ) -> Iterator[Chain]:
    """:func:`chains` over :data:`Turn` tuples."""
    config = config or MiningConfig()
    current: list[str] = []
    session = ""
    last_ts = 0
    for session_id, ts, f, ok in turns:
        if current and (session_id != session or ts - last_ts > config.window_ms
                        or not _similar(current[-1], f, config)):
            yield Chain(tuple(current), False)
            current = []
        session, last_ts = session_id, ts
        if not f:
            continue
        current.append(f)
        if ok:
            yield Chain(tuple(current), True)
            current = []
    if current:
        yield Chain(tuple(current), False)


@dataclasses.dataclass(slots=True)
class ChainCounts:
    """Transition counts between forms and into absorbing outcomes, built chain by chain."""

    index: dict[str, int] = dataclasses.field(default_factory=dict)
    moves: Counter[tuple[int, int]] = dataclasses.field(default_factory=Counter)
    succeeded: Counter[tuple[int, int]] = dataclasses.field(default_factory=Counter)
    failed: Counter[int] = dataclasses.field(default_factory=Counter)
    starts: Counter[int] = dataclasses.field(default_factory=Counter)

    def _id(self, f: str) -> int:
        i = self.index.get(f)
        if i is None:
            i = self.index[f] = len(self.index)
        return i

    def add(self, chain: Chain) -> None:
        """Count one chain's moves and its end."""
        ids = [self._id(f) for f in chain.forms]
        self.starts[ids[0]] += 1
        for a, b in itertools.pairwise(ids):
            self.moves[a, b] += 1
        if chain.success:
            self.succeeded[ids[-1], ids[-1]] += 1
        else:
            self.failed[ids[-1]] += 1


def absorption_rows(counts: ChainCounts, sources: list[int], batch: int = 256
                    ) -> sp.csr_matrix:
    """Rows ``sources`` of ``B = (I - Q)^-1 R``: per source, the probability of ending in
    each form's success (columns 0..n-1, by form id) or in failure (column n).

    Solved by one sparse LU of ``(I - Q)^T``; no dense inverse.
    """
    n = len(counts.index)
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    for (a, b), c in counts.moves.items():
        rows.append(a)
        cols.append(b)
        vals.append(c)
    moves = sp.csr_matrix((vals, (rows, cols)), shape=(n, n), dtype=np.float64)
    r_rows = [a for (a, _b) in counts.succeeded] + list(counts.failed)
    r_cols = [b for (_a, b) in counts.succeeded] + [n] * len(counts.failed)
    r_vals = [float(c) for c in counts.succeeded.values()]
    r_vals += [float(c) for c in counts.failed.values()]
    absorb = sp.csr_matrix((r_vals, (r_rows, r_cols)), shape=(n, n + 1), dtype=np.float64)
    out_total = np.asarray(moves.sum(axis=1)).ravel() + np.asarray(absorb.sum(axis=1)).ravel()
    scale = sp.diags(np.divide(1.0, out_total, out=np.zeros(n), where=out_total > 0))
    q = (scale @ moves).tocsc()
    r = (scale @ absorb).tocsr()
    lu = splu((sp.identity(n, format="csc") - q).T.tocsc())
    parts = []
    for start in range(0, len(sources), batch):
        chunk = sources[start:start + batch]
        rhs = np.zeros((n, len(chunk)))
        rhs[chunk, np.arange(len(chunk))] = 1.0
        # y_s^T = e_s^T (I - Q)^-1, so B[s, :] = y_s^T R.
        y = lu.solve(rhs)
        parts.append(sp.csr_matrix(r.T @ y).T)
    if not parts:
        return sp.csr_matrix((0, n + 1))
    return sp.vstack(parts).tocsr()


def mine(records: Iterable[Interaction], config: MiningConfig | None = None, *,
         mined_at_ms: int = 0) -> list[RewriteRule]:
    """Mine rewrite rules from interaction ``records`` grouped by session in time order."""
    config = config or MiningConfig()
    counts = ChainCounts()
    for chain in chains(records, config):
        counts.add(chain)
    return rules_from_counts(counts, config, mined_at_ms=mined_at_ms)


def mine_logs(records: Iterable[Interaction], config: MiningConfig | None = None, *,
              mined_at_ms: int = 0) -> list[RewriteRule]:
    """Mine ``records`` in any order: keep one small :data:`Turn` per record, sort, mine."""
    config = config or MiningConfig()
    turns = sorted(turn(r) for r in records)
    counts = ChainCounts()
    for chain in chains_of_turns(turns, config):
        counts.add(chain)
    del turns
    return rules_from_counts(counts, config, mined_at_ms=mined_at_ms)


def rules_from_counts(counts: ChainCounts, config: MiningConfig, *,
                      mined_at_ms: int = 0) -> list[RewriteRule]:
    """Solve the chain and keep the pairs above the support and probability thresholds."""
    leaves = {a for (a, b) in counts.moves if a != b}
    sources = sorted(s for s in leaves if counts.starts[s] >= config.min_support)
    if not sources:
        return []
    b = absorption_rows(counts, sources, config.batch)
    forms = list(counts.index)
    rules = []
    for row, s in enumerate(sources):
        line = b.getrow(row)
        own = float(line[0, s])
        best, best_p = -1, 0.0
        for col, p in zip(line.indices, line.data, strict=True):
            if col != s and col < len(forms) and p > best_p:
                best, best_p = int(col), float(p)
        if best >= 0 and best_p >= config.min_probability and best_p > own:
            rules.append(RewriteRule(form=forms[s], rewrite=forms[best], probability=best_p,
                                     support=counts.starts[s], mined_at_ms=mined_at_ms))
    log.info("rewrites-mined", forms=len(forms), candidates=len(sources), rules=len(rules))
    return rules


def withdrawn(previous: Iterable[RewriteRule], current: Iterable[RewriteRule], *,
              mined_at_ms: int = 0) -> list[RewriteRule]:
    """Empty-rewrite records for the forms ``previous`` had a rule for and ``current`` lacks."""
    kept = {r.form for r in current}
    return [RewriteRule(form=r.form, rewrite="", probability=0.0, support=0,
                        mined_at_ms=mined_at_ms)
            for r in previous if r.rewrite and r.form not in kept]


class PrecomputedLayer:
    """The mined table as a :class:`models.rewrite.Layer`: look the request's form up."""

    def __init__(self, rules: Iterable[RewriteRule], *, min_score: float = 0.0) -> None:
        self.rules: dict[str, RewriteRule] = {}
        for rule in rules:
            if rule.rewrite:
                self.rules[rule.form] = rule
            else:
                self.rules.pop(rule.form, None)
        self.min_score = min_score

    @classmethod
    def from_file(cls, path: str | Path, *, min_score: float = 0.0) -> PrecomputedLayer:
        """Load a table written by :func:`write_rules` (bad lines skipped and reported)."""
        from models.rewrite.logs import read_rules

        return cls(read_rules(path), min_score=min_score)

    def learn(self, interaction: Interaction) -> None:
        """Nothing: the table changes only when it is mined again."""

    def propose(self, user_id: str, utterance: str,
                context: Mapping[str, Any] | None = None) -> Candidate | None:
        """The mined rewrite of ``utterance``'s form, if there is one scoring ``min_score``."""
        rule = self.rules.get(form(utterance))
        if rule is None or rule.probability < self.min_score:
            return None
        return Candidate(rule.rewrite, RewriteSource.PRECOMPUTED, rule.probability)
