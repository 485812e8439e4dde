#!/usr/bin/env python3
"""An experiment of issue 11, evaluated and NOT shipped (EVAL.md, "Courtesy"): does training
on copies of prompts wrapped in courtesy make the first stage indifferent to courtesy that
`src/classify/courtesy.rs` does not cut?

Writes, under OUT (default target/courtesy-aug):
- data/courtesy_aug.jsonl: 15% of the single-prompt training rows (data/written,
  data/sources), each copied once with a greeting before it, thanks after it, or both, in
  its own language. The phrasings are disjoint from the "unlisted" ones of
  courtesy_robustness.py, which measure the result;
- held/<wrapping>/{traffic,hard,puzzles}.jsonl: the held-out files wrapped as
  courtesy_robustness.py wraps them, one directory per wrapping.

Then, per wrapping, a model trained without and with the copies, at 6% of clean traffic:

    python3 scripts/classifier/courtesy_augment.py
    for d in target/courtesy-aug/held/*; do for extra in "" target/courtesy-aug/data; do
      ./target/release/deliberate classify eval --data data/written data/sources $extra \
        --heldout $d --features prose,context,rules,shape,dialog,script,grams,parts \
        --calibrate-jsonl data/heldout/traffic.jsonl --target-share 0.06 --summary
    done; done

Standard library only; deterministic (seeded).
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import json
import os
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Training-side courtesy, disjoint from courtesy_robustness.py's unlisted phrasings.
PRE = {
 'en': ["Morning! ", "Hey hey, ", "Hi team, quick one. ", "Hello friend! ", "Sorry to bother you, ", "Hope your day is going great! ",
        "Hi again :) ", "Hey there, long time no see. ", "Good evening, ", "Heya! "],
 'de': ["Moin moin! ", "Hallo, ich hoffe, es geht dir gut. ", "Guten Abend, "],
 'es': ["¡Buenas! ", "Hola, espero que estés bien. ", "Buenas tardes, "],
 'fr': ["Coucou ! ", "Bonsoir, j'espère que tu vas bien. ", "Salut, "],
 'it': ["Ciao! ", "Buonasera, "], 'pt': ["Oi, tudo bem? ", "Bom dia! "],
 'ru': ["Доброе утро! ", "Привет, надеюсь, у тебя всё хорошо. "],
 'zh': ["早上好！", "嗨，打扰一下。"], 'ja': ["おはようございます。", "すみません、"], 'ko': ["안녕하세요! ", "좋은 아침입니다. "],
}
SUF = {
 'en': [" Thanks for reading!", "\n\nBest,\nAnna", " Cheers mate", " Any help would be great.", " Would really appreciate it.",
        " Thank you kindly.", " ty!", " thx a bunch", "\n\nThanks again, you're the best", " Have a nice day!"],
 'de': [" Danke dir!", " Schönen Tag noch!"], 'es': [" ¡Mil gracias!", " Saludos."], 'fr': [" Merci bien !", " Bonne journée !"],
 'it': [" Grazie tante!"], 'pt': [" Valeu!"], 'ru': [" Благодарю!", " Хорошего дня!"], 'zh': ["多谢啦！", "辛苦了！"],
 'ja': ["助かります。", "お願いします！"], 'ko': [" 고마워요!"],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "target/courtesy-aug"))
    args = ap.parse_args()
    rng = random.Random(11)
    copies = []
    files = sorted(glob.glob(str(ROOT / "data/written/*.jsonl")) + glob.glob(str(ROOT / "data/sources/*.jsonl")))
    for path in files:
        for line in open(path, encoding="utf-8"):
            row = json.loads(line)
            if "prompt" not in row or rng.random() >= 0.15:
                continue
            lang = row.get("lang", "en")
            before, after = PRE.get(lang, PRE["en"]), SUF.get(lang, SUF["en"])
            kind = rng.randrange(3)
            prompt = row["prompt"]
            if kind in (0, 2):
                prompt = rng.choice(before) + prompt
            if kind in (1, 2):
                prompt = prompt + rng.choice(after)
            copies.append(dict(row, id=row["id"] + "-courtesy", prompt=prompt))
    os.makedirs(f"{args.out}/data", exist_ok=True)
    with open(f"{args.out}/data/courtesy_aug.jsonl", "w", encoding="utf-8") as out:
        for row in copies:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{len(copies)} copies ({sum(r['label'] for r in copies)} reasoning)")

    spec = importlib.util.spec_from_file_location("robustness", ROOT / "scripts/classifier/courtesy_robustness.py")
    robustness = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(robustness)
    for _group, name, wrap in robustness.WRAPPINGS:
        folder = Path(args.out) / "held" / (name.replace(" ", "_").replace("+", "plus") or "none")
        folder.mkdir(parents=True, exist_ok=True)
        for split in ("traffic", "hard", "puzzles"):
            with open(folder / f"{split}.jsonl", "w", encoding="utf-8") as out:
                for line in open(ROOT / f"data/heldout/{split}.jsonl", encoding="utf-8"):
                    row = json.loads(line)
                    if "prompt" in row:
                        row["prompt"] = wrap(row["prompt"], row.get("lang", "en"))
                    out.write(json.dumps(row, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
