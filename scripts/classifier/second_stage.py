"""Trains the second-stage head and scores it on the held-out mix against the first stage
alone: the "with second stage" rows of EVAL.md. Pure standard library; the heavy parts run
in the gateway's own binary (`classify embed`, `classify train --oof-out`, `classify
train-head`), which `scripts/classifier/second_stage.sh` calls first.

    python3 scripts/classifier/second_stage.py --work DIR [--band 0.5:0.95 ...]

DIR holds what second_stage.sh wrote: train.jsonl (embeddings of the training data),
oof.jsonl (out-of-fold first-stage scores of the same examples) and heldout-*.jsonl
(embeddings of data/heldout/*.jsonl). For each band it trains a head on the training
examples whose out-of-fold first-stage score is in the band (the shipped first stage's own
scores on its training data are in-sample: too confident to stand for traffic), then
reports, per held-out file and group: AUC, recall and false-positive rate at the shipped
threshold and at the threshold that sends the same share of traffic.jsonl as the first
stage does, and the share of each file that reaches the second stage.
"""
import argparse
import json
import math
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def auc(scores, labels):
    pos = [s for s, l in zip(scores, labels) if l]
    neg = [s for s, l in zip(scores, labels) if not l]
    if not pos or not neg:
        return None
    ranked = sorted(scores)
    # Mann-Whitney U with average ranks for ties.
    rank = {}
    i = 0
    while i < len(ranked):
        j = i
        while j < len(ranked) and ranked[j] == ranked[i]:
            j += 1
        rank[ranked[i]] = (i + j + 1) / 2
        i = j
    u = sum(rank[s] for s in pos) - len(pos) * (len(pos) + 1) / 2
    return u / (len(pos) * len(neg))


def logit(p):
    p = min(max(p, 1e-4), 1 - 1e-4)
    return math.log(p / (1 - p))


def head_score(head, embedding, first_stage):
    z = head["bias"] + head["first_stage_weight"] * logit(first_stage)
    z += sum(w * x for w, x in zip(head["weights"], embedding))
    return 1 / (1 + math.exp(-z))


def threshold_for_share(scores, share):
    """The lowest threshold that sends at most `share` of `scores` to reasoning."""
    ranked = sorted(scores, reverse=True)
    k = int(math.floor(share * len(ranked)))
    if k <= 0:
        return ranked[0] + 1e-6
    return (ranked[k - 1] + ranked[k]) / 2 if k < len(ranked) else ranked[-1]


def rates(scores, labels, threshold):
    tp = sum(1 for s, l in zip(scores, labels) if l and s >= threshold)
    fp = sum(1 for s, l in zip(scores, labels) if not l and s >= threshold)
    pos = sum(labels)
    neg = len(labels) - pos
    return (tp, pos, fp, neg)


def fmt_rate(n, d):
    return f"{n}/{d} ({100 * n / d:.0f}%)" if d else "-"


def train_head(work, band):
    """Training lines with the out-of-fold first-stage score, then the Rust trainer."""
    oof = {(o["source"], o["id"]): o["score"] for o in read_jsonl(os.path.join(work, "oof.jsonl"))}
    path = os.path.join(work, "train-oof.jsonl")
    inputs = [os.path.join(work, n) for n in ("oof.jsonl", "train.jsonl")]
    if not os.path.exists(path) or any(
            os.path.getmtime(i) > os.path.getmtime(path) for i in inputs):
        with open(path, "w", encoding="utf-8") as out:
            for line in read_jsonl(os.path.join(work, "train.jsonl")):
                key = (line["source"], line["id"])
                if key not in oof:
                    sys.exit(f"no out-of-fold score for {key}")
                line["first_stage"] = oof[key]
                out.write(json.dumps(line) + "\n")
    head_path = os.path.join(work, f"head-{band[0]}-{band[1]}.json")
    report = subprocess.run(
        [os.environ.get("DELIBERATE_BIN", os.path.join(ROOT, "target/release/deliberate")),
         "classify", "train-head", "--embeddings", path, "--out", head_path,
         "--band-lower", str(band[0]), "--band-upper", str(band[1])],
        check=True, capture_output=True, text=True).stdout.strip()
    with open(head_path, encoding="utf-8") as f:
        return json.load(f), report, head_path


