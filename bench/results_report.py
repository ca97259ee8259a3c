#!/usr/bin/python3
"""Writes docs/RESULTS.md and its plots (gnuplot) from a bench/run_results.sh run.
Sections (a)-(c) of a dataset this run has no rows for, the sections other scripts write ((d) on
are bench/run_probe_demo.sh's, bench/run_sweep_demo.sh's and bench/tofu_suite_report.py's) and the
other datasets' commands are kept from the current RESULTS_MD.
usage: results_report.py RUN_DIR RESULTS_MD PLOT_DIR"""
import json
import os
import re
import subprocess
import sys

from probe_rows import accuracy, logit_lens

run, md_path, plot_dir = sys.argv[1:4]
os.makedirs(plot_dir, exist_ok=True)
rows = {}
for line in open(os.path.join(run, "results.jsonl")):
    r = json.loads(line)
    rows[(r["dataset"], r["method"])] = r  # the last record of a method wins
ORDER = ["before", "retain90_only", "ga", "gd", "kl", "random_label", "adversarial", "npo", "simnpo", "dpo", "idk",
         "rmu", "rmu_alpha10", "tvn", "snap", "memflex", "gd_lora_all", "wga", "undial", "satimp", "ce_u", "pdu", "altpo"]


def old_sections(path):
    """The current file's '## ' sections: [(heading, text)] in order."""
    if not os.path.exists(path):
        return []
    out, cur = [], None
    for line in open(path).read().split("\n"):
        if line.startswith("## "):
            cur = [line, [line]]
            out.append(cur)
        elif cur:
            cur[1].append(line)
    return [(h, "\n".join(t).rstrip("\n")) for h, t in out]


OLD = old_sections(md_path)


def kept(prefix):
    """The current file's section whose heading starts with `prefix`, as lines (or [])."""
    for h, t in OLD:
        if h.startswith(prefix):
            return t.split("\n") + [""]
    return []


def report(r):
    return json.load(open(os.path.join(r["eval"], "report.json")))


def params(r):
    log = os.path.join(os.path.dirname(r["eval"]), "unlearn.log")
    if os.path.exists(log):
        text = open(log).read()
        m = re.search(r": (\d+) parameters, (\d+) trainable", text)
        sel = re.search(r"training (\d+) parameters", text)  # after the method's own selection
        if m:
            return int(m.group(1)), int(sel.group(1)) if sel else int(m.group(2))
    return None, None


def history(r):
    p = os.path.join(r["model"], "lethe_run_config.json")
    if not os.path.exists(p):
        return []
    return json.load(open(p)).get("result", {}).get("history", [])


def fmt(v, spec=".1f"):
    return "-" if v is None else format(v, spec)


SYNTH_HEAD = ("Unlearn Success | Retention Success | **Average Success** | held-out forget acc % | held-out retain acc % | "
              "forget ppl | retain ppl | forget ROUGE-L | retain ROUGE-L | leakage %")
TOFU_HEAD = ("forget quality | model utility | forget answer prob | forget truth ratio | forget ROUGE-L recall | "
             "retain answer prob | retain ROUGE-L recall | leakage %")


def synth_cells(j):
    k, s = j["knowundo"], j["splits"]
    return (f"{k['unlearn_success']:.1f} | {k['retention_success']:.1f} | **{k['average_success']:.1f}** | "
            f"{100 * s['eval_forget']['accuracy']:.1f} | {100 * s['eval_retain']['accuracy']:.1f} | "
            f"{s['forget']['perplexity']:.3g} | {s['retain']['perplexity']:.3g} | "
            f"{s['forget']['rouge_l_f1']:.3f} | {s['retain']['rouge_l_f1']:.3f} | "
            f"{fmt(100 * s['forget'].get('leakage', 0))}")


def tofu_cells(j):
    s, t = j["splits"], j.get("tofu", {})
    return (f"{fmt(t.get('forget_quality'), '.3g')} | {fmt(t.get('model_utility'), '.3f')} | "
            f"{s['forget']['answer_prob']:.3f} | {s['forget']['truth_ratio_forget']:.3f} | "
            f"{s['forget']['rouge_l_recall']:.3f} | {s['retain']['answer_prob']:.3f} | "
            f"{s['retain']['rouge_l_recall']:.3f} | {fmt(100 * s['forget'].get('leakage', 0))}")


