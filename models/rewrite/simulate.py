"""Simulate a user population's interaction logs with real defects, split in time.

Requests come from MASSIVE en-US train (intent and slots). Defects are real
ones of our own models:

* **names** our ASR mishears: rare artists, people and places spoken with
  espeak-ng and transcribed by Whisper tiny.en (:mod:`models.rewrite.confusions`,
  the committed table); a retry is heard right with ``p_heard_right``;
* **phrasings** our NLU misreads: MASSIVE requests the NLU gets wrong that
  have a paraphrase (same intent and slots) it gets right, which the user
  tries next;
* **personal vocabulary**: a user's shorthand ("wilkerson") stands for a
  place of their own ("wilkerson gym" for one user, "wilkerson street" for
  another); the NLU reads the shorthand literally and the user spells it out.
  Users ask for their places with the same few requests (``place_requests``
  MASSIVE requests with a place, drawn once per simulation), so the same
  words ("directions to wilkerson") mean different places to different users:
  what one user's rephrase fixes is wrong for most others.

Every utterance is interpreted by our NLU (onnxruntime, cached per distinct
text); an interaction is a defect when that interpretation is not what the
user meant. After a defect the user may barge in, rephrase within seconds or
give up. Days before ``train_days`` go to train.jsonl, the rest to
test.jsonl; test records carry ``truth``.
"""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from models.nlu.massive import Example, load
from models.rewrite.confusions import DEFAULT_TABLE
from streams.rewrite import FeedbackKind, Interaction, Meaning, Outcome, form

#: Texts to meanings, batched: the NLU or a stand-in for tests.
Interpret = Callable[[list[str]], list[Meaning]]
DAY_MS = 86_400_000
START_MS = 1_780_000_000_000
SHORTHANDS = ("wilkerson", "maple", "harbor", "riverside", "oakwood", "lincoln", "jefferson",
              "brookside", "elmwood", "fairview", "kingsley", "westgate")
