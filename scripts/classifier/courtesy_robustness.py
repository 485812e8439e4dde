#!/usr/bin/env python3
"""How much the first stage's verdicts move when a held-out prompt is wrapped in courtesy.

Real users write "Hello, ..." or "... thanks in advance!"; the training and held-out files
mostly do not, so their figures cannot show what that does. This wraps every single-prompt
line of the held-out files in one courtesy phrase at a time (label-preserving: the task is
unchanged), scores them with `deliberate classify --first-stage-only`, and prints AUC,
recall, false-positive rate and reasoning share per wrapping, at the model's own threshold.

Two groups of wrappings, kept apart on purpose (EVAL.md, "Courtesy"):
- "listed": phrases that `src/classify/courtesy.rs` knows and cuts off;
- "unlisted": phrasings written for this check only and deliberately NOT added to those
  lists, so that they measure how far the cut generalises (partly: a listed greeting
  before an unlisted clause is still cut), not how well the lists match this script.

    cargo build --release -j2
    python3 scripts/classifier/courtesy_robustness.py [--bin target/release/deliberate] \
        data/heldout/traffic.jsonl data/heldout/hard.jsonl data/heldout/puzzles.jsonl

Standard library only; deterministic (no randomness).
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

from second_stage import auc  # Mann-Whitney with tied ranks, shared with the head's figures

ROOT = Path(__file__).resolve().parents[2]

# Per-language openers for the "native" wrapping (unlisted clauses after listed greetings).
NATIVE = {
    "de": "Hallo zusammen, ich komme hier nicht weiter. ",
    "es": "Hola a todos, tengo una duda. ",
    "fr": "Bonjour à tous, j'ai une question. ",
    "ru": "Привет всем! Есть вопрос. ",
    "zh": "大家好，我有个问题。",
    "ja": "お疲れ様です。質問があります。",
    "en": "Hey everyone, I have a question. ",
}

WRAPPINGS = [
    ("none", "", lambda t, lang: t),
    ("listed", "hello", lambda t, lang: "Hello, " + t),
    ("listed", "please help", lambda t, lang: "Please help me with this: " + t),
    (
        "listed",
        "hi + well-wish + thanks",
        lambda t, lang: "hi! hope you are doing well. " + t + "\n\nthanks a lot in advance!!",
    ),
    ("unlisted", "yo", lambda t, lang: "Yo! " + t),
    ("unlisted", "good day", lambda t, lang: "Good day to you. " + t),
    ("unlisted", "hi + hope you can help", lambda t, lang: "Hi, I hope you can help me out here. " + t),
    ("unlisted", "hello + student", lambda t, lang: "Hello! I'm a student and I'm stuck on this one. " + t),
    ("unlisted", "appreciate any help", lambda t, lang: t + " Appreciate any help!"),
    ("unlisted", "kind regards", lambda t, lang: t + "\n\nKind regards,\nTom"),
    ("unlisted", "much appreciated", lambda t, lang: t + " Much appreciated :)"),
    ("unlisted", "native greeting + clause", lambda t, lang: NATIVE.get(lang, NATIVE["en"]) + t),
]


def score(binary: str, rows: list[dict]) -> dict[str, dict]:
    lines = "".join(json.dumps({"id": r["id"], "prompt": r["prompt"]}) + "\n" for r in rows)
    out = subprocess.run(
        [binary, "classify", "--first-stage-only"],
        input=lines, capture_output=True, text=True, check=True, cwd=ROOT, timeout=600,
    ).stdout
    return {j["id"]: j for j in map(json.loads, out.splitlines())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=str(ROOT / "target/release/deliberate"))
    ap.add_argument("files", nargs="+")
    args = ap.parse_args()
    for path in args.files:
        rows = [json.loads(line) for line in open(path, encoding="utf-8")]
        rows = [r for r in rows if "prompt" in r]  # single prompts; conversations skipped
        print(f"\n{Path(path).name} ({len(rows)} single prompts)\n")
        print("| group | wrapping | AUC | recall | FPR | share |")
        print("|---|---|---:|---:|---:|---:|")
        for group, name, wrap in WRAPPINGS:
            wrapped = [dict(r, prompt=wrap(r["prompt"], r.get("lang", "en"))) for r in rows]
            got = score(args.bin, wrapped)
            scores = [got[r["id"]]["score"] for r in wrapped]
            labels = [r["label"] == 1 for r in wrapped]
            pos = [s for s, positive in zip(scores, labels) if positive]
            neg = [s for s, positive in zip(scores, labels) if not positive]
            ranking = auc(scores, labels)
            sent = {r["id"] for r in wrapped if got[r["id"]]["tier"] == "reasoning"}
            tp = sum(r["id"] in sent for r in wrapped if r["label"] == 1)
            fp = sum(r["id"] in sent for r in wrapped if r["label"] == 0)
            recall = tp / len(pos) if pos else float("nan")
            fpr = fp / len(neg) if neg else float("nan")
            print(
                f"| {group} | {name or 'none'} | {'n/a' if ranking is None else f'{ranking:.3f}'} | {recall:.1%} | "
                f"{fpr:.1%} | {len(sent) / len(rows):.1%} |"
            )


if __name__ == "__main__":
    main()
