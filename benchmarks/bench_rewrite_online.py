"""Time online rewriting against a 1 M-entry global index on one thread; check embedding quality.

Run: PYTHONPATH=. python benchmarks/bench_rewrite_online.py [--entries N] [--seeds N]
[--queries N] [--massive DIR]

The index: ``--seeds`` distinct requests, MASSIVE en-US train utterances and
variants with their slot values swapped for other values of the same slot
type, really embedded (cached in ``$VOICESTREAM_MODEL_DIR/bench``), then
grown to ``--entries`` vectors by adding Gaussian noise to those embeddings
(cosine about 0.85-0.98 to their seed, renormalised), each a form of its own
with a Zipf-like success count. Embedding 1 M texts on this 2-core host would
take about half an hour, so most of the entries are clustered synthetic
vectors around real ones; the queries are real: MASSIVE dev utterances,
embedded at query time. Users: 2,000 with 50 successful forms each, and a
known rephrase fix for a tenth of the queries, so the personal and fix
paths are exercised.

Prints the index build time and memory, the time to save the layer and
load it back (the queries run on the loaded copy), then per-query latency on ONE
thread (onnxruntime and usearch): embedding, retrieval and features, the
ranker, and the whole of ``propose``, as p50/p95/p99 in ms. With
``--quality`` (default) it first prints the embedder's int8/fp32 agreement
and how well cosine separates MASSIVE dev paraphrases (same intent and slot
values, other words) from other requests.
"""

from __future__ import annotations

import argparse
import itertools
import os
import resource
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from models.nlu.massive import Example, load
from models.rewrite.embedder import Embedder, agreement, model_dir
from models.rewrite.online import OnlineRewriter
from streams.rewrite import Interaction, Meaning, Outcome, form


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _pct(ms: list[float]) -> str:
    a = np.array(ms)
    return (f"p50 {np.percentile(a, 50):6.2f}  p95 {np.percentile(a, 95):6.2f}  "
            f"p99 {np.percentile(a, 99):6.2f} ms")


def variants(examples: list[Example], n: int, rng: np.random.Generator) -> list[Example]:
    """Up to ``n`` distinct requests: the examples, then copies with other slot values."""
    values: dict[str, list[str]] = defaultdict(list)
    for e in examples:
        for s in e.slots:
            values[s.type].append(e.text[s.start:s.end])
    out = {form(e.text): e for e in examples}
    with_slots = [e for e in examples if e.slots]
    while len(out) < n:
        e = with_slots[int(rng.integers(len(with_slots)))]
        text = e.text
        for s in sorted(e.slots, key=lambda s: -s.start):
            pool = values[s.type]
            text = text[:s.start] + pool[int(rng.integers(len(pool)))] + text[s.end:]
        out.setdefault(form(text), Example(text, e.intent, ()))
    return list(out.values())[:n]


def quality(embedder: Embedder, dev: list[Example]) -> None:
    """Print int8/fp32 agreement and paraphrase separation on MASSIVE dev."""
    from scipy.stats import mannwhitneyu

    texts = [e.text for e in dev]
    directory = embedder.path.parent
    fp32 = Embedder(directory, int8=False).embed_many(texts)
    int8 = Embedder(directory, int8=True).embed_many(texts)
    print(f"embedder int8 vs fp32 on {len(texts)} MASSIVE dev requests: {agreement(int8, fp32)}")
    nn8 = np.argsort(-(int8 @ int8.T), axis=1)[:, 1]
    nn32 = np.argsort(-(fp32 @ fp32.T), axis=1)[:, 1]
    print(f"  nearest other request the same under int8 and fp32: {np.mean(nn8 == nn32):.1%}")
    groups: dict[tuple[str, tuple[str, ...]], list[int]] = defaultdict(list)
    for i, e in enumerate(dev):
        if e.slots:
            groups[(e.intent, tuple(sorted(form(s.value) for s in e.slots)))].append(i)
    para = [(a, b) for g in groups.values() for a, b in itertools.combinations(g, 2)
            if form(texts[a]) != form(texts[b])]
    rng = np.random.default_rng(0)
    pairs = rng.integers(len(dev), size=(20 * len(para) + 1000, 2))
    known = {frozenset(p) for p in para}
    same_intent = [(a, b) for a, b in pairs if a != b and dev[a].intent == dev[b].intent
                   and frozenset((a, b)) not in known][:2000]
    other = [(a, b) for a, b in pairs if dev[a].intent != dev[b].intent][:2000]
    for name, emb in (("fp32", fp32), ("int8", int8)):
        cos = {k: np.array([emb[a] @ emb[b] for a, b in v])
               for k, v in (("paraphrase", para), ("same intent", same_intent),
                            ("other intent", other))}
        line = ", ".join(f"{k} {v.mean():.3f} (n={len(v)})" for k, v in cos.items())
        aucs = []
        for neg in ("same intent", "other intent"):
            u = mannwhitneyu(cos["paraphrase"], cos[neg]).statistic
            aucs.append(f"AUC vs {neg} {u / (len(cos['paraphrase']) * len(cos[neg])):.3f}")
        print(f"  {name} mean cosine: {line}; {', '.join(aucs)}")


