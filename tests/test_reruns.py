"""What reruns when code changes, on a finished run with every rule: the rerun matrix.

For every module of the package and every script, in a copied checkout: a comment- or docstring-only
edit plans nothing, and a behaviour edit plans exactly the rules whose code reaches it and what follows
them (scripts: see SCRIPT_EDITS). The table below is the one in the README's "What reruns when" (a test compares them).
"""

import ast
import base64
import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml

from memorization_curvature import provenance
from workflow_helpers import FULL_CONFIG as CONFIG
from workflow_helpers import REPO, checkout_copy, full_run, planned, shadow_run

EVERY = "every rule"
OUTSIDE = "none"

# file -> the rules whose code reaches it (a script: its own rule). Every rule after them reruns too.
# Stage modules: an edit of the module's top level (imports); an edit of one step is tested below.
RUNS = {
    "__init__.py": EVERY,
    "baselines.py": {"history_baselines", "crossval", "confident_learning", "ssft", "compare_methods"},
    "batches.py": {"train", "score", "crossval", "ssft", "retrain", "final_outputs", "shadow_train", "shadow_score"},
    "checkpoints.py": {"train", "score", "final_outputs", "shadow_train", "shadow_score"},
    "choices.py": OUTSIDE,
    "cleaning.py": {"clean_labels", "retrain"},
    "config.py": OUTSIDE,
    "corruption.py": {"corrupt", "inject_duplicates"},
    "curvature.py": {"score", "shadow_score"},
    "data.py": {"prepare", "corrupt", "inject_duplicates", "train", "score", "crossval", "ssft", "retrain",
                "figure_grids", "find_duplicates", "final_outputs", "shadow_train", "shadow_score"},
    "difference.py": {"score", "shadow_score"},
    "duplicates.py": {"find_duplicates"},
    "epoch_statistics.py": {"train"},
    "figures.py": {"figure_grids", "figure_scores", "figure_dynamics", "summary_figures", "compare_methods",
                   "methods_summary", "find_duplicates", "compare_memorization", "cleaning_table",
                   "cleaning_summary", "privacy_audit", "shadow_attack"},
    "gpu_slots.py": OUTSIDE,
    "io.py": EVERY,
    "job_log.py": OUTSIDE,
    "memorization.py": {"compare_memorization"},
    "metrics.py": {"average", "evaluate", "aggregate", "compare_methods"},
    "models.py": {"train", "score", "crossval", "ssft", "retrain", "final_outputs", "shadow_train", "shadow_score"},
    "privacy.py": {"final_outputs", "privacy_audit", "shadow_masks", "shadow_score", "shadow_attack"},
    "provenance.py": OUTSIDE,
    "resume.py": {"train", "crossval", "ssft", "retrain", "shadow_train"},
    "score_ahead.py": OUTSIDE,
    "suspects.py": {"evaluate", "suspects", "clean_labels", "retrain"},
    "time_limit.py": OUTSIDE,
    "training.py": {"train", "score", "crossval", "ssft", "retrain", "final_outputs", "shadow_train", "shadow_score"},
    "stages/__init__.py": EVERY,
    "stages/data.py": {"prepare", "corrupt", "inject_duplicates"},
    "stages/train.py": {"train"},
    "stages/score.py": {"score", "average"},
    "stages/evaluate.py": {"evaluate", "aggregate"},
    "stages/figures.py": {"figure_grids", "figure_scores", "figure_dynamics", "summary_figures"},
    "stages/baselines.py": {"history_baselines", "crossval", "confident_learning", "ssft", "compare_methods",
                            "methods_summary"},
    "stages/memorization.py": {"find_duplicates", "compare_memorization"},
    "stages/cleaning.py": {"suspects", "clean_labels", "retrain", "cleaning_table", "cleaning_summary"},
    "stages/privacy.py": {"final_outputs", "privacy_audit", "shadow_masks", "shadow_train", "shadow_score", "shadow_attack"},
}
# One step of a stage module: its rule only.
STEP_EDITS = {("stages/score.py", "average"): {"average"}, ("stages/baselines.py", "crossval_probabilities"): {"crossval"},
              ("stages/cleaning.py", "cleaning_table"): {"cleaning_table"},
              ("stages/privacy.py", "audit"): {"privacy_audit"}}