PLACES = ("gym", "street", "park", "school", "library", "cafe", "office", "station")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SimConfig:
    """The population and its habits.

    users, days: population size and length in days; train_days: the first
    days that make train.jsonl (default: two thirds); requests_per_day: mean
    requests per user and day; p_trouble: share of requests drawn from the
    defect-prone pool; p_barge_in, p_give_up: after a defect; p_heard_right:
    a retried name is heard right; pool: MASSIVE train examples scanned for
    misread phrasings; place_requests: the requests with a place that users
    put their shorthands in (shared by all users); seed: every draw follows
    from it.
    """

    users: int = 200
    days: int = 21
    train_days: int | None = None
    requests_per_day: float = 4.0
    p_trouble: float = 0.3
    p_barge_in: float = 0.3
    p_give_up: float = 0.15
    p_heard_right: float = 0.6
    pool: int = 3000
    place_requests: int = 6
    seed: int = 0

    def __post_init__(self) -> None:
        if self.users < 1 or self.days < 2:
            raise ValueError("users must be >= 1 and days >= 2")
        if self.place_requests < 1:
            raise ValueError("place_requests must be >= 1")
        if self.train_days is not None and not 1 <= self.train_days < self.days:
            raise ValueError(f"train_days must be in [1, {self.days - 1}]")
        for name in ("p_trouble", "p_barge_in", "p_give_up", "p_heard_right"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]")

    @property
    def split_day(self) -> int:
        """The first test day."""
        return self.train_days if self.train_days is not None else max(1, self.days * 2 // 3)


def meaning_of(example: Example) -> Meaning:
    """The intent and slot values of a MASSIVE example."""
    return Meaning(intent=example.intent, slots={s.type: form(s.value) for s in example.slots})


def same(a: Meaning, b: Meaning) -> bool:
    """Whether two meanings agree on intent and slot values (compared as forms)."""
    return a.intent == b.intent and \
        {k: form(v) for k, v in a.slots.items()} == {k: form(v) for k, v in b.slots.items()}


def nlu_interpreter(batch: int = 64) -> Interpret:
    """Our NLU on onnxruntime as an :data:`Interpret`."""
    from models.nlu.inference import NluOnnx

    model = NluOnnx()

    def interpret(texts: list[str]) -> list[Meaning]:
        out = []
        for i in range(0, len(texts), batch):
            for ranked in model.interpret_batch(texts[i:i + batch], top_k=1):
                best = ranked[0]
                out.append(Meaning(intent=best.intent,
                                   slots={s.type: form(s.value) for s in best.slots}))
        return out

    return interpret


def nlu_confidence(batch: int = 64) -> Callable[[list[str]], list[float]]:
    """Our NLU's best intent probability per text (what a confidence gate would read)."""
    from models.nlu.inference import NluOnnx

    model = NluOnnx()

    def confidence(texts: list[str]) -> list[float]:
        out: list[float] = []
        for i in range(0, len(texts), batch):
            out += [ranked[0].score for ranked in
                    model.interpret_batch(texts[i:i + batch], top_k=1)]
        return out

    return confidence


class Cached:
    """An :data:`Interpret` remembered per distinct text."""

    def __init__(self, interpret: Interpret) -> None:
        self.interpret = interpret
        self.known: dict[str, Meaning] = {}

    def __call__(self, texts: Sequence[str]) -> list[Meaning]:
        """Interpret ``texts``, asking the model only about new ones."""
        new = sorted({t for t in texts if t not in self.known})
        for t, m in zip(new, self.interpret(new) if new else [], strict=True):
            self.known[t] = m
        return [self.known[t] for t in texts]


@dataclasses.dataclass(frozen=True, slots=True)
class Trouble:
    """A defect-prone request: what is said first, how retries sound, what is meant."""

    kind: str  # name | phrasing | personal
    first: str
    retry: str
    truth: Meaning


def _replace(example: Example, slot_type: str, value: str) -> str:
    for s in example.slots:
        if s.type == slot_type:
            return example.text[:s.start] + value + example.text[s.end:]
    return example.text


def _truth_with(example: Example, slot_type: str, value: str) -> Meaning:
    slots = {s.type: form(s.value) for s in example.slots}
    slots[slot_type] = form(value)
    return Meaning(intent=example.intent, slots=slots)


def troubles(examples: list[Example], confusions: list[dict[str, str]], interpret: Cached,
             rng: np.random.Generator, pool: int) -> list[Trouble]:
    """The shared defect-prone requests: misheard names and misread phrasings."""
    out: list[Trouble] = []
    by_slot: dict[str, list[Example]] = defaultdict(list)
    for e in examples:
        for s in e.slots:
            by_slot[s.type].append(e)
    for c in confusions:
        hosts = by_slot.get(c["slot"])
        if not hosts:
            continue
        host = hosts[int(rng.integers(len(hosts)))]
        out.append(Trouble("name", _replace(host, c["slot"], c["heard"]),
                           _replace(host, c["slot"], c["said"]),
                           _truth_with(host, c["slot"], c["said"])))
    scanned = [examples[i] for i in sorted(rng.choice(len(examples), min(pool, len(examples)),
                                                      replace=False))]
    meanings = interpret([e.text for e in scanned])
    right: dict[tuple[str, str], list[Example]] = defaultdict(list)
    wrong = []
    for e, m in zip(scanned, meanings, strict=True):
        key = (e.intent, json.dumps(meaning_of(e).slots, sort_keys=True))
        if same(m, meaning_of(e)):
            right[key].append(e)
        else:
            wrong.append((key, e))
    for key, e in wrong:
        if right.get(key):
            out.append(Trouble("phrasing", e.text, right[key][0].text, meaning_of(e)))
    # Popularity follows the order: mix names and phrasings among the common ones.
    return [out[i] for i in rng.permutation(len(out))]


def personal(hosts: list[Example], rng: np.random.Generator) -> list[Trouble]:
    """Two shorthands of one user, each standing for a place of theirs, said in ``hosts``
    (requests with a place name)."""
    out = []
    for word in rng.choice(SHORTHANDS, 2, replace=False):
        full = f"{word} {PLACES[int(rng.integers(len(PLACES)))]}"
        host = hosts[int(rng.integers(len(hosts)))]
        out.append(Trouble("personal", _replace(host, "place_name", str(word)),
                           _replace(host, "place_name", full),
                           _truth_with(host, "place_name", full)))
    return out


@dataclasses.dataclass(frozen=True, slots=True)
class _Said:
    user: int
    session: str
    ts: int
    text: str
    truth: Meaning
    signals: tuple[str, ...]
    final: bool  # no retry follows: the user gave up or stopped


def _sessions(config: SimConfig, examples: list[Example], shared: list[Trouble],
              rng: np.random.Generator) -> Iterator[_Said]:
    """Draw what every user says: requests, and retries after defects seen so far."""
    weights = 1.0 / np.arange(1, len(shared) + 1)  # a few troubles are common, most rare
    weights /= weights.sum()
    places = [e for e in examples if any(s.type == "place_name" for s in e.slots)]
    hosts = [places[i] for i in rng.choice(len(places), min(config.place_requests, len(places)),
                                           replace=False)] if places else []
    for user in range(config.users):
        own = personal(hosts, rng)
        for day in range(config.days):
            for k in range(int(rng.poisson(config.requests_per_day))):
                ts = START_MS + day * DAY_MS + int(rng.integers(7 * 3600_000, 22 * 3600_000))
                session = f"u{user}-d{day}-{k}"
                draw = rng.random()
                if draw < config.p_trouble * 0.8 and shared:
                    t = shared[int(rng.choice(len(shared), p=weights))]
                elif draw < config.p_trouble:
                    t = own[int(rng.integers(len(own)))]
                else:
                    e = examples[int(rng.integers(len(examples)))]
                    t = Trouble("plain", e.text, e.text, meaning_of(e))
                yield from _attempts(user, session, ts, t, config, rng)


def _attempts(user: int, session: str, ts: int, t: Trouble, config: SimConfig,
              rng: np.random.Generator) -> Iterator[_Said]:
    """Up to three tries at one request; whether each failed is known only later."""
    text = t.first
    for attempt in range(3):
        barge = rng.random() < config.p_barge_in
        quit_ = rng.random() < config.p_give_up or attempt == 2
        signals = (FeedbackKind.BARGE_IN.value,) if barge else ()
        yield _Said(user, session, ts, text, t.truth, signals, quit_)
        if quit_:
            return
        ts += int(rng.integers(3_000, 15_000))
        if t.kind == "name":
            text = t.retry if rng.random() < config.p_heard_right else t.first
        else:
            text = t.retry


def simulate(config: SimConfig, examples: list[Example], confusions: list[dict[str, str]],
             interpret: Interpret) -> tuple[list[Interaction], list[Interaction]]:
    """Return (train, test) interactions in time order."""
    rng = np.random.default_rng(config.seed)
    cached = Cached(interpret)
    shared = troubles(examples, confusions, cached, rng, config.pool)
    said = list(_sessions(config, examples, shared, rng))
    meanings = cached([s.text for s in said])
    train: list[Interaction] = []
    test: list[Interaction] = []
    stop_session = ""
    for n, (s, m) in enumerate(zip(said, meanings, strict=True)):
        if s.session == stop_session:
            continue  # the request was served: no retries follow
        ok = same(m, s.truth)
        stop_session = s.session if ok else ""
        signals = s.signals if not ok else ()
        if not ok and s.final:
            signals += (FeedbackKind.ABANDON.value,)
        day = (s.ts - START_MS) // DAY_MS
        is_test = day >= config.split_day
        record = Interaction(session_id=s.session, user_id=f"u{s.user}", device_id=f"d{s.user}",
                             utterance_id=f"x{n}", ts=s.ts, utterance=s.text, interpretation=m,
                             outcome=Outcome.SUCCESS if ok else Outcome.DEFECT,
                             signals=signals, truth=s.truth if is_test else None)
        (test if is_test else train).append(record)
    train.sort(key=lambda r: (r.ts, r.utterance_id))
    test.sort(key=lambda r: (r.ts, r.utterance_id))
    return train, test


def load_confusions(path: Path = DEFAULT_TABLE) -> list[dict[str, str]]:
    """The measured ASR confusions (see :mod:`models.rewrite.confusions`)."""
    rows: list[dict[str, str]] = json.loads(path.read_text(encoding="utf-8"))["confusions"]
    return rows


def load_examples(path: Path) -> list[Example]:
    """MASSIVE train examples to draw requests from."""
    return load(path)