def main() -> None:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=1_000_000, help="global index size")
    parser.add_argument("--seeds", type=int, default=40_000, help="really embedded requests")
    parser.add_argument("--queries", type=int, default=2_000, help="timed MASSIVE dev requests")
    parser.add_argument("--massive", type=Path, default=Path("../shared/data/massive-en-US"))
    parser.add_argument("--no-quality", dest="quality", action="store_false",
                        help="skip the embedding-quality figures")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    train = load(args.massive / "train.jsonl")
    dev = load(args.massive / "dev.jsonl")
    embedder = Embedder(threads=1)
    print(f"embedder: {embedder.path.name} (onnxruntime, 1 thread)")
    if args.quality:
        quality(embedder, dev)

    seeds = variants(train, args.seeds, rng)
    cache = model_dir().parent / "bench" / f"rewrite-seeds-{len(seeds)}-{embedder.path.stem}.npy"
    if cache.is_file():
        seed_vecs = np.load(cache)
    else:
        started = time.perf_counter()
        seed_vecs = embedder.embed_many([e.text for e in seeds])
        print(f"embedded {len(seeds)} seed requests in {time.perf_counter() - started:.0f} s")
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, seed_vecs)
    n = args.entries
    which = np.arange(n) % len(seeds)
    noise = rng.normal(size=(n, seed_vecs.shape[1])).astype(np.float32)
    sigma = rng.uniform(0.01, 0.04, size=(n, 1)).astype(np.float32)
    noise *= sigma
    noise[:len(seeds)] = 0.0  # the seeds themselves are indexed as they are
    vectors = seed_vecs[which] + noise
    del noise
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    forms = [form(seeds[i].text) if k < len(seeds) else f"{form(seeds[i].text)} v{k}"
             for k, i in enumerate(which)]
    successes = np.minimum(1 + rng.zipf(1.6, size=n), 10_000)
    intents = [seeds[i].intent for i in which]

    rewriter = OnlineRewriter(embedder, threads=1)
    rss = _rss_mib()
    started = time.perf_counter()
    rewriter.add_global(forms, vectors, successes.tolist(), intents, threads=0)
    build_s = time.perf_counter() - started
    print(f"global index: {n:,} entries in {build_s:.0f} s ({n / build_s:,.0f}/s, "
          f"{os.cpu_count()} threads), usearch {rewriter.index.memory_usage / 2**20:.0f} MiB, "
          f"process +{_rss_mib() - rss:.0f} MiB for index and metadata "
          f"(peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB)")
    del vectors

    queries = [e for e in dev if form(e.text) not in rewriter.entries][:args.queries]
    users = [f"user{u}" for u in range(2000)]
    ts = 1_780_000_000_000
    for u in users:  # 50 personal successes each, from the seeds' neighbourhoods
        for k in rng.integers(len(seeds), size=50):
            ts += 1000
            rewriter.learn(Interaction(session_id=f"{u}-{k}", user_id=u, device_id="d", ts=ts,
                                       utterance=forms[int(k)], outcome=Outcome.SUCCESS,
                                       interpretation=Meaning(intent=seeds[int(k)].intent)))
    for i, q in enumerate(queries[::10]):  # a known rephrase fix for a tenth of the queries
        u = users[i % len(users)]
        for outcome, text in ((Outcome.DEFECT, q.text), (Outcome.SUCCESS, forms[i])):
            ts += 1000
            rewriter.learn(Interaction(session_id=f"fix{i}", user_id=u, device_id="d", ts=ts,
                                       utterance=text, outcome=outcome,
                                       interpretation=Meaning(intent=q.intent)))
    print(f"personal indexes: {len(users):,} users x 50 forms; "
          f"{len(queries) // 10} queries with a known fix")
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        saved = rewriter.save(Path(tmp) / "online")
        save_s = time.perf_counter() - started
        size = sum(f.stat().st_size for f in saved.iterdir())
        started = time.perf_counter()
        rewriter = OnlineRewriter.load(saved, embedder, threads=1)
        print(f"save {save_s:.1f} s, load {time.perf_counter() - started:.1f} s, "
              f"{size / 2**20:.0f} MiB on disk (the queries below run on the loaded copy)")

    embed_ms, search_ms, rank_ms, total_ms = [], [], [], []
    proposed = 0
    for i, q in enumerate(queries):
        u = users[i % len(users)]
        t0 = time.perf_counter()
        vector = embedder.embed([q.text])[0]
        t1 = time.perf_counter()
        names, _, rows = rewriter.features(u, q.text, vector, None)
        t2 = time.perf_counter()
        if names:
            int(np.argmax(rewriter.probabilities(rows)))
        t3 = time.perf_counter()
        got = rewriter.propose(u, q.text, {"playing": {"kind": "music"}})
        t4 = time.perf_counter()
        proposed += got is not None
        embed_ms.append((t1 - t0) * 1e3)
        search_ms.append((t2 - t1) * 1e3)
        rank_ms.append((t3 - t2) * 1e3)
        total_ms.append((t4 - t3) * 1e3)
    print(f"{len(queries)} MASSIVE dev queries, one thread ({proposed} rewritten):")
    print(f"  embedding          {_pct(embed_ms)}")
    print(f"  search + features  {_pct(search_ms)}")
    print(f"  ranking            {_pct(rank_ms)}")
    print(f"  propose (total)    {_pct(total_ms)}   budget: p95 <= 10 ms")


if __name__ == "__main__":
    main()