def heldout(work):
    """Held-out lines joined with their file's group fields."""
    files = {}
    for name in ("traffic", "hard", "puzzles"):
        meta = {r["id"]: r for r in read_jsonl(os.path.join(ROOT, "data/heldout", f"{name}.jsonl"))}
        rows = []
        for line in read_jsonl(os.path.join(work, f"heldout-{name}.jsonl")):
            m = meta[line["id"]]
            rows.append({
                "label": bool(line["label"]),
                "first": line["first_stage"],
                "embedding": line["embedding"],
                "group": m.get("group") or m.get("family") or "",
                "lang": m.get("lang", "en"),
            })
        files[name] = rows
    return files


def ship(head, path, threshold, same_share, band, out):
    """The head as the gateway reads it, on the first stage's scale: the gateway compares
    the head's score with the tenant's threshold as it does the first stage's, so the bias
    moves by logit(threshold) - logit(same_share): at the shipped threshold the combined
    score sends the share of traffic the first stage alone sends."""
    shipped = dict(head)
    shift = logit(threshold) - logit(same_share)
    shipped["bias"] = head["bias"] + shift
    shipped["provenance"] = (head["provenance"] + f"; bias moved by {shift:+.4f} so that "
                             f"{threshold:.3f} on this head is {same_share:.3f} on the fit "
                             f"(the first stage's share of data/heldout/traffic.jsonl); "
                             f"scripts/classifier/second_stage.py --ship {band[0]}:{band[1]}")
    with open(out, "w", encoding="utf-8") as f:
        f.write(json.dumps(shipped) + "\n")
    print(f"\nshipped {path} as {out} (bias {shift:+.4f})")


def report(files, head, band, threshold, title):
    lo, hi = band
    for rows in files.values():
        for r in rows:
            r["in_band"] = head is not None and lo <= r["first"] <= hi
            r["final"] = head_score(head, r["embedding"], r["first"]) if r["in_band"] else r["first"]
    traffic = files["traffic"]
    share_first = sum(r["first"] >= threshold for r in traffic) / len(traffic)
    same_share = threshold_for_share([r["final"] for r in traffic], share_first)
    print(f"\n### {title}\n")
    print(f"Threshold {threshold:.3f} (shipped); at the first stage's traffic share "
          f"({100 * share_first:.1f}%) the combined score's threshold is {same_share:.3f}.\n")
    print("| file / group | n | reach 2nd stage | AUC first | AUC with | recall first | recall with "
          "(same share) | FPR first | FPR with (same share) | traffic share with |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")

    def row(name, rs):
        labels = [r["label"] for r in rs]
        first = [r["first"] for r in rs]
        final = [r["final"] for r in rs]
        a1, a2 = auc(first, labels), auc(final, labels)
        tp1, pos, fp1, neg = rates(first, labels, threshold)
        tp2, _, fp2, _ = rates(final, labels, same_share)
        share = sum(s >= same_share for s in final) / len(final)
        fa = lambda a: f"{a:.3f}" if a is not None else "-"
        print(f"| {name} | {len(rs)} | {sum(r['in_band'] for r in rs)} | {fa(a1)} | {fa(a2)} | "
              f"{fmt_rate(tp1, pos)} | {fmt_rate(tp2, pos)} | {fmt_rate(fp1, neg)} | "
              f"{fmt_rate(fp2, neg)} | {100 * share:.1f}% |")

    for name, rows in files.items():
        row(name, rows)
    for name in ("hard", "puzzles"):
        for group in sorted({r["group"] for r in files[name]}):
            row(f"{name} {group}", [r for r in files[name] if r["group"] == group])
    non_en = [r for name in ("traffic", "hard") for r in files[name] if r["lang"] != "en"]
    row("non-English (traffic + hard)", non_en)
    return same_share


def training_langs():
    """(source, id) -> language, from the training files (the embed lines carry no language)."""
    langs = {}
    for folder in ("data/written", "data/sources"):
        for name in sorted(os.listdir(os.path.join(ROOT, folder))):
            if not name.endswith(".jsonl"):
                continue
            for r in read_jsonl(os.path.join(ROOT, folder, name)):
                langs[(r.get("source") or name[:-6], str(r["id"]))] = r.get("lang") or "en"
    return langs