def gnuplot(script):
    subprocess.run(["gnuplot"], input=script.encode(), check=True)


def ordered(ds):
    return [(m, rows[(ds, m)]) for m in ORDER if (ds, m) in rows]


out = ["# Results: every unlearning method, side by side", "",
       "Produced by `bash bench/run_results.sh` (then `bench/results_report.py`) on the 2-core CPU machine; "
       "not part of CI. Every method gets the same step budget on the same finetuned model; wall time is the "
       "`lethe unlearn` command alone (reference caches, localization and training; evaluation excluded). "
       "Hyper-parameters are the METHODS.md defaults except where the command line says otherwise "
       "(learning rates are scaled up for a model this small: 1e-3 full-parameter, 1e-2 for LoRA).", ""]

def method_table(runs, head, metric_cols, cells):
    """One row per method: its metric cells, trainable parameters and wall time."""
    lines = [f"| method | {head} | trainable params | wall s |", "|---|" + "---:|" * metric_cols]
    for m, r in runs:
        _, tr = params(r)
        lines.append(f"| {m} | {cells(report(r))} | {fmt(tr, ',') if tr else '-'} | {r['seconds']:.1f} |")
    return lines + [""]


# ---------------------------------------------------------------- synthetic KnowUnDo-style data
syn = ordered("synth")
if syn:
    out += ["## (a) Synthetic KnowUnDo-style data (`lethe synth`: privacy + copyright, unlearn vs retention scope)", ""]
    n_params = next((params(r)[0] for _, r in syn if params(r)[0]), None)
    out += [f"Model: `configs/models/tiny-llama.json` ({fmt(n_params, ',')} parameters) finetuned until both scopes are "
            "learned (`configs/demo/finetune.ini`); unlearning: `configs/demo/unlearn.ini` (50 steps, batch 16). "
            "Unlearn/Retention Success are teacher-forced answer-token accuracies on the trained items (as "
            "KnowUnDo scores its splits); held-out columns are the paraphrased questions of `eval_forget` / "
            "`eval_retain`. Leakage: share of unlearn-scope items whose e-mail, number or name appears verbatim in "
            "the greedy generation.", "",
            ]
    out += method_table(syn, SYNTH_HEAD, 12, synth_cells)
    probed = [(m, r, os.path.join(os.path.dirname(r["eval"]), "probe", "probe.json")) for m, r in syn]
    probed = [(m, json.load(open(p))) for m, r, p in probed if os.path.exists(p)]
    if probed:
        out += ["Robustness (`lethe probe`, teacher-forced): forget answer-token accuracy % as evaluated, with the "
                "answer's turn opened by \"Sure, here is the answer:\", with the weights in int8 (per-channel "
                "absmax), NF4 and FP4 (blocks of 64), and on the second half of the forget items before and after "
                "relearning the first half (one epoch, batch 8, lr 1e-3); retain accuracy as evaluated and after "
                "relearning; the logit lens (forget answer probability through the final norm and lm_head after each "
                "decoder layer).", "",
                "| method | as is | prefix | int8 | NF4 | FP4 | held-out half | relearned | retain as is | retain "
                "relearned | logit lens, forget Prob per layer |", "|---|" + "---:|" * 9 + "---|"]
        for m, p in probed:
            cells = [accuracy(p, k) for k in ("as is", "prefix", "int8", "nf4", "fp4", "as is, held-out", "relearned")]
            cells += [accuracy(p, "as is", "retain"), accuracy(p, "relearned", "retain")]
            out.append(f"| {m} | " + " | ".join(fmt(c) for c in cells) + f" | {logit_lens(p)} |")
        out.append("")
else:
    out += kept("## (a)")

