#!/usr/bin/python3
"""Writes section (f) of docs/RESULTS.md from a bench/run_tofu_suite.sh run: every method on TOFU with
open-unlearning's metric set, the robustness probe, the sweep's budgets and SPUNGE vs plain under the
probe. The section (its heading, then a marker comment, to a closing marker) is replaced when there, else
inserted before the plots. The probe, sweep and SPUNGE plots are copied to docs/results/tofu/.
usage: tofu_suite_report.py RUN_DIR RESULTS_MD"""
import json
import os
import re
import sys

from probe_rows import accuracy, logit_lens
from sweep_choices import choices

run, md_path = sys.argv[1:3]
BEGIN, END = "<!-- tofu-suite: begin (bench/tofu_suite_report.py) -->", "<!-- tofu-suite: end -->"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
plot_dir = os.path.join(os.path.dirname(os.path.abspath(md_path)), "results", "tofu")
os.makedirs(plot_dir, exist_ok=True)
METHODS = ["ga", "gd", "kl", "random_label", "adversarial", "npo", "simnpo", "dpo", "idk", "rmu", "tvn", "snap",
           "memflex", "gd_lora_all", "wga", "undial", "satimp", "ce_u", "pdu", "altpo"]


def load(path):
    return json.load(open(path)) if os.path.exists(path) else None


def fmt(v, spec=".3f"):
    return "-" if v is None else format(v, spec)


def hmean(xs):
    return 0.0 if any(x <= 0 for x in xs) else len(xs) / sum(1 / x for x in xs)


def copy_plot(src, name):
    """A plot into docs/results/tofu/, with the run directory's absolute path written as RUN."""
    text = open(src).read().replace(os.path.abspath(run) + "/", "RUN/")
    open(os.path.join(plot_dir, name), "w").write(text)


def rel(path):
    return os.path.relpath(path, os.path.dirname(os.path.abspath(md_path)))


def trainable(log):
    if not os.path.exists(log):
        return None
    text = open(log).read()
    sel = re.search(r"training (\d+) parameters", text)
    return int(sel.group(1)) if sel else None


def method_row(name, report, seconds, params):
    s, t, mia = report["splits"], report.get("tofu", {}), report.get("mia", {})
    f, r = s["forget"], s["retain"]
    auc = mia.get("auc", {})
    return (f"| {name} | {fmt(t.get('forget_quality'), '.3g')} | {fmt(t.get('model_utility'))} | "
            f"{hmean([r['answer_prob'], r['rouge_l_recall']]):.3f} | {f['answer_prob']:.3f} | "
            f"{f['truth_ratio_forget']:.3f} | {f['rouge_l_recall']:.3f} | {f['extraction_strength']:.3f} | "
            f"{f['exact_memorization']:.3f} | {fmt(auc.get('min_k'))} | {fmt(auc.get('reference'))} | "
            f"{fmt(mia.get('priv_leak'), '.1f')} | {r['answer_prob']:.3f} | "
            f"{s['real_authors']['answer_prob_normalised']:.3f} | {s['world_facts']['answer_prob_normalised']:.3f} | "
            f"{fmt(params, ',') if params else '-'} | {seconds} |")


HEADING = "## (f) TOFU with open-unlearning's metrics, the probe, swept budgets and SPUNGE under the probe"
out = [HEADING, BEGIN, ""]
finetune = open(os.path.join(run, "finetune_times.txt")).read().split("\n") if os.path.exists(
    os.path.join(run, "finetune_times.txt")) else []
out += ["Made by `bash bench/run_tofu_suite.sh` (then `bench/tofu_suite_report.py`) on the 2-core CPU machine; not "
        "part of CI. Data: forget10 (20 authors) is forgotten; retain90's first 160 authors (3,200 pairs) are kept; "
        "its last 20 authors (400 pairs) are trained on by neither model and are the membership-inference holdout "
        "(TOFU's own holdout split is not in ../shared/data/tofu). Models: `configs/models/tiny-llama.json` with a "
        "2,048-token BPE vocabulary trained on TOFU (1,049,728 parameters), finetuned for 1,200 steps of 16 at lr "
        "3e-3 (cosine) on forget10 + the kept authors (`before`) and, as the reference for forget quality, PrivLeak "
        f"and relearning, a twin on the kept authors only ({'; '.join(x for x in finetune if x)}). Unlearning: 40 "
        "steps of 16 at lr 1e-3 constant (LoRA 1e-2; rmu 1e-2 with alpha 10 as in (b)), two methods at a time "
        "with one thread each. Evaluation: all 400 forget10 items, 300 seeded kept-author items, real authors (100), "
        "world facts (117) and the holdout (400), greedy generation of up to 48 tokens.", ""]
