"""Coverage of the code-switching dictionaries on MASSIVE en-US, and examples.

Per language: the share of word tokens and of distinct words of the set that
have a translation, then five requests code-switched into that language alone
(ratio 0.5), slots in brackets.

Run: python benchmarks/codeswitch_coverage.py [--data ../shared/data/massive-en-US/train.jsonl]
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from models.nlu import dictionaries
from models.nlu.codeswitch import codeswitch, coverage
from models.nlu.massive import Example, load


def bracketed(e: Example) -> str:
    """The text with each slot written ``[type : value]``, as MASSIVE annotates it."""
    out, pos = [], 0
    for s in sorted(e.slots, key=lambda s: s.start):
        out += [e.text[pos:s.start], f"[{s.type} : {s.value}]"]
        pos = s.end
    return "".join([*out, e.text[pos:]])


def main() -> None:
    """Print the coverage table and the examples."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data", type=Path,
                        default=Path("../shared/data/massive-en-US/train.jsonl"))
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    examples = load(args.data)
    print(f"{args.data}: {len(examples)} requests")
    print("| language | English words with translations | tokens covered "
          "| distinct words covered |")
    print("| --- | ---: | ---: | ---: |")
    tables = {lang: dictionaries.load(lang) for lang in dictionaries.LANGUAGES}
    for lang, table in tables.items():
        c = coverage(examples, table)
        print(f"| {lang} | {len(table)} | {c.tokens_translated / c.tokens:.1%} "
              f"({c.tokens_translated}/{c.tokens}) | {c.words_translated / c.words:.1%} "
              f"({c.words_translated}/{c.words}) |")
    rng = random.Random(args.seed)
    for lang, table in tables.items():
        print(f"\n{lang}:")
        for e in rng.sample(examples, 5):
            print(f"  {bracketed(e)}\n  -> {bracketed(codeswitch(e, {lang: table}, rng))}")


if __name__ == "__main__":
    main()