# ---------------------------------------------------------------- TOFU
tofu = ordered("tofu")
if tofu:
    times = open(os.path.join(run, "tofu", "finetune_times.txt")).read().strip() if os.path.exists(
        os.path.join(run, "tofu", "finetune_times.txt")) else ""
    n_params = next((params(r)[0] for _, r in tofu if params(r)[0]), None)
    out += ["## (b) TOFU forget10 / retain90", "",
            f"Model: `configs/models/tiny-llama.json` with a 2,048-token BPE vocabulary trained on TOFU "
            f"({fmt(n_params, ',')} parameters), finetuned on all 4,000 TOFU pairs (`before`) and, as the forget-quality "
            f"reference, a twin finetuned on retain90 only (1,500 steps of 16 each, lr 3e-3 cosine; {times.replace(chr(10), '; ')}). "
            "Unlearning: 40 steps of 16, lr 1e-3 constant. Forget metrics on all 400 forget10 items; retain metrics on "
            "400 seeded retain90 items. Forget quality = KS-test p-value between the forget truth ratios of the model "
            "and of the retain90-only twin (higher: closer to never having seen the data); model utility = harmonic "
            "mean of retain answer probability and ROUGE-L recall (TOFU's retain file has no perturbed answers, so "
            "its truth ratio is not part of it here).", "",
            ]
    out += method_table(tofu, TOFU_HEAD, 10, tofu_cells)
else:
    out += kept("## (b)")

# ---------------------------------------------------------------- SPUNGE vs plain
spunge = [(ds, m, r) for (ds, m), r in rows.items() if ds.startswith("spunge-")]
if spunge:
    out += ["## (c) SPUNGE vs plain unlearning", "",
            "`lethe spunge --compare` under mpirun: the forget set split by an attribute, each subset unlearned from "
            "the same model on its own rank group (one rank per subset, all at once), the deltas merged with TIES "
            "(METHODS.md defaults: density 0.2, lambda 1); `plain` unlearns the whole forget set with the same method "
            "and budget (steps, batch, lr) on the same ranks. Both are then evaluated exactly as the rows above. "
            "Wall s: training (SPUNGE: all groups at once, plus the merge) with every rank oversubscribed on the 2 "
            "cores, so SPUNGE's K groups share 2 cores here; on a cluster each group has its own GPUs.", ""]
    for ds, intro, head, cells in [
            ("spunge-synth", "Synthetic data (split by `domain`: privacy / copyright; by `kind`: contact, family, "
             "verbatim, continuation):", SYNTH_HEAD, synth_cells),
            ("spunge-tofu", "TOFU forget10 split by author (4 subsets of 5 authors; TOFU has no author field, its "
             "rows come in blocks of 20 per author):", TOFU_HEAD, tofu_cells)]:
        sel = sorted([(m, r) for d, m, r in spunge if d == ds], key=lambda mr: mr[0].split(",")[0])  # by method
        if sel:
            out += [intro, "", f"| run | {head} | wall s |", "|---|" + "---:|" * (head.count("|") + 2)]
            out += [f"| {m} | {cells(report(r))} | {r['seconds']:.1f} |" for m, r in sel]
            out.append("")
else:
    out += kept("## (c)")
# The sections other scripts write, as they are.
for h, t in OLD:
    if not re.match(r"## \([abc]\)", h) and h not in ("## Plots", "## Reading the numbers", "## Exact commands"):
        out += t.split("\n") + [""]

