"""One readable line per pipeline event, shared by ``send`` and ``demo``."""

from __future__ import annotations

from typing import Any


def _slots(slots: list[dict[str, Any]]) -> str:
    return ", ".join(f"{s['type']}={s['value']}" for s in slots)


def describe(e: dict[str, Any]) -> str:
    """Describe an event in the CLI's JSON form (see ``streams.client.event_json``)."""
    kind = e["type"]
    if kind == "endpoint":
        forced = f" ({e['forced']})" if e.get("forced") else ""
        return (f"{e['kind']} end-point, revision {e['revision']}: speech ended at "
                f"{e['at_ms'] / 1000:.2f} s{forced}")
    if kind == "reset":
        return f"reset of revision {e['cancelled_revision']} ({e['reason']})"
    if kind == "error":
        return f"error {e['code']} from {e.get('stage', '?')}: {e['message']}"
    if kind == "transcript":
        nbest = e.get("nbest") or []
        best = nbest[0]["text"] if nbest else ""
        # The language the recogniser was told, where it is not English.
        language = f", {e['language']}" if e.get("language", "en") != "en" else ""
        return (f"{e['kind']} transcript, revision {e['revision']}: \"{best}\" "
                f"({len(nbest)}-best{language}, {e.get('compute_ms', 0):.0f} ms)")
    if kind == "partial":
        return (f"partial transcript, revision {e['revision']}: \"{e['text']}\" "
                f"({e['t_ms'] / 1000:.2f} s heard, {e.get('compute_ms', 0):.0f} ms)")
    if kind == "interpretation":
        hyps = e.get("interpretations") or []
        if not hyps:
            return f"{e['kind']} interpretation, revision {e['revision']}: none"
        h = hyps[0]
        ctx = f"; context {', '.join(h['context'])}" if h.get("context") else ""
        alt = f"; next {hyps[1]['intent']} {hyps[1]['score']:.2f}" if len(hyps) > 1 else ""
        return (f"{e['kind']} interpretation, revision {e['revision']}: {h['intent']} "
                f"({_slots(h.get('slots') or [])}) score {h['score']:.2f}{ctx}{alt}")
    if kind == "rewrite":
        return (f"{e['kind']} rewrite, revision {e['revision']}: \"{e['original']}\" -> "
                f"\"{e['rewrite']}\" ({e['source']}, score {e['score']:.2f})")
    if kind == "directive":
        return (f"directive {e['directive_id']} -> {e['skill']}: {e['intent']} "
                f"({_slots(e.get('slots') or [])}), held {e.get('held_ms', 0):.0f} ms "
                f"for the final end-point")
    if kind == "declined":
        return f"declined ({e['reason']}): {e.get('detail', '')}"
    if kind == "skill-response":
        text = f": \"{e['text']}\"" if e.get("text") else ""
        return f"{e['skill']} {e['status']}{text}"
    return str(kind)
