"""Slot values in the form a skill needs: numbers, clock times and durations.

Pure text functions, no model. ``normalise(type, text)`` returns the value a
skill can use, or the text itself where no rule applies:

* numbers: ``"twenty five"`` -> ``"25"``, ``"fifty percent"`` -> ``"50"``
* clock times: ``"seven thirty pm"`` -> ``"19:30"``, ``"noon"`` -> ``"12:00"``;
  without am/pm the hour is kept as said (``"seven"`` -> ``"07:00"``) and
  :func:`resolve_clock` picks the next such time after the device's local time
* durations: ``"an hour and a half"`` -> ``"PT1H30M"`` (ISO 8601)
"""

from __future__ import annotations

import re

_UNITS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen".split())}
_UNITS.update({"a": 1, "an": 1, "oh": 0, "o": 0})
_TENS = {w: 10 * (i + 2) for i, w in enumerate(
    "twenty thirty forty fifty sixty seventy eighty ninety".split())}
_SCALES = {"hundred": 100, "thousand": 1000}
_WORD = re.compile(r"[a-z]+|\d+(?:\.\d+)?")


def parse_number(text: str) -> float | None:
    """Read a cardinal number written in digits or English words; None if there is none."""
    words = [w for w in _WORD.findall(text.lower().replace("-", " ")) if w != "and"]
    if not words:
        return None
    total = current = 0.0
    seen = False
    for i, w in enumerate(words):
        following = words[i + 1] if i + 1 < len(words) else ""
        if re.fullmatch(r"\d+(?:\.\d+)?", w):
            current += float(w)
        elif w in ("a", "an") and following not in _SCALES:
            continue  # "a lot", "an hour": not a number by itself
        elif w in _UNITS and not (w in ("o", "oh") and seen and current):
            current += _UNITS[w]
        elif w in _TENS:
            current += _TENS[w]
        elif w in _SCALES:
            current = max(current, 1.0) * _SCALES[w]
            if _SCALES[w] >= 1000:
                total, current = total + current, 0.0
        elif w in ("half",) and seen:
            current += 0.5
        else:
            continue
        seen = True
    return total + current if seen else None


def _fmt_number(x: float) -> str:
    return str(int(x)) if x == int(x) else f"{x:g}"


_DURATION_UNITS = {"second": "S", "sec": "S", "minute": "M", "min": "M", "hour": "H",
                   "day": "D"}
_DURATION = re.compile(
    r"(?P<n>[\w\s-]*?)\s*(?P<u>seconds?|secs?|minutes?|mins?|hours?|days?)(?P<half>\s+and\s+a\s+half)?",
)


def parse_duration(text: str) -> str | None:
    """Read a duration (``"ten minutes"``, ``"an hour and a half"``) as ISO 8601, or None."""
    t = text.lower().strip()
    if t.startswith("half an hour") or t == "half hour":
        return "PT30M"
    seconds = 0.0
    found = False
    for m in _DURATION.finditer(t):
        n = parse_number(m["n"]) if m["n"].strip() else 1.0
        if n is None:
            n = 1.0
        if m["half"]:
            n += 0.5
        unit = next(v for k, v in _DURATION_UNITS.items() if m["u"].startswith(k))
        seconds += n * {"S": 1, "M": 60, "H": 3600, "D": 86400}[unit]
        found = True
    if not found:
        return None
    out, rest = "P", round(seconds)
    days, rest = divmod(rest, 86400)
    if days:
        out += f"{days}D"
    h, rest = divmod(rest, 3600)
    m_, s = divmod(rest, 60)
    if h or m_ or s:
        out += "T" + (f"{h}H" if h else "") + (f"{m_}M" if m_ else "") + (f"{s}S" if s else "")
    return out if out != "P" else "PT0S"


_CLOCK_DIGITS = re.compile(r"\b(\d{1,2})(?::(\d{2}))?\s*(a\.?m\.?|p\.?m\.?)?(?!\w)")


def parse_clock(text: str) -> tuple[int, int, bool] | None:
    """Read a clock time as ``(hour 0-23, minute, am/pm known)``; None if there is none."""
    t = text.lower().replace("o'clock", "").replace("oclock", "").strip()
    if "noon" in t or "midday" in t:
        return 12, 0, True
    if "midnight" in t:
        return 0, 0, True
    meridiem = None
    if re.search(r"\b(a\.?\s?m\b\.?|in the morning)", t):
        meridiem = "am"
    elif re.search(r"\b(p\.?\s?m\b\.?|in the (afternoon|evening)|at night|tonight)", t):
        meridiem = "pm"
    hour: int | None = None
    minute = 0
    m = _CLOCK_DIGITS.search(t)
    if m:
        hour, minute = int(m[1]), int(m[2] or 0)
    else:
        rel = re.search(r"(quarter|half|[\w\s-]+?)\s+(past|after|to|before)\s+(\w+)", t)
        if rel:
            base = parse_number(rel[3])
            amount = {"quarter": 15.0, "half": 30.0}.get(rel[1].strip())
            amount = amount if amount is not None else parse_number(rel[1])
            if base is None or amount is None:
                return None
            hour, minute = int(base), int(amount)
            if rel[2] in ("to", "before"):
                hour, minute = (hour - 1) % 24, 60 - minute
        else:
            words = [w for w in _WORD.findall(t) if w in _UNITS or w in _TENS]
            if not words or words[0] not in _UNITS or words[0] in ("a", "an", "o", "oh", "zero"):
                return None
            hour = _UNITS[words[0]]
            rest = " ".join(words[1:])
            minute = int(parse_number(rest) or 0) if rest else 0
    if hour is None or not (0 <= hour <= 23 and 0 <= minute <= 59):
        return None
    if meridiem == "pm" and hour < 12:
        hour += 12
    elif meridiem == "am" and hour == 12:
        hour = 0
    return hour, minute, meridiem is not None or hour > 12 or hour == 0


def resolve_clock(hour: int, minute: int, local_time: str) -> tuple[int, int]:
    """Pick am or pm for an hour said without one: the next such time after ``local_time``."""
    m = re.fullmatch(r"(\d{1,2}):(\d{2})", local_time or "")
    if not m or hour >= 12:
        return hour, minute
    now = int(m[1]) * 60 + int(m[2])
    morning = hour * 60 + minute
    return (hour, minute) if now < morning or now >= (hour + 12) * 60 + minute else \
        (hour + 12, minute)


#: Slot types whose values are durations or clock times, and those that are numbers.
TIME_SLOTS = frozenset({"time"})
NUMBER_SLOTS = frozenset({"change_amount", "general_frequency"})


def normalise(slot_type: str, text: str, *, local_time: str = "") -> str:
    """Return the normalised value of a slot, or ``text`` where no rule applies."""
    if slot_type in TIME_SLOTS:
        duration = parse_duration(text)
        if duration is not None and not re.search(r"\b(past|to|at)\b", text.lower()):
            return duration
        clock = parse_clock(text)
        if clock is not None:
            hour, minute, known = clock
            if not known:
                hour, minute = resolve_clock(hour, minute, local_time)
            return f"{hour:02d}:{minute:02d}"
        return text
    if slot_type in NUMBER_SLOTS:
        n = parse_number(text)
        return _fmt_number(n) if n is not None else text
    return text