# ---------------------------------------------------------------- plots
plots = []
for ds, xs, ys, xl, yl in [("synth", ("knowundo", "unlearn_success"), ("knowundo", "retention_success"),
                            "Unlearn Success (higher: forgot more)", "Retention Success (higher: kept more)"),
                           ("tofu", ("splits", "forget", "rouge_l_recall"), ("tofu", "model_utility"),
                            "forget ROUGE-L recall (lower: forgot more)", "model utility (higher: kept more)")]:
    pts = ordered(ds)
    if not pts:
        continue
    dat = os.path.join(plot_dir, f"{ds}_tradeoff.dat")
    with open(dat, "w") as f:
        for m, r in pts:
            j = report(r)
            try:
                x, y = j, j
                for k in xs:
                    x = x[k]
                for k in ys:
                    y = y[k]
            except KeyError:
                continue
            f.write(f"{x} {y} {m}\n")
    png = os.path.join(plot_dir, f"{ds}_tradeoff.png")
    gnuplot(f"""set terminal pngcairo size 900,650 font 'sans,11' noenhanced
set output '{png}'
set title 'Forget vs retain per method ({ds})'
set xlabel '{xl}'
set ylabel '{yl}'
set grid
set key off
set offsets graph 0.08, graph 0.12, graph 0.08, graph 0.08
plot '{dat}' using 1:2 with points pt 7 ps 1.6 lc rgb '#3366aa', '' using 1:2:3 with labels offset 0.8,0.8 left font 'sans,10'
""")
    plots.append((ds, "tradeoff", png))
    # metrics over training steps (teacher-forced answer accuracy on the forget and retain items)
    series = []
    for m, r in pts:
        h = history(r)
        if not h:
            continue
        dat = os.path.join(plot_dir, f"{ds}_steps_{m}.dat")
        with open(dat, "w") as f:
            for e in h:
                f.write(f"{e['step']} {100 * e['forget']['accuracy']} {100 * e['retain']['accuracy']}\n")
        series.append((m, dat))
    if series:
        png = os.path.join(plot_dir, f"{ds}_steps.png")
        f_plot = ", ".join(f"'{d}' using 1:2 with linespoints title '{m}'" for m, d in series)
        r_plot = ", ".join(f"'{d}' using 1:3 with linespoints title '{m}'" for m, d in series)
        gnuplot(f"""set terminal pngcairo size 1300,560 font 'sans,10' noenhanced
set output '{png}'
set multiplot layout 1,2 title 'Answer-token accuracy during unlearning ({ds})'
set xlabel 'step'
set grid
set key outside right
set ylabel 'forget accuracy %'
plot {f_plot}
set ylabel 'retain accuracy %'
plot {r_plot}
unset multiplot
""")
        plots.append((ds, "steps", png))

for ds in ("synth", "tofu"):  # a dataset this run did not redo keeps its plots
    if not ordered(ds):
        for kind in ("tradeoff", "steps"):
            png = os.path.join(plot_dir, f"{ds}_{kind}.png")
            if os.path.exists(png):
                plots.append((ds, kind, png))
plots.sort(key=lambda p: (p[0], p[1] != "tradeoff"))
if plots:
    out += ["## Plots", ""]
    for ds, kind, png in plots:
        rel = os.path.relpath(png, os.path.dirname(os.path.abspath(md_path)))
        title = "forget vs retain trade-off" if kind == "tradeoff" else "metrics over training steps"
        out += [f"### {ds}: {title}", "", f"![{ds} {title}]({rel})", ""]

def relative_command(cmd):
    """The command with the repository's and shared/'s absolute paths written relative to the
    repository root, where the commands are run from."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return cmd.replace(os.path.join(os.path.dirname(root), "shared") + "/", "../shared/").replace(root + "/", "")


out += ["## Exact commands", ""]
datasets = {ds for ds, _ in rows}
for line in kept("## Exact commands")[1:]:  # the commands of datasets this run did not redo
    m = re.match(r"- (\S+) / ", line)
    if m and m.group(1) not in datasets:
        out.append(line)
for (ds, m), r in sorted(rows.items(), key=lambda kv: (kv[0][0], ORDER.index(kv[0][1]) if kv[0][1] in ORDER else 99)):
    out += [f"- {ds} / {m}: `{relative_command(r['command'])}`"]
out.append("")
for f in os.listdir(plot_dir):
    if f.endswith(".dat"):
        os.remove(os.path.join(plot_dir, f))
# The reading of the numbers (written by a person after looking at them) follows the tables.
analysis = os.path.join(plot_dir, "analysis.md")
if os.path.exists(analysis):
    out.insert(out.index("## Exact commands"), open(analysis).read().rstrip() + "\n")
with open(md_path, "w") as f:
    f.write("\n".join(out) + "\n")
print(f"results_report: {md_path} and plots in {plot_dir} written")
