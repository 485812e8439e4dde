#!/usr/bin/env python3
"""Counts per source, label and category of the training data, as Markdown (for DATA.md).

Usage: scripts/classifier/datasheet.py data/written data/sources
"""
import collections
import json
import sys
from pathlib import Path


def main(dirs):
    by_source = collections.Counter()
    by_category = collections.Counter()
    turns = collections.Counter()
    for d in dirs:
        for path in sorted(Path(d).glob("*.jsonl")):
            for line in path.read_text(encoding="utf-8").splitlines():
                if not line.strip():
                    continue
                item = json.loads(line)
                source = item.get("source", path.stem)
                label = "reasoning" if item["label"] in (1, True, "reasoning") else "fast"
                by_source[(source, label)] += 1
                by_category[(label, item.get("category", ""), source)] += 1
                turns["multi-turn" if "messages" in item else "single prompt"] += 1
    sources = sorted({s for s, _ in by_source})
    print("| source | fast | reasoning | total |\n|---|---|---|---|")
    totals = collections.Counter()
    for s in sources:
        f, r = by_source[(s, "fast")], by_source[(s, "reasoning")]
        totals["fast"] += f
        totals["reasoning"] += r
        print(f"| {s} | {f} | {r} | {f + r} |")
    print(f"| **all** | {totals['fast']} | {totals['reasoning']} | {totals['fast'] + totals['reasoning']} |")
    print(f"\n{turns['single prompt']} single prompts, {turns['multi-turn']} multi-turn conversations.\n")
    print("| label | category | source | n |\n|---|---|---|---|")
    for (label, category, source), n in sorted(by_category.items()):
        print(f"| {label} | {category} | {source} | {n} |")


if __name__ == "__main__":
    main(sys.argv[1:] or ["data/written", "data/sources"])