def leave_one_out(work, band, key_name):
    """Pooled AUC over held-out groups of the training data: for each group (source or
    language), a head trained on the other groups' band examples scores this group's. Both
    columns use the same out-of-fold first-stage scores (5 folds, not group-out: training
    a first stage per group is `classify eval --loso/--lolo`'s job), so the difference is
    what the head adds for a group it never saw."""
    lo, hi = band
    lines = read_jsonl(os.path.join(work, "train-oof.jsonl"))
    langs = training_langs()
    key = (lambda l: l["source"]) if key_name == "source" else (
        lambda l: langs.get((l["source"], str(l["id"])), "en"))
    groups = sorted({key(l) for l in lines})
    first, final, labels = [], [], []
    print(f"\n#### leave one {key_name} out, band {lo}..{hi}\n")
    print(f"| {key_name} | n | in band | AUC first | AUC with |")
    print("|---|---:|---:|---:|---:|")
    for g in groups:
        rest = os.path.join(work, "loo-train.jsonl")
        with open(rest, "w", encoding="utf-8") as out:
            for l in lines:
                if key(l) != g:
                    out.write(json.dumps(l) + "\n")
        head_path = os.path.join(work, "loo-head.json")
        done = subprocess.run(
            [os.environ.get("DELIBERATE_BIN", os.path.join(ROOT, "target/release/deliberate")),
             "classify", "train-head", "--embeddings", rest, "--out", head_path,
             "--band-lower", str(lo), "--band-upper", str(hi)],
            capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(done.stderr)
        with open(head_path, encoding="utf-8") as f:
            head = json.load(f)
        mine = [l for l in lines if key(l) == g and l["label"] is not None]
        f1 = [l["first_stage"] for l in mine]
        f2 = [head_score(head, l["embedding"], l["first_stage"]) if lo <= l["first_stage"] <= hi
              else l["first_stage"] for l in mine]
        ys = [bool(l["label"]) for l in mine]
        a1, a2 = auc(f1, ys), auc(f2, ys)
        fa = lambda a: f"{a:.3f}" if a is not None else "-"
        print(f"| {g} | {len(mine)} | {sum(lo <= x <= hi for x in f1)} | {fa(a1)} | {fa(a2)} |")
        first += f1
        final += f2
        labels += ys
    print(f"| **pooled** | {len(labels)} | | **{auc(first, labels):.3f}** | **{auc(final, labels):.3f}** |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--band", action="append", default=[],
                    help="lower:upper of first-stage scores sent to the head (repeatable)")
    ap.add_argument("--threshold", type=float, default=None,
                    help="default: the shipped model's (models/router.json)")
    ap.add_argument("--ship", default=None,
                    help="lower:upper: write that band's head to models/stage2.json")
    ap.add_argument("--loo", action="store_true",
                    help="also leave-one-source-out and leave-one-language-out, per band")
    args = ap.parse_args()
    threshold = args.threshold
    if threshold is None:
        with open(os.path.join(ROOT, "models/router.json"), encoding="utf-8") as f:
            threshold = json.load(f)["default_threshold"]
    files = heldout(args.work)
    report(files, None, (1, 0), threshold, "first stage alone")
    bands = args.band or [args.ship or "0.2:0.99"]
    if args.ship and args.ship not in bands:
        bands.append(args.ship)
    for band in bands:
        lo, hi = (float(x) for x in band.split(":"))
        head, trained, path = train_head(args.work, (lo, hi))
        same_share = report(files, head, (lo, hi), threshold,
                            f"with the second stage, band {lo}..{hi}")
        print(f"\nhead: {path}; {trained}")
        if band == args.ship:
            ship(head, path, threshold, same_share, (lo, hi),
                 os.path.join(ROOT, "models/stage2.json"))
        if args.loo:
            leave_one_out(args.work, (lo, hi), "source")
            leave_one_out(args.work, (lo, hi), "language")


if __name__ == "__main__":
    main()
