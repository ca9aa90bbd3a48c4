"""Online rewrites: retrieve successful requests near what was heard, rank them, decide.

:class:`OnlineRewriter` is a :class:`models.rewrite.Layer`. ``learn`` keeps
counts of every request form's successes and defects and indexes the
embeddings (:class:`models.rewrite.embedder.Embedder`) of successful forms:

- a **global index** over distinct successful forms across users (usearch
  HNSW, cosine over vectors stored as int8), with how often each
  succeeded and the intent it was last understood as;
- a **personal index** per user (an exact search over the user's own
  successful forms, at most ``personal_size`` of them, the least used evicted
  first) and the user's intents with their success counts.

``propose`` embeds the request, takes the ``global_k`` nearest global forms
and the ``personal_k`` nearest of the user's, never the request's own form,
and scores each with a logistic model over :data:`FEATURES`: similarity, the
candidate's global and personal success counts, the user's affinity for its
intent, whether it fits the device context, and how the request itself has
fared (a request that keeps succeeding is left alone). The best candidate is
proposed when its probability reaches ``threshold``; its source is
``online-personal`` when the user has succeeded with it, else
``online-global``. ``learn`` also follows each session: a defect followed
within ``window_ms`` by a success (with only defects between) is a rephrase
chain, and the success's form is remembered as a fix of the defect's form,
globally and for the user; known fixes join the candidates and the
``fixed_before`` features count them, so a rephrase helps the next request
at once, without waiting for the next mining run.

The model's weights start from :data:`PRIOR_WEIGHTS`, hand-set so that an
unfitted layer behaves sensibly; :meth:`OnlineRewriter.fit` learns them from
logs (rephrase chains give the labels) and measures their calibration on
records it did not fit on. Interaction logs carry no device context, so the
context weight cannot be fitted and keeps its prior.

:meth:`OnlineRewriter.save` and :meth:`OnlineRewriter.load` keep all of it
on disk (the usearch index, the personal vectors, counts, fixes, open
rephrase chains and weights), so a worker restarts without embedding its
history again.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from models.rewrite import Candidate
from streams.rewrite import Interaction, Outcome, RewriteSource, form

#: The ranker's inputs, in the order of its weights.
FEATURES = (
    "similarity",  # cosine of request and candidate
    "fixed_before",  # log1p(how often a user's rephrase chain went from the request to it)
    "personal_fixed_before",  # log1p(how often this user's did)
    "candidate_successes",  # log1p(how often anyone succeeded with the candidate)
    "personal_successes",  # log1p(how often this user did)
    "intent_affinity",  # share of this user's successes with the candidate's intent
    "context_fit",  # 1 when the candidate fits the device context and the request does not
    "request_successes",  # log1p(successes of the request's own form, anyone)
    "request_defects",  # log1p(defects of the request's own form, anyone)
    "personal_request_successes",  # log1p(this user's successes with the request)
    "personal_request_defects",  # log1p(this user's defects with the request)
)
_CONTEXT = FEATURES.index("context_fit")
_PERSONAL = [FEATURES.index(f) for f in ("personal_fixed_before", "personal_successes",
                                         "intent_affinity",
                                         "personal_request_successes",
                                         "personal_request_defects")]

#: Starting weights (intercept first), hand-set: a near, often-successful
#: candidate for a request that keeps failing is rewritten; a request that
#: keeps succeeding, or one with nothing near it, is left alone.
PRIOR_WEIGHTS = np.array([-7.0, 6.0, 1.0, 1.5, 0.3, 1.5, 1.0, 1.0, -2.0, 1.0, -3.0, 1.0])
#: Sessions whose unfixed defects are remembered (the oldest forgotten first).
PENDING_SESSIONS = 100_000
#: Bumped when what :meth:`OnlineRewriter.save` writes changes; older saves are refused.
STATE_FORMAT = 1


class OnlineStateError(Exception):
    """A saved layer cannot be loaded; ``code`` says why (``online-state-missing``,
    ``online-state-format``, ``online-state-corrupt``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class Embeds(Protocol):
    """What the rewriter needs of an embedder: unit vectors for texts."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return ``[len(texts), dim]`` float32 unit vectors."""


@dataclasses.dataclass(slots=True)
class _Counts:
    successes: int = 0
    defects: int = 0


@dataclasses.dataclass(slots=True)
class _Personal:
    """One user's successful forms (exact search) and intents."""

    forms: dict[str, int] = dataclasses.field(default_factory=dict)  # form -> row
    names: list[str] = dataclasses.field(default_factory=list)
    successes: list[int] = dataclasses.field(default_factory=list)
    vectors: np.ndarray = dataclasses.field(
        default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    stats: dict[str, _Counts] = dataclasses.field(default_factory=dict)  # form -> counts
    intents: Counter[str] = dataclasses.field(default_factory=Counter)
    #: request form -> the forms that ended this user's rephrase chains from it
    fixes: dict[str, Counter[str]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class Example:
    """One ranked candidate of a logged request and whether it was the user's fix."""

    features: np.ndarray
    label: bool
    ts: int


def _context_terms(context: Mapping[str, Any] | None) -> set[str]:
    """Words the device context names: its states' appliances, what plays, where, recent use."""
    if not context:
        return set()
    terms: set[str] = set()
    for key in ("states", "playing"):
        value = context.get(key)
        if isinstance(value, Mapping):
            terms.update(form(str(k)) for k in value if key == "states")
            terms.update(form(str(v)) for v in value.values() if key == "playing")
    for entry in context.get("history") or ():
        terms.update(form(part) for part in str(entry).split(":"))
    if location := context.get("location"):
        terms.add(form(str(location)))
    return {t for t in terms if t and t not in {"on", "off"}}


class OnlineRewriter:
    """Retrieve, rank and decide rewrites from successful requests; a rewrite :class:`Layer`.

    Parameters: ``embedder`` (unit vectors, e.g. :class:`Embedder`);
    ``personal`` whether the per-user layer is used (False: global only);
    ``global_k`` and ``personal_k`` candidates from each index (10, 5);
    ``threshold`` the least probability that rewrites (0.5);
    ``personal_size`` forms kept per user (1000); ``threads`` for the
    index's search (1); ``weights`` the ranker's (:data:`PRIOR_WEIGHTS`);
    ``window_ms`` the longest gap within a rephrase chain (45 s).
    """

    def __init__(self, embedder: Embeds, *, personal: bool = True, global_k: int = 10,
                 personal_k: int = 5, threshold: float = 0.5, personal_size: int = 1000,
                 threads: int = 1, dim: int = 384, weights: np.ndarray | None = None,
                 window_ms: int = 45_000) -> None:
        from usearch.index import Index

        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        if min(global_k, personal_k, personal_size, threads) < 1:
            raise ValueError("global_k, personal_k, personal_size and threads must be >= 1")
        self.embedder = embedder
        self.personal = personal
        self.global_k, self.personal_k = global_k, personal_k
        self.threshold = threshold
        self.personal_size = personal_size
        self.threads = threads
        self.dim = dim
        self.weights = (PRIOR_WEIGHTS if weights is None else np.asarray(weights)).astype(
            np.float64)
        if self.weights.shape != (len(FEATURES) + 1,):
            raise ValueError(f"weights must have {len(FEATURES) + 1} values (intercept first)")
        self.index = Index(ndim=dim, metric="cos", dtype="i8", connectivity=16,
                           expansion_add=128, expansion_search=64)
        self.entries: dict[str, int] = {}  # global form -> key
        self.forms: list[str] = []  # key -> form
        self.successes: list[int] = []  # key -> successes
        self.intents: list[str] = []  # key -> intent it was last understood as
        self.stats: dict[str, _Counts] = defaultdict(_Counts)  # any form -> counts
        self.users: dict[str, _Personal] = {}
        self.fixes: dict[str, Counter[str]] = defaultdict(Counter)  # form -> chain ends
        self.window_ms = window_ms
        # (user, session) -> (ts of its last request, defect forms since its last success)
        self._pending: OrderedDict[tuple[str, str], tuple[int, list[str]]] = OrderedDict()
        self.calibration: dict[str, Any] = {}
        self._cache: dict[str, np.ndarray] = {}  # embeddings computed in bulk by fit

    # -- learning ---------------------------------------------------------------

    def _vector(self, text: str) -> np.ndarray:
        cached = self._cache.get(text)
        return cached if cached is not None else self.embedder.embed([text])[0]

    def learn(self, interaction: Interaction) -> None:
        """Count the interaction's outcome; index its form when it succeeded."""
        key = form(interaction.utterance)
        if not key:
            return
        counts = self.stats[key]
        user = self.users.get(interaction.user_id)
        if user is None and self.personal:
            user = self.users[interaction.user_id] = _Personal()
        mine = user.stats.setdefault(key, _Counts()) if user is not None else None
        chain = self._follow(interaction, key)
        if interaction.outcome is not Outcome.SUCCESS:
            counts.defects += 1
            if mine is not None:
                mine.defects += 1
            return
        for start in chain:
            if start != key:
                self.fixes[start][key] += 1
                if user is not None:
                    user.fixes.setdefault(start, Counter())[key] += 1
        counts.successes += 1
        if mine is not None:
            mine.successes += 1
        intent = interaction.interpretation.intent
        vector: np.ndarray | None = None
        entry = self.entries.get(key)
        if entry is None:
            vector = self._vector(key)
            entry = self.entries[key] = len(self.forms)
            self.forms.append(key)
            self.successes.append(0)
            self.intents.append(intent)
            self.index.add(entry, vector, threads=self.threads)
        self.successes[entry] += 1
        self.intents[entry] = intent or self.intents[entry]
        if user is not None:
            self._learn_personal(user, key, intent, vector)

    def _follow(self, interaction: Interaction, key: str) -> list[str]:
        """Track the session's rephrase chain; return its defects when this request ends it."""
        session = (interaction.user_id, interaction.session_id)
        last_ts, defects = self._pending.pop(session, (interaction.ts, []))
        if interaction.ts - last_ts > self.window_ms:
            defects = []
        if interaction.outcome is Outcome.SUCCESS:
            self._pending[session] = (interaction.ts, [])
            return defects
        self._pending[session] = (interaction.ts, [*defects[-7:], key])
        while len(self._pending) > PENDING_SESSIONS:
            self._pending.popitem(last=False)
        return []

    def _learn_personal(self, user: _Personal, key: str, intent: str,
                        vector: np.ndarray | None) -> None:
        user.intents[intent] += 1
        row = user.forms.get(key)
        if row is not None:
            user.successes[row] += 1
            return
        if vector is None:  # indexed globally already: reuse its stored (int8) vector
            stored = np.asarray(self.index.get(self.entries[key], dtype="f32"))
            vector = stored / max(float(np.linalg.norm(stored)), 1e-9)
        if user.vectors.size == 0:
            user.vectors = np.zeros((0, self.dim), dtype=np.float32)
        if len(user.names) >= self.personal_size:  # evict the least used form
            row = int(np.argmin(user.successes))
            del user.forms[user.names[row]]
            user.names[row], user.successes[row] = key, 1
            user.vectors[row] = vector
        else:
            row = len(user.names)
            user.names.append(key)
            user.successes.append(1)
            user.vectors = np.vstack([user.vectors, vector[None]])
        user.forms[key] = row

    def add_global(self, forms: Sequence[str], vectors: np.ndarray, successes: Sequence[int],
                   intents: Sequence[str], *, threads: int = 0,
                   progress: Callable[[int, int], bool] | None = None) -> None:
        """Index many distinct successful forms at once (a bulk load; ``threads`` 0: all cores)."""
        start = len(self.forms)
        new = [f for f in forms if f not in self.entries]
        if len(new) != len(forms) or len(set(forms)) != len(forms):
            raise ValueError("add_global takes distinct forms not indexed yet")
        keys = np.arange(start, start + len(forms), dtype=np.uint64)
        self.index.add(keys, np.asarray(vectors, dtype=np.float32), threads=threads,
                       progress=progress)
        if not len(forms) == len(successes) == len(intents) == len(vectors):
            raise ValueError("add_global takes one vector, count and intent per form")
        for i, (f, n) in enumerate(zip(forms, successes, strict=True)):
            self.entries[f] = start + i
            self.stats[f].successes += int(n)
        self.forms.extend(forms)
        self.successes.extend(int(n) for n in successes)
        self.intents.extend(intents)

    # -- proposing --------------------------------------------------------------

    def features(self, user_id: str, utterance: str, vector: np.ndarray,
                 context: Mapping[str, Any] | None = None
                 ) -> tuple[list[str], list[bool], np.ndarray]:
        """Return the candidates of one request, whether each is personal, and their features."""
        key = form(utterance)
        sims: dict[str, float] = {}
        personal_hit: set[str] = set()
        if len(self.forms):
            found = self.index.search(vector, self.global_k + 1, threads=self.threads)
            for k, dist in zip(found.keys, found.distances, strict=True):
                sims[self.forms[int(k)]] = 1.0 - float(dist)  # usearch's cos distance is 1 - cosine
        user = self.users.get(user_id) if self.personal else None
        if user is not None and user.names:
            dots = user.vectors @ vector
            for row in np.argsort(-dots)[:self.personal_k + 1]:
                name = user.names[int(row)]
                sims[name] = max(sims.get(name, -1.0), float(dots[row]))
                personal_hit.add(name)
        known = self.fixes.get(key, Counter())
        mine_fixes = user.fixes.get(key, Counter()) if user is not None else Counter()
        for name, _ in [*known.most_common(3), *mine_fixes.most_common(3)]:
            if name not in sims:
                sims[name] = self._similarity(name, vector, user)
        sims.pop(key, None)
        if not sims:
            return [], [], np.zeros((0, len(FEATURES)))
        terms = _context_terms(context)
        request_fits = bool(terms & set(key.split()))
        own = self.stats.get(key, _Counts())
        mine = user.stats.get(key, _Counts()) if user is not None else _Counts()
        total_intents = sum(user.intents.values()) if user is not None else 0
        names = list(sims)
        rows = np.zeros((len(names), len(FEATURES)))
        personal: list[bool] = []
        for i, name in enumerate(names):
            entry = self.entries.get(name)
            intent = self.intents[entry] if entry is not None else ""
            row = user.forms.get(name) if user is not None else None
            mine_n = user.successes[row] if user is not None and row is not None else 0
            affinity = (user.intents[intent] / total_intents
                        if user is not None and total_intents and intent else 0.0)
            fits = bool(terms & (set(name.split()) | set(intent.split("_"))))
            rows[i] = (sims[name], math.log1p(known[name]), math.log1p(mine_fixes[name]),
                       math.log1p(self.successes[entry] if entry is not None else 0),
                       math.log1p(mine_n), affinity, float(fits and not request_fits),
                       math.log1p(own.successes), math.log1p(own.defects),
                       math.log1p(mine.successes), math.log1p(mine.defects))
            personal.append(mine_n > 0)
        if not self.personal:
            rows[:, _PERSONAL] = 0.0
        return names, personal, rows

    def _similarity(self, name: str, vector: np.ndarray, user: _Personal | None) -> float:
        """Cosine of the request and an indexed form (from the user's vectors when there)."""
        row = user.forms.get(name) if user is not None else None
        if user is not None and row is not None:
            return float(user.vectors[row] @ vector)
        stored = np.asarray(self.index.get(self.entries[name], dtype="f32"))
        return float(stored @ vector / max(float(np.linalg.norm(stored)), 1e-9))

    def probabilities(self, rows: np.ndarray) -> np.ndarray:
        """The ranker's calibrated probability that each candidate is the user's fix."""
        from scipy.special import expit

        return np.asarray(expit(self.weights[0] + rows @ self.weights[1:]))

    def propose(self, user_id: str, utterance: str,
                context: Mapping[str, Any] | None = None) -> Candidate | None:
        """The best-ranked neighbour of ``utterance`` when it is likely enough the user's fix."""
        if not form(utterance):
            return None
        vector = self.embedder.embed([utterance])[0]
        names, personal, rows = self.features(user_id, utterance, vector, context)
        if not names:
            return None
        p = self.probabilities(rows)
        best = int(np.argmax(p))
        if p[best] < self.threshold:
            return None
        source = RewriteSource.ONLINE_PERSONAL if personal[best] else RewriteSource.ONLINE_GLOBAL
        return Candidate(names[best], source, round(float(p[best]), 4))

    # -- persistence ------------------------------------------------------------

    def save(self, directory: Path) -> Path:
        """Write the indexes, counts, open rephrase chains and ranker weights to ``directory``.

        Three files: ``global.usearch`` (the HNSW index), ``personal.npz`` (each
        user's vectors) and ``state.json`` (everything else). The directory is
        replaced whole: written to a ``.partial`` sibling first, so a crash while
        writing leaves the previous save readable (the swap at the end, a
        delete then a rename, is the one step that is not atomic).
        """
        tmp = directory.with_name(directory.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        self.index.save(str(tmp / "global.usearch"))
        users = sorted(self.users)
        # one array per user, in the order of state.json's users (arr_0, arr_1, ...)
        np.savez(tmp / "personal.npz", *(self.users[u].vectors for u in users))
        state = {
            "format": STATE_FORMAT,
            "settings": {"personal": self.personal, "global_k": self.global_k,
                         "personal_k": self.personal_k, "threshold": self.threshold,
                         "personal_size": self.personal_size, "dim": self.dim,
                         "window_ms": self.window_ms},
            "weights": [float(w) for w in self.weights],
            "calibration": self.calibration,
            "forms": self.forms, "successes": self.successes, "intents": self.intents,
            "stats": {f: [c.successes, c.defects] for f, c in self.stats.items()},
            "fixes": {f: dict(c) for f, c in self.fixes.items()},
            "pending": [[u, s, ts, defects] for (u, s), (ts, defects) in self._pending.items()],
            "users": [{"id": u, "names": p.names, "successes": p.successes,
                       "stats": {f: [c.successes, c.defects] for f, c in p.stats.items()},
                       "intents": dict(p.intents),
                       "fixes": {f: dict(c) for f, c in p.fixes.items()}}
                      for u, p in ((u, self.users[u]) for u in users)],
        }
        (tmp / "state.json").write_text(json.dumps(state), encoding="utf-8")
        shutil.rmtree(directory, ignore_errors=True)
        tmp.rename(directory)
        return directory

    @classmethod
    def load(cls, directory: Path, embedder: Embeds, *, threads: int = 1) -> OnlineRewriter:
        """Read a layer written by :meth:`save`; :class:`OnlineStateError` if it is not one.

        ``embedder`` must be the one the save was made with (its vectors are
        in the indexes); ``threads`` is the search's, as in the constructor.
        """
        path = directory / "state.json"
        if not path.is_file():
            raise OnlineStateError("online-state-missing",
                                   f"{path}: no such file (write one with OnlineRewriter.save)")
        try:
            state = json.loads(path.read_bytes())
        except json.JSONDecodeError as exc:
            raise OnlineStateError("online-state-corrupt",
                                   f"{path}:{exc.lineno}: {exc.msg}") from exc
        except UnicodeDecodeError as exc:
            raise OnlineStateError("online-state-corrupt", f"{path}: not UTF-8") from exc
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            found = state.get("format") if isinstance(state, dict) else None
            raise OnlineStateError("online-state-format",
                                   f"{path}: format {found!r}, this version reads "
                                   f"{STATE_FORMAT}")
        try:
            rewriter = cls(embedder, threads=threads, weights=np.array(state["weights"]),
                           **state["settings"])
            rewriter._restore(directory, state)
        except (KeyError, TypeError, ValueError, RuntimeError, OSError) as exc:
            # usearch raises RuntimeError for an unreadable index; numpy ValueError/OSError
            # for a bad npz; the rest are fields of the wrong shape or type.
            raise OnlineStateError("online-state-corrupt",
                                   f"{directory}: {type(exc).__name__}: {exc}") from exc
        return rewriter

    def _restore(self, directory: Path, state: dict[str, Any]) -> None:
        """Fill a fresh layer from a save's files (raises on anything inconsistent)."""
        self.index.load(str(directory / "global.usearch"))
        self.forms = [str(f) for f in state["forms"]]
        self.successes = [int(n) for n in state["successes"]]
        self.intents = [str(i) for i in state["intents"]]
        if self.index.ndim != self.dim:
            raise ValueError(f"global index has {self.index.ndim} dimensions, not {self.dim}")
        if not len(self.index) == len(self.forms) == len(self.successes) == len(self.intents):
            raise ValueError(f"global index holds {len(self.index)} vectors for "
                             f"{len(self.forms)} forms")
        self.entries = {f: k for k, f in enumerate(self.forms)}
        for f, (ok, bad) in state["stats"].items():
            self.stats[f] = _Counts(int(ok), int(bad))
        for f, ends in state["fixes"].items():
            self.fixes[f] = Counter({str(g): int(n) for g, n in ends.items()})
        for user, session, ts, defects in state["pending"]:
            self._pending[(str(user), str(session))] = (int(ts), [str(d) for d in defects])
        with np.load(directory / "personal.npz") as vectors:
            for i, data in enumerate(state["users"]):
                names = [str(n) for n in data["names"]]
                user = _Personal(
                    forms={n: row for row, n in enumerate(names)}, names=names,
                    successes=[int(n) for n in data["successes"]],
                    vectors=np.asarray(vectors[f"arr_{i}"], dtype=np.float32),
                    stats={f: _Counts(int(ok), int(bad))
                           for f, (ok, bad) in data["stats"].items()},
                    intents=Counter({str(k): int(n) for k, n in data["intents"].items()}),
                    fixes={f: Counter({str(g): int(n) for g, n in ends.items()})
                           for f, ends in data["fixes"].items()})
                if names and user.vectors.shape != (len(names), self.dim):
                    raise ValueError(f"user {i}: {user.vectors.shape} vectors for "
                                     f"{len(names)} forms")
                if len(user.successes) != len(names):
                    raise ValueError(f"user {i}: {len(user.successes)} counts for "
                                     f"{len(names)} forms")
                self.users[str(data["id"])] = user
        self.calibration = dict(state["calibration"])

    # -- fitting ----------------------------------------------------------------

    def fit(self, records: Iterable[Interaction], *, holdout: float = 0.25, l2: float = 1.0,
            batch_embed: bool = True) -> dict[str, Any]:
        """Learn ``records`` and fit the ranker on their last ``holdout`` share by time.

        The earlier records are learned first; each later one is then ranked
        before it is learned, as it would have been live. A candidate is
        labelled the user's fix when it is the form of the success that ended
        the record's rephrase chain (same session, gaps of at most
        ``window_ms``); a success's candidates are all wrong (it needed no
        rewrite); a defect the user never fixed gives no example. The model
        is fitted on the first half of those examples, its calibration
        measured on the second, then refitted on all. Returns (and keeps in
        :attr:`calibration`) the report.
        """
        ordered = sorted(records, key=lambda r: r.ts)
        if batch_embed:
            texts = sorted({form(r.utterance) for r in ordered} - {""})
            if hasattr(self.embedder, "embed_many"):
                vectors = self.embedder.embed_many(texts)
            else:
                vectors = self.embedder.embed(texts)
            self._cache = dict(zip(texts, vectors, strict=True))
        cut = int(len(ordered) * (1.0 - holdout))
        for r in ordered[:cut]:
            self.learn(r)
        fixes = _chain_fixes(ordered, self.window_ms)
        examples: list[Example] = []
        for i in range(cut, len(ordered)):
            r = ordered[i]
            target = form(r.utterance) if r.outcome is Outcome.SUCCESS else fixes.get(i)
            if target is not None:
                key = form(r.utterance)
                vector = self._cache.get(key)
                if vector is None:
                    vector = self.embedder.embed([key])[0]
                names, _, rows = self.features(r.user_id, r.utterance, vector, None)
                examples.extend(Example(row, name == target and target != key, r.ts)
                                for name, row in zip(names, rows, strict=True))
            self.learn(r)
        self._cache.clear()
        report = self._fit_weights(examples, l2)
        self.calibration = report
        return report

    def _fit_weights(self, examples: Sequence[Example], l2: float) -> dict[str, Any]:
        from scipy.special import expit

        fixed = [_CONTEXT] + (_PERSONAL if not self.personal else [])
        half = len(examples) // 2
        if half < 20 or sum(e.label for e in examples) < 4:
            return {"examples": len(examples), "fitted": False,
                    "reason": "too few examples; the prior weights stay"}
        x = np.array([e.features for e in examples])
        y = np.array([e.label for e in examples], dtype=np.float64)
        first = _logistic(x[:half], y[:half], self.weights, fixed, l2)
        p = expit(first[0] + x[half:] @ first[1:])
        report = {"examples": len(examples), "positives": int(y.sum()), "fitted": True,
                  **calibration_report(p, y[half:])}
        self.weights = _logistic(x, y, self.weights, fixed, l2)
        report["weights"] = dict(zip(("intercept", *FEATURES),
                                     (round(float(w), 3) for w in self.weights), strict=True))
        return report


def _chain_fixes(ordered: Sequence[Interaction], window_ms: int) -> dict[int, str]:
    """Map the position of each defect to the form of the success that ended its chain."""
    by_session: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, r in enumerate(ordered):
        by_session[(r.user_id, r.session_id)].append(i)
    fixes: dict[int, str] = {}
    for positions in by_session.values():
        pending: list[int] = []
        last_ts: int | None = None
        for i in positions:
            r = ordered[i]
            if last_ts is not None and r.ts - last_ts > window_ms:
                pending = []
            last_ts = r.ts
            if r.outcome is Outcome.SUCCESS:
                fixes.update((j, form(r.utterance)) for j in pending)
                pending = []
            else:
                pending.append(i)
    return fixes


def _logistic(x: np.ndarray, y: np.ndarray, start: np.ndarray, fixed: Sequence[int],
              l2: float) -> np.ndarray:
    """Fit L2-regularised logistic weights (intercept first) with L-BFGS; ``fixed`` features
    keep their weights from ``start``."""
    from scipy.optimize import minimize
    from scipy.special import expit

    free = [j for j in range(x.shape[1]) if j not in set(fixed)]
    offset = x[:, list(fixed)] @ start[1:][list(fixed)] if fixed else np.zeros(len(x))
    xf = x[:, free]

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = w[0] + xf @ w[1:] + offset
        p = expit(z)
        value = float(np.sum(np.logaddexp(0.0, z) - y * z) + 0.5 * l2 * w[1:] @ w[1:])
        grad = np.concatenate([[np.sum(p - y)], xf.T @ (p - y) + l2 * w[1:]])
        return value, grad

    w0 = np.concatenate([[start[0]], start[1:][free]])
    result = minimize(loss, w0, jac=True, method="L-BFGS-B")
    out = start.astype(np.float64).copy()
    out[0] = result.x[0]
    out[1:][free] = result.x[1:]
    return out


def calibration_report(p: np.ndarray, y: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """Brier score, log loss, expected calibration error and the reliability table of ``p``."""
    p = np.clip(p, 1e-9, 1 - 1e-9)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges) - 1, 0, bins - 1)
    table = []
    ece = 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            mean_p, rate = float(p[m].mean()), float(y[m].mean())
            ece += m.sum() / len(p) * abs(mean_p - rate)
            table.append({"bin": f"{edges[b]:.1f}-{edges[b + 1]:.1f}", "n": int(m.sum()),
                          "predicted": round(mean_p, 3), "observed": round(rate, 3)})
    return {"held_out": len(p), "brier": round(float(np.mean((p - y) ** 2)), 4),
            "log_loss": round(float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))), 4),
            "ece": round(float(ece), 4), "reliability": table}