out += ["Columns: forget quality (KS-test p-value of the forget truth ratios against the twin's); model "
        "utility as open-unlearning computes it (harmonic mean of 8 terms: retain Prob and ROUGE, real authors' and "
        "world facts' Prob_normalised, ROUGE and truth ratio; retain's truth ratio is missing because retain90.json "
        "has no perturbed answers); retain utility (harmonic mean of retain Prob and ROUGE-L recall: the two terms "
        "this model can score, see below); forget Prob, truth ratio (open-unlearning's p(perturbed)/p(correct), mean "
        "over items), ROUGE-L recall, extraction strength and exact memorization; membership inference on forget10 "
        "vs the holdout as AUC (Min-K% and the reference attack with the twin as reference; 0.5: no signal); "
        "PrivLeak (MUSE, against the twin's Min-K% AUC: near 0 is the goal, strongly negative is under-unlearned); "
        "the answer probability on retain and Prob_normalised on real authors and world facts.", ""]
head = ("| model | forget quality | model utility (8 terms) | retain utility | forget Prob | forget truth ratio | "
        "forget ROUGE-L | extraction strength | exact memorization | MIA Min-K% AUC | MIA reference AUC | PrivLeak | "
        "retain Prob | real authors Prob_norm | world facts Prob_norm | trainable params | wall s |")
out += [head, "|---|" + "---:|" * (head.count("|") - 2)]
for name, ev in [("before", "eval/before"), ("retain-only twin", "eval/retain_only")]:
    rep = load(os.path.join(run, ev, "report.json"))
    if rep:
        out.append(method_row(name, rep, "-", None))
missing = []
for m in METHODS:
    d = os.path.join(run, "methods", m)
    rep = load(os.path.join(d, "eval", "report.json"))
    if not rep:
        missing.append(m)
        continue
    secs = float(open(os.path.join(d, "seconds")).read()) if os.path.exists(os.path.join(d, "seconds")) else None
    out.append(method_row(m, rep, fmt(secs, ".1f"), trainable(os.path.join(d, "unlearn.log"))))
out.append("")
if missing:
    out += [f"Not run (out of time in this session): {', '.join(missing)}.", ""]

# ---------------------------------------------------------------- robustness
probes = [(n, load(os.path.join(run, "probe", n, "probe.json"))) for n in ["before"] + METHODS]
probes = [(n, p) for n, p in probes if p]
if probes:
    out += ["### Robustness (`lethe probe`)", "",
            "Forget answer-token accuracy % (teacher-forced; no generation, to keep the run short) under each probe: "
            "as evaluated, with the paraphrased question, with \"Sure, here is the answer:\" opening the answer, "
            "with the weights rounded to int8 (per-channel absmax), NF4 and FP4 (blocks of 64), and after "
            "relearning: one epoch at lr 1e-3 on the first half of forget10, tested on the other half (its "
            "as-is value in the column before). R: open-unlearning's relearning ratio on that accuracy with the twin "
            "relearnt alike (1: nothing came back beyond what the twin learns from the same data). Last: the "
            "forget answer probability read through the final norm and lm_head after each decoder layer (logit "
            "lens). Retain accuracy as is, then under NF4, shows what the attacks cost.", ""]
    head = ("| model | as is | paraphrase | prefix | int8 | NF4 | FP4 | held-out half | relearned | R (accuracy) | "
            "logit lens, forget Prob per layer | retain as is | retain NF4 |")
    out += [head, "|---|" + "---:|" * (head.count("|") - 2)]
    for n, p in probes:
        cells = [accuracy(p, k) for k in ("as is", "paraphrase", "prefix", "int8", "nf4", "fp4", "as is, held-out",
                                          "relearned")]
        ratio = (p.get("relearn_ratio") or {}).get("accuracy")
        out.append(f"| {n} | " + " | ".join(fmt(c, ".1f") for c in cells) + f" | {fmt(ratio, '.2f')} | {logit_lens(p)} | "
                   f"{fmt(accuracy(p, 'as is', 'retain'), '.1f')} | {fmt(accuracy(p, 'nf4', 'retain'), '.1f')} |")
        svg = os.path.join(run, "probe", n, "probe.svg")
        if os.path.exists(svg):
            copy_plot(svg, f"probe_{n}.svg")
    out += ["", "Plots (one per probed model, as `lethe probe` draws them): " +
            ", ".join(f"[{n}]({rel(os.path.join(plot_dir, f'probe_{n}.svg'))})" for n, _ in probes), ""]