# rule -> the rules that read its outputs: what reruns after it
READ_BY = {
    "prepare": {"corrupt", "inject_duplicates", "train", "score", "crossval", "ssft", "retrain", "figure_grids",
                "find_duplicates", "final_outputs"},
    "corrupt": {"train", "score", "average", "figure_dynamics", "history_baselines", "crossval",
                "confident_learning", "ssft", "clean_labels", "final_outputs", "privacy_audit"},
    "train": {"score", "evaluate", "history_baselines", "suspects", "clean_labels", "cleaning_table", "final_outputs"},
    "score": {"average", "figure_dynamics", "privacy_audit"},
    "final_outputs": {"privacy_audit"},
    "privacy_audit": {"evaluate"},
    "average": {"evaluate", "figure_grids", "figure_scores", "compare_methods", "find_duplicates",
                "compare_memorization", "suspects", "clean_labels"},
    "evaluate": {"aggregate", "figure_scores"},
    "aggregate": {"summary_figures"},
    "history_baselines": {"compare_methods", "clean_labels"},
    "crossval": {"confident_learning"},
    "confident_learning": {"compare_methods"},  # and clean_labels where a cleaning ranks by it
    "ssft": {"compare_methods"},  # likewise
    "compare_methods": {"methods_summary", "suspects"},
    "find_duplicates": {"suspects"},
    "clean_labels": {"retrain"},
    "retrain": {"cleaning_table"},
    "cleaning_table": {"cleaning_summary"},
}
READ_BY["prepare"] |= {"shadow_train", "shadow_score"}
READ_BY["corrupt"] |= {"shadow_masks", "shadow_train", "shadow_score", "shadow_attack"}
READ_BY["average"] |= {"shadow_attack"}
READ_BY["find_duplicates"] |= {"shadow_attack"}
READ_BY.update({"shadow_masks": {"shadow_train", "shadow_attack"}, "shadow_train": {"shadow_score"},
                "shadow_score": {"shadow_attack"}})
READ_BY["inject_duplicates"] = READ_BY["corrupt"]
# the shadow-model attack (privacy.shadow_models) is off in the finished run the dry runs below plan on:
# its rules' digests are checked here, what its run plans in tests/test_shadow_models.py
SHADOW_RULES = {"shadow_masks", "shadow_train", "shadow_score", "shadow_attack"}
# a dup run has no cleaning: what follows inject_duplicates alone stops before it
NOT_IN_DUP_RUNS = {"clean_labels", "retrain", "cleaning_table", "cleaning_summary"}
SCRIPTS = sorted(p.stem for p in (REPO / "scripts").glob("*.py"))
EVERY_RULE = set(SCRIPTS)
PACKAGE = REPO / "src/memorization_curvature"

def rules_after(rules):
    """``rules`` and every rule that reads what they write, transitively."""
    found, pending = set(), list(rules)
    while pending:
        rule = pending.pop()
        if rule not in found:
            found.add(rule)
            pending += READ_BY.get(rule, ())
    return found


def expected_reruns(runs):
    """What a dry run on the finished run plans after an edit reaching ``runs``."""
    if runs == {"inject_duplicates"}:
        return rules_after(runs) - NOT_IN_DUP_RUNS - SHADOW_RULES
    return set() if runs == OUTSIDE else rules_after(EVERY_RULE if runs == EVERY else runs) - SHADOW_RULES


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished workflow with every rule (shared with tests/test_workflow.py: read only)."""
    return full_run(tmp_path_factory)


def planned_rules(workdir, copy, settings=None):
    """The rules a dry run with the copied checkout's code (and ``settings`` over the run's config) would
    run ("all" aside)."""
    output = planned(workdir, settings or {}, snakefile=copy / "Snakefile")
    rules = {m.group(1) for m in re.finditer(r"^(?:local)?rule (\w+):$", output, re.MULTILINE)}
    assert bool(rules) != ("Nothing to be done" in output), output[-2000:]  # an empty plan only in its words
    return rules - {"all"}


def every_file(root):
    return sorted([*(root / "src/memorization_curvature").rglob("*.py"), *(root / "scripts").glob("*.py")])


def without_behaviour(source):
    """``source`` with its docstrings reworded, comments added and its layout changed."""
    edited = re.sub(r'"""', '"""Reworded: ', source, count=1) if source.lstrip().startswith('"""') else (
        '"""A docstring of its own."""\n' + source)
    edited = re.sub(r'(\n    """)', r'\1Reworded too: ', edited, count=1)  # the first function's docstring
    return "# a comment on top\n" + edited.replace("\n\n\n", "\n\n\n# between definitions\n", 1) + "\n# at the end\n"


