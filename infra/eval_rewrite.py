"""Score query rewriting: replay test interactions in time order through the rewrite layers.

For each test record with a ``truth``, the text as heard (``original`` when
the log already rewrote it, else ``utterance``) is interpreted by our NLU,
the layers are asked in order for a rewrite (the first answer wins), and the
rewrite is interpreted too. A *win* is a rewrite understood as ``truth``
where the original was not; a *loss* the reverse. After each record every
layer ``learn``s it, so online layers index the test period's earlier
successes as a live stage would.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from models.rewrite import Layer
from models.rewrite.logs import LogStats, read_interactions
from models.rewrite.precomputed import MiningConfig, PrecomputedLayer, mine_logs
from models.rewrite.simulate import Cached, Interpret, same
from streams.rewrite import Interaction, form

#: Which configurations are scored, and whether each has personal layers.
CONFIGURATIONS = {"global": False, "global+personal": True}
#: NLU confidence gates scored by ``--placement``: rewrite only a request whose
#: best intent probability is below the gate (1.0 = every request, as the live
#: stage does).
GATES = (1.0, 0.99, 0.95, 0.9, 0.8, 0.6)
#: Texts to the NLU's best intent probability, batched.
Confidence = Callable[[list[str]], list[float]]


def build_layers(train: Iterable[Interaction], *, personal: bool,
                 mining: MiningConfig | None = None, online: bool = False) -> list[Layer]:
    """The layers in the order they are asked, learned from ``train``.

    ``personal`` selects the configuration: the online layer takes it (the
    personal index only with it); the precomputed table is global either way.
    ``online`` (the CLI's default) adds the online layer (:class:`OnlineRewriter`, fitted on
    ``train``) after the table; it needs the embedder build
    (``EmbedderError`` with code ``embedder-model-missing`` when absent).
    """
    records = list(train)
    layers: list[Layer] = [PrecomputedLayer(mine_logs(records, mining))]
    if online:
        from models.rewrite.embedder import Embedder
        from models.rewrite.online import OnlineRewriter

        rewriter = OnlineRewriter(Embedder(), personal=personal)
        rewriter.fit(records)
        layers.append(rewriter)
    return layers


@dataclasses.dataclass(slots=True)
class Score:
    """Counts of one replay."""

    records: int = 0
    rewritten: int = 0
    wins: int = 0
    losses: int = 0
    defects_before: int = 0
    defects_after: int = 0
    by_source: Counter[str] = dataclasses.field(default_factory=Counter)
    #: Per record, with ``confidence`` given: (NLU confidence of the words as
    #: heard, understood before, understood after, rewritten).
    samples: list[tuple[float, bool, bool, bool]] = dataclasses.field(default_factory=list)

    def placement(self, gates: Sequence[float] = GATES) -> list[dict[str, Any]]:
        """Rewriting only below each confidence gate: what it wins, loses and costs.

        The layers learn from the logs, not from the rewrites, so one replay
        gives every gate: a request at or above the gate keeps its words.
        """
        n = max(1, len(self.samples))
        before = sum(not ok for _, ok, _, _ in self.samples)
        rows = []
        for gate in gates:
            asked = wins = losses = rewritten = after = 0
            for conf, ok_before, ok_after, did in self.samples:
                if conf >= gate:
                    after += not ok_before
                    continue
                asked += 1
                rewritten += did
                wins += ok_after and not ok_before
                losses += ok_before and not ok_after
                after += not ok_after
            rows.append({"gate": gate, "asked": asked, "asked_share": round(asked / n, 4),
                         "rewritten": rewritten, "wins": wins, "losses": losses,
                         "defect_rate_after": round(after / n, 4),
                         "defect_reduction": round(1 - after / before, 4) if before else 0.0})
        return rows

    def report(self) -> dict[str, Any]:
        """The figures: counts, coverage, win:loss and defect rates (fractions)."""
        n = max(1, self.records)
        before, after = self.defects_before / n, self.defects_after / n
        return {
            "records": self.records, "rewritten": self.rewritten,
            "coverage": round(self.rewritten / n, 4),
            "wins": self.wins, "losses": self.losses,
            "win_loss": round(self.wins / self.losses, 2) if self.losses else None,
            "defect_rate_before": round(before, 4), "defect_rate_after": round(after, 4),
            "defect_reduction": round(1 - after / before, 4) if before else 0.0,
            "by_source": dict(sorted(self.by_source.items())),
        }


def heard(record: Interaction) -> str:
    """The text as the user was heard, before any rewrite the log already made."""
    return record.original or record.utterance


def replay(test: Sequence[Interaction], layers: Sequence[Layer], interpret: Cached,
           confidence: Confidence | None = None) -> Score:
    """Replay ``test`` (records with ``truth``) in time order through ``layers``.

    With ``confidence``, every record's NLU confidence is kept for
    :meth:`Score.placement`.
    """
    records = sorted(test, key=lambda r: r.ts)
    interpret([heard(r) for r in records if r.truth is not None])  # one batched pass
    texts = [heard(r) for r in records if r.truth is not None]
    confidences = iter(confidence(texts) if confidence is not None else [])
    score = Score()
    for r in records:
        if r.truth is not None:
            score.records += 1
            text = heard(r)
            ok_before = same(interpret([text])[0], r.truth)
            ok_after, did = ok_before, False
            for layer in layers:
                candidate = layer.propose(r.user_id, text, None)
                if candidate is None:
                    continue
                if form(candidate.text) != form(text):
                    did = True
                    score.rewritten += 1
                    score.by_source[candidate.source.value] += 1
                    ok_after = same(interpret([candidate.text])[0], r.truth)
                break
            score.wins += ok_after and not ok_before
            score.losses += ok_before and not ok_after
            if confidence is not None:
                score.samples.append((next(confidences), ok_before, ok_after, did))
            score.defects_before += not ok_before
            score.defects_after += not ok_after
        for layer in layers:
            layer.learn(r)
    return score


def evaluate(train_path: Path, test_path: Path, interpret: Interpret, *,
             mining: MiningConfig | None = None,
             make_layers: Callable[..., list[Layer]] = build_layers,
             confidence: Confidence | None = None) -> dict[str, Any]:
    """Score every configuration of :data:`CONFIGURATIONS`; skipped lines are counted.

    With ``confidence``, each configuration's report has a ``placement`` list
    (:meth:`Score.placement`).
    """
    train_stats, test_stats = LogStats(), LogStats()
    test = list(read_interactions(test_path, test_stats))
    cached = Cached(interpret)
    report: dict[str, Any] = {}
    for name, personal in CONFIGURATIONS.items():
        layers = make_layers(read_interactions(train_path, train_stats if not report else None),
                             personal=personal, mining=mining)
        score = replay(test, layers, cached, confidence)
        report[name] = score.report()
        if confidence is not None:
            report[name]["placement"] = score.placement()
        for layer in layers:
            if calibration := getattr(layer, "calibration", None):
                report[name]["online_calibration"] = calibration
    report["train_records"] = train_stats.records
    report["test_records"] = len(test)
    report["test_without_truth"] = sum(r.truth is None for r in test)
    report["skipped_lines"] = {"train": train_stats.skipped, "test": test_stats.skipped}
    return report