# ---------------------------------------------------------------- sweep
sweep = load(os.path.join(run, "sweep", "sweep.json"))
if sweep and "results" in sweep:
    copy_plot(os.path.join(run, "sweep", "sweep.svg"), "sweep.svg")
    out += ["### Budgets from `lethe sweep`", "",
            f"{len(sweep['results'])} configurations (grid below) on 2 rank groups in {sweep.get('seconds', 0):.0f} s, "
            "each evaluated in memory without generation against the twin. Model utility here is the retain "
            "answer probability (the one utility term a run without generation and without real authors / world "
            "facts has). Each method's budget: the configuration with the best harmonic mean of forget quality "
            "and that utility.", "", "```json", open(os.path.join(run, "grid.json")).read().strip().replace(
                os.path.abspath(run) + "/", "RUN/"), "```", ""]
    best = choices(os.path.join(run, "sweep", "sweep.json"))
    out += ["| method | chosen lr | chosen steps | forget quality | utility | harmonic mean | on the Pareto front |",
            "|---|---:|---:|---:|---:|---:|:---:|"]
    for m, (h, r) in sorted(best.items(), key=lambda kv: -kv[1][0]):
        out.append(f"| {m} | {r['lr']:g} | {r['steps']} | {r['x']:.3g} | {r['y']:.3f} | {h:.3g} | "
                   f"{'yes' if r['pareto'] else ''} |")
    out += ["", f"![sweep: forget quality vs utility]({rel(os.path.join(plot_dir, 'sweep.svg'))})", ""]

# ---------------------------------------------------------------- SPUNGE vs plain under the probe
sp = [(m, os.path.join(run, "spunge", m)) for m in ("gd", "npo")]
sp = [(m, d) for m, d in sp if os.path.exists(os.path.join(d, "report.md"))]
if sp:
    out += ["### SPUNGE vs plain under the probe", "",
            "`lethe spunge --compare --probe` on 4 ranks: forget10 in 4 blocks of 5 authors, each unlearnt on its own "
            "rank at the method's swept budget, merged with TIES; plain unlearns all of forget10 with the same "
            "budget. Both probed as above (teacher-forced, relearning at lr 1e-3). The table is the command's own "
            "(report.md).", ""]
    chosen = {}
    if os.path.exists(os.path.join(run, "choices.txt")):
        for line in open(os.path.join(run, "choices.txt")):
            f = line.split()
            chosen[f[0]] = (f[1], f[2])
    for m, d in sp:
        text = open(os.path.join(d, "report.md")).read()
        sec = re.search(r"(## Robustness: SPUNGE vs plain.*?)(?=\n## |\Z)", text, re.S)
        cmp = re.search(r"(## SPUNGE vs plain unlearning.*?)(?=\n### |\n## |\Z)", text, re.S)
        lr, steps = chosen.get(m, ("?", "?"))
        out += [f"#### {m} (lr {lr}, {steps} steps)", ""]
        if cmp:
            out += [cmp.group(1).replace("## SPUNGE vs plain", "SPUNGE vs plain"), ""]
        out += [(sec.group(1) if sec else "(no robustness section in report.md)").replace("## Robustness", "Robustness"),
                ""]

# The reading of the numbers (written by a person after looking at them) follows the tables.
analysis = os.path.join(plot_dir, "analysis.md")
if os.path.exists(analysis):
    out += [open(analysis).read().rstrip(), ""]
out += ["Commands: `bash bench/run_tofu_suite.sh RUN_DIR` runs every part (or one of base, methods, probe, sweep, "
        "spunge, report); each part's exact options are in the script.", END]

md = open(md_path).read()
section = "\n".join(out)
if BEGIN in md and END in md:
    start = md.rfind("\n## ", 0, md.index(BEGIN)) + 1  # the heading above the marker
    md = md[:start] + section + md[md.index(END) + len(END):]
else:
    md = md.replace("\n## Plots\n", "\n" + section + "\n\n## Plots\n", 1)
open(md_path, "w").write(md)
print(f"tofu_suite_report: section (f) of {md_path} written; plots in {plot_dir}")