def test_the_table_covers_every_module_and_nothing_else():
    assert set(RUNS) == {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")}
    assert {m + ".py" for m in provenance.OUTSIDE_RESULTS} == {f for f, runs in RUNS.items() if runs == OUTSIDE}


def test_the_table_is_what_the_digests_follow():
    # who reaches each module by the digests (the dry runs below check what Snakemake then plans)
    reached = {}
    for rule in SCRIPTS:
        for unit in provenance.script_modules(REPO / "scripts" / f"{rule}.py"):
            parts = unit.split(".")
            name = {1: f"{unit}.py", 2: f"stages/{parts[-1]}.py"}.get(len(parts))
            if unit == "stages":
                name = "stages/__init__.py"
            if name and unit != "script":
                reached.setdefault(name, set()).add(rule)
    table = {f: (EVERY_RULE if runs == EVERY else runs) for f, runs in RUNS.items() if runs != OUTSIDE}
    assert reached == table


def test_comments_and_docstrings_rerun_nothing(finished, tmp_path):
    copy = checkout_copy(tmp_path)
    for path in every_file(copy):
        source = path.read_text()
        edited = without_behaviour(source)
        assert edited != source
        # each file on its own: the same syntax tree without docstrings
        assert provenance.normalized(ast.parse(edited)) == provenance.normalized(ast.parse(source)), path
        path.write_text(edited)
    assert planned_rules(finished, copy) == set()


def behaviour_edit(path, function=None):
    """A statement added to ``path``: at its top level, or before the last statement of ``function``."""
    source = path.read_text()
    if function is None:
        path.write_text(source + "\n_EDITED = 1\n")
        return
    node = next(n for n in ast.parse(source).body if getattr(n, "name", None) == function)
    last = node.body[-1]
    lines = source.splitlines(keepends=True)
    lines.insert(last.lineno - 1, " " * last.col_offset + "_edited = 1\n")
    path.write_text("".join(lines))


# Scripts: each rule passes the digest of its own script and no other (checked for every rule below,
# from what Snakemake recorded), and a behaviour edit of a script changes its digest (every script,
# below); these dry runs show the rest: Snakemake then reruns that rule and what follows.
SCRIPT_EDITS = ["train", "average", "figure_grids", "inject_duplicates", "clean_labels"]


DIGESTS = """
import json, sys
from pathlib import Path
from memorization_curvature.provenance import script_digest
print(json.dumps({p.stem: script_digest(p) for p in sorted((Path(sys.argv[1]) / "scripts").glob("*.py"))}))
"""


def digests(checkout):
    """Every script's code digest in ``checkout``, computed by that checkout's own package."""
    result = subprocess.run([sys.executable, "-c", DIGESTS, str(checkout)], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(checkout / "src")}, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def test_a_behaviour_edit_reruns_the_rules_its_code_reaches(finished, tmp_path):
    # every module, one step of three stage modules, some scripts: expected rules -> planned rules
    cases = {**{f"src/memorization_curvature/{name}": (None, runs) for name, runs in RUNS.items()},
             **{f"scripts/{rule}.py": (None, {rule}) for rule in SCRIPT_EDITS},
             **{f"src/memorization_curvature/{name}:{function}": (function, runs)
                for (name, function), runs in STEP_EDITS.items()}}
    copies = {}
    for k, (case, (function, _)) in enumerate(cases.items()):
        copies[case] = checkout_copy(tmp_path / str(k))
        behaviour_edit(copies[case] / case.split(":")[0], function)
    # each edit changes the digests of exactly the rules whose code reaches it ...
    before = digests(REPO)
    with ThreadPoolExecutor(2) as pool:
        after = dict(zip(cases, pool.map(digests, copies.values())))
    changed = {case: {rule for rule in before if after[case][rule] != before[rule]} for case in cases}
    reached = {case: EVERY_RULE if runs == EVERY else set() if runs == OUTSIDE else runs
               for case, (_, runs) in cases.items()}
    wrong = {case: {"expected": sorted(reached[case]), "changed": sorted(changed[case])}
             for case in cases if changed[case] != reached[case]}
    assert not wrong, "\n".join(f"{case}: {diff}" for case, diff in wrong.items())
    # ... and Snakemake reruns those rules and what follows them: a dry run for each set of changed
    # digests (edits that change the same digests plan alike), two at a time (each its own copy, the
    # run only read)
    representatives = {}
    for case in cases:
        representatives.setdefault(frozenset(changed[case]), case)
    with ThreadPoolExecutor(2) as pool:
        planned = dict(zip(representatives.values(), pool.map(
            lambda case: planned_rules(finished, copies[case]), representatives.values())))
    wrong = {case: {"expected": sorted(expected_reruns(cases[case][1])), "planned": sorted(rules)}
             for case, rules in planned.items() if rules != expected_reruns(cases[case][1])}
    assert not wrong, "\n".join(f"{case}: {diff}" for case, diff in wrong.items())
    assert len(planned) >= 20  # most edits change a set of digests of their own


def test_a_behaviour_edit_of_any_script_changes_its_digest(tmp_path):
    for rule in SCRIPTS:
        edited = tmp_path / f"{rule}.py"
        edited.write_text((REPO / "scripts" / f"{rule}.py").read_text())
        before = provenance.script_digest(edited)
        behaviour_edit(edited)
        assert provenance.script_digest(edited) != before, rule


def test_every_rule_passes_the_digest_of_its_own_script(finished, tmp_path_factory):
    digests = {rule: provenance.script_digest(REPO / "scripts" / f"{rule}.py") for rule in SCRIPTS}
    assert len(set(digests.values())) == len(SCRIPTS)  # a script's own code is in its digest
    seen = set()
    shadows, _ = shadow_run(tmp_path_factory)  # the shadow-model rules
    for path in [*(finished / ".snakemake/metadata").iterdir(), *(shadows / ".snakemake/metadata").iterdir()]:
        record = json.loads(path.read_text())
        code = [ast.literal_eval(p) for p in record["params"]]
        assert digests[record["rule"]] in code, record["rule"]
        seen.add(record["rule"])
    assert seen == EVERY_RULE


def readme_table():
    """The table of the README's "What reruns when": file -> rules (or every rule, or none)."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("<!-- rerun table -->"):text.index("<!-- end of rerun table -->")]
    table = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0].startswith("`"):
            rules = set(re.findall(r"`(\w+)`", cells[1]))
            table[cells[0].strip("`")] = EVERY if cells[1].startswith(EVERY) else (
                OUTSIDE if cells[1].startswith(OUTSIDE) else rules)
    return table


def test_the_readme_shows_this_table():
    assert readme_table() == RUNS


def recorded_params(workdir, output):
    """The parameters Snakemake recorded for ``output`` (its metadata), as Python values."""
    name = base64.urlsafe_b64encode(output.encode()).decode()
    params = json.loads((workdir / ".snakemake/metadata" / name).read_text())["params"]
    return [ast.literal_eval(value) for value in params]


def test_every_training_rule_gets_the_same_whole_recipe(finished):
    from memorization_curvature.training import TrainConfig

    run = "results/digits/noise0.1/seed0"
    outputs = {"train": f"{run}/train_metrics.csv", "crossval": f"{run}/baselines/crossval_probs.npz",
               "ssft": f"{run}/baselines/ssft.csv", "retrain": f"{run}/cleaning/aum_0.1_remove.json"}
    recipes = {rule: [p for p in recorded_params(finished, path) if isinstance(p, dict)] for rule, path in outputs.items()}
    whole = recipes["train"][0]
    assert all(found == [whole] for found in recipes.values()), recipes
    defaults = yaml.safe_load((REPO / "config.yaml").read_text())
    assert whole == {**defaults["recipes"]["digits"], "epochs": CONFIG["train"]["epochs"], "bf16": True}
    assert TrainConfig.from_recipe(whole, 0).epochs == CONFIG["train"]["epochs"]  # every key known to the one training configuration



def test_both_profiles_leave_code_changes_to_the_digests():
    # Snakemake's own code trigger reruns a rule whenever its script file is touched
    for profile in ("default", "slurm"):
        triggers = yaml.safe_load((REPO / "profiles" / profile / "config.yaml").read_text())["rerun-triggers"]
        assert sorted(triggers) == ["input", "mtime", "params", "software-env"], profile


def test_the_order_recipe_keys_are_written_in_reruns_nothing(finished):
    recipe = yaml.safe_load((REPO / "config.yaml").read_text())["recipes"]["digits"]
    reordered = {"recipes": {"digits": dict(reversed(list({**recipe, **CONFIG["train"]}.items())))}}
    del reordered["recipes"]["digits"]["threads"]
    assert planned_rules(finished, REPO, reordered) == set()
