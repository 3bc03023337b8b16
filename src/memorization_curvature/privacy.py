"""Membership inference: how well a per-sample statistic tells a model's training samples (members)
from samples it never saw (non-members).

Every statistic is oriented so that a higher score says "member": a network is flatter around and
more confident on what it trained on (lower curvature, lower loss, higher logit-scaled confidence).
Attacks are judged as since Carlini et al. (2022): by the true-positive rate at low false-positive
rates as well as by AUROC.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

LOW_FPRS = (0.01, 0.001)


def logit_confidence(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """LiRA's statistic (Carlini et al. 2022): log p_y - log(1 - p_y) = z_y - logsumexp of the other
    logits, from logits (N, K) and labels (N,), in float64 without forming 1 - p_y (which rounds to 0
    for a confident network)."""
    logits = np.asarray(logits, dtype=np.float64)
    rows = np.arange(len(logits))
    labels = np.asarray(labels, dtype=np.int64)
    others = logits.copy()
    others[rows, labels] = -np.inf
    top = others.max(axis=1)
    return logits[rows, labels] - (top + np.log(np.exp(others - top[:, None]).sum(axis=1)))


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-sample cross-entropy of logits (N, K) at labels (N,), in float64: -log p_y = log(1 + e^-phi)
    with phi the :func:`logit_confidence`, exact also where p_y rounds to 1 (logsumexp - z_y would be 0
    there, and confident samples would tie)."""
    return np.logaddexp(0.0, -logit_confidence(logits, labels))


def roc(member_scores: np.ndarray, nonmember_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false-positive rates, true-positive rates) of every threshold on the scores, members positive."""
    from sklearn.metrics import roc_curve

    member_scores, nonmember_scores = _checked(member_scores, nonmember_scores)
    truth = np.r_[np.ones(len(member_scores), bool), np.zeros(len(nonmember_scores), bool)]
    fpr, tpr, _ = roc_curve(truth, np.r_[member_scores, nonmember_scores], drop_intermediate=False)
    return fpr, tpr


def thinned(fpr: np.ndarray, tpr: np.ndarray, points: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """The ROC at ``points`` false-positive rates spaced evenly on a log scale from the lowest above 0
    to 1 (and at 0), each with the highest true-positive rate a threshold reaches there: what a
    log-log figure shows, in a few thousand rows whatever the number of samples."""
    lowest = fpr[fpr > 0].min(initial=1.0)
    grid = np.unique(np.r_[0.0, np.geomspace(lowest, 1.0, points)])
    reached = np.searchsorted(fpr, grid, side="right") - 1  # fpr ascends and tpr with it: the last within
    return grid, tpr[reached]


def tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, target: float) -> float:
    """The highest true-positive rate of a threshold whose false-positive rate is at most ``target``
    (not interpolated: a threshold an attacker can pick)."""
    return float(tpr[fpr <= target].max())


def attack_metrics(member_scores: np.ndarray, nonmember_scores: np.ndarray) -> dict[str, float]:
    """AUROC, the best balanced accuracy over thresholds, the TPR at each of :data:`LOW_FPRS`, the
    counts, and the lowest false-positive rate above 0 that the non-members can show (1 / their number:
    a TPR at a lower target is the TPR at no false positive)."""
    from sklearn.metrics import auc

    fpr, tpr = roc(member_scores, nonmember_scores)
    result = {
        "auroc": float(auc(fpr, tpr)),
        "balanced_accuracy": float(((tpr + 1 - fpr) / 2).max()),
        **{f"tpr_at_{_percent(target)}_fpr": tpr_at_fpr(fpr, tpr, target) for target in LOW_FPRS},
        "members": len(member_scores),
        "non_members": len(nonmember_scores),
        "lowest_measurable_fpr": 1 / len(nonmember_scores),
    }
    return result


def _percent(rate: float) -> str:
    return f"{rate * 100:g}pct"


def _checked(member_scores, nonmember_scores):
    member_scores = np.asarray(member_scores, dtype=np.float64)
    nonmember_scores = np.asarray(nonmember_scores, dtype=np.float64)
    if not len(member_scores) or not len(nonmember_scores):
        raise ValueError(f"membership inference needs members and non-members: got {len(member_scores)} members "
                         f"and {len(nonmember_scores)} non-members (a run with no test samples cannot be audited)")
    for name, scores in (("member", member_scores), ("non-member", nonmember_scores)):
        if not np.isfinite(scores).all():
            raise ValueError(f"{np.count_nonzero(~np.isfinite(scores))} {name} score(s) are not finite")
    return member_scores, nonmember_scores


# The free audit: statistics every run has for its training samples and its test samples.
# name -> (what it is, how it is turned into a member score)
FREE_STATISTICS = {
    "curvature_mean": ("input-loss curvature averaged over the scored epochs", "lower is member"),
    "curvature_last": ("input-loss curvature at the last scored epoch", "lower is member"),
    "loss_final": ("cross-entropy at the final checkpoint (Yeom et al. 2018)", "lower is member"),
    "logit_confidence_final": ("LiRA's logit-scaled confidence at the final checkpoint (Carlini et al. 2022)",
                               "higher is member"),
}


def member_score(name: str, values: np.ndarray) -> np.ndarray:
    """``values`` of the free statistic ``name`` oriented so that higher says member."""
    direction = FREE_STATISTICS[name][1]
    return -np.asarray(values, dtype=np.float64) if direction == "lower is member" else np.asarray(values, np.float64)


def free_audit(statistics: dict[str, tuple[np.ndarray, np.ndarray]]) -> pd.DataFrame:
    """One row per statistic: ``statistics`` maps a name of :data:`FREE_STATISTICS` to (its values on
    the members, its values on the non-members)."""
    rows = []
    for name, (members, nonmembers) in statistics.items():
        description, direction = FREE_STATISTICS[name]
        rows.append({"statistic": name, "member_if": direction, "description": description,
                     **attack_metrics(member_score(name, members), member_score(name, nonmembers))})
    return pd.DataFrame(rows)


def log_roc_figure(curves: dict[str, tuple[np.ndarray, np.ndarray]], aurocs: dict[str, float], *, title: str):
    """ROC curves on log-log axes (the low false-positive rates that matter to an attacker, drawn out),
    with chance; and the plotted numbers."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    rows = []
    lowest = 1.0
    for name, (fpr, tpr) in curves.items():
        shown = (fpr > 0) & (tpr > 0)  # log axes: the points at 0 cannot be drawn
        ax.plot(fpr[shown], tpr[shown], label=f"{name} (AUROC {aurocs[name]:.3f})")
        lowest = min(lowest, fpr[fpr > 0].min(initial=1.0))
        rows.append(pd.DataFrame({"statistic": name, "false_positive_rate": fpr, "true_positive_rate": tpr}))
    ax.plot([lowest, 1], [lowest, 1], "k--", lw=0.8, label="chance")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    return fig, pd.concat(rows, ignore_index=True)


# Shadow models (LiRA, Carlini et al. 2022; Curvature Clues, Ravikumar et al. 2024): K trainings of the
# run's recipe, each on a random half of the training set; per sample, Gaussians of its statistic over the
# models that trained on it (IN) and those that did not (OUT).


def shadow_masks(n_samples: int, n_models: int, seed: int) -> np.ndarray:
    """(n_models, n_samples) booleans, model k trains on sample i where True. Models come in pairs that
    split the samples between them (model 2j a random half drawn with ``seed``, model 2j + 1 the rest, as
    Curvature Clues builds its masks), so every sample is IN for exactly half of the models. Leaving out
    a target and its :func:`partner` leaves every sample IN and OUT for the same number of shadows:
    otherwise a target's members would have one IN shadow fewer than OUT, its non-members one more, and
    the fits' unequal noise would bias every attack towards calling members non-members."""
    if n_models < 6 or n_models % 2:
        raise ValueError(f"shadow models: {n_models}; expected an even number of at least 6 (a target's shadows, "
                         "all but it and its partner, hold every sample IN for two models or more, and OUT too)")
    rng = np.random.default_rng(seed)
    masks = np.zeros((n_models, n_samples), dtype=bool)
    for pair in range(n_models // 2):
        masks[2 * pair, rng.permutation(n_samples)[: n_samples // 2]] = True
        masks[2 * pair + 1] = ~masks[2 * pair]
    return masks


def partner(model: int) -> int:
    """The model trained on the samples ``model`` left out (:func:`shadow_masks`)."""
    return model ^ 1


def gaussian_fits(statistics: np.ndarray, inside: np.ndarray) -> dict[str, np.ndarray]:
    """Per sample, the mean and standard deviation of its statistic over the models that trained on it
    (``inside``) and those that did not: ``statistics`` and ``inside`` are (models, samples). A sample
    with fewer than two models on a side has no spread of its own there: NaN."""
    statistics = np.asarray(statistics, dtype=np.float64)
    inside = np.asarray(inside, dtype=bool)
    fits = {}
    for side, mask in (("in", inside), ("out", ~inside)):
        count = mask.sum(axis=0)
        values = np.where(mask, statistics, 0.0)
        mean = values.sum(axis=0) / np.maximum(count, 1)
        variance = (np.where(mask, (statistics - mean) ** 2, 0.0)).sum(axis=0) / np.maximum(count - 1, 1)
        fits[f"mean_{side}"] = np.where(count >= 1, mean, np.nan)
        fits[f"std_{side}"] = np.where(count >= 2, np.sqrt(variance), np.nan)
    return fits


def _log_normal_pdf(x, mean, std):
    return -0.5 * ((x - mean) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi)


def _spreads(fits: dict[str, np.ndarray], global_variance: bool) -> tuple[np.ndarray, np.ndarray]:
    std_in, std_out = fits["std_in"], fits["std_out"]
    if global_variance:
        std_in = np.full_like(std_in, np.sqrt(np.nanmean(std_in ** 2)))
        std_out = np.full_like(std_out, np.sqrt(np.nanmean(std_out ** 2)))
    return std_in, std_out


def online_likelihood_ratio(value: np.ndarray, fits: dict[str, np.ndarray], *, global_variance: bool) -> np.ndarray:
    """log N(value; IN) - log N(value; OUT) per sample (higher says member). ``global_variance``: one
    standard deviation per side for every sample (LiRA's choice below 64 shadow models)."""
    std_in, std_out = _spreads(fits, global_variance)
    return _log_normal_pdf(value, fits["mean_in"], std_in) - _log_normal_pdf(value, fits["mean_out"], std_out)


def offline_score(value: np.ndarray, fits: dict[str, np.ndarray], *, global_variance: bool) -> np.ndarray:
    """How far above the OUT models' distribution the value lies, (value - mean_out) / std_out per
    sample: LiRA's one-sided offline test, for a statistic oriented so that members are higher."""
    return (value - fits["mean_out"]) / _spreads(fits, global_variance)[1]


# A small constant under the logarithm of curvature (Curvature Clues' 1e-22): an exactly flat sample
# stays finite.
LOG_EPSILON = 1e-22
# LiRA: below this many shadow models, one spread per side for every sample (pooled over the samples)
# beats each sample's own spread, which too few models estimate poorly. Counted as the audit's models
# (K), as both papers count theirs: K = 64, Curvature Clues' setup, fits each sample's own spreads.
PER_SAMPLE_VARIANCE_FROM = 64
# Attacks whose member score is not calibrated per sample: a global threshold on the loss ranks the
# easy samples first (low loss IN and OUT alike), not the exposed ones, so it gets no exposure ranking.
NOT_PER_SAMPLE = ("loss_threshold",)

# The attacks of the shadow-model audit: name -> (statistic, what it is). Each scores every sample of a
# target model from the other models (its shadows), higher saying member.
SHADOW_ATTACKS = {
    "lira_online": ("logit_confidence", "LiRA online (Carlini et al. 2022): log-likelihood ratio of the "
                    "logit-scaled confidence under IN and OUT Gaussians, mean over queries"),
    "lira_offline": ("logit_confidence", "LiRA offline: how far the logit-scaled confidence lies above the "
                     "OUT Gaussian, in its standard deviations, mean over queries"),
    "curvature_lr": ("log_curvature", "Curvature Clues' LR (Ravikumar et al. 2024): IN over OUT likelihood "
                     "of log curvature, each summed over queries"),
    "curvature_nll": ("log_curvature", "Curvature Clues' NLL: OUT minus IN negative log-likelihood of log "
                      "curvature with the IN spread for both, summed over queries"),
    "curvature_offline": ("log_curvature", "log curvature below the OUT Gaussian, in its standard deviations "
                          "(offline, members flatter), mean over queries"),
    "loss_threshold": ("loss", "the loss at the given label, lower is member, no shadow model (Yeom et al. "
                       "2018)"),
}


def log_curvature(curvature: np.ndarray) -> np.ndarray:
    """Curvature Clues' statistic: log(curvature + :data:`LOG_EPSILON`), in float64."""
    return np.log(np.asarray(curvature, dtype=np.float64) + LOG_EPSILON)


def shadow_attack_scores(statistics: dict[str, np.ndarray], inside: np.ndarray, target: int) -> dict[str, np.ndarray]:
    """Every attack of :data:`SHADOW_ATTACKS` on model ``target``: its member score for every sample.

    ``statistics`` maps "logit_confidence", "log_curvature" and "loss" to arrays (models, queries,
    samples) (the queries: the image, and its flip where the recipe flips); ``inside`` (models, samples)
    says which samples each model trained on (:func:`shadow_masks`). The IN and OUT Gaussians are fitted
    over every model but the target and its partner, per query; their spreads are pooled over the samples below
    :data:`PER_SAMPLE_VARIANCE_FROM` models."""
    inside = np.asarray(inside, dtype=bool)
    shadows = ~np.isin(np.arange(len(inside)), [target, partner(target)])
    global_variance = len(inside) < PER_SAMPLE_VARIANCE_FROM
    scores = {}
    phi = np.asarray(statistics["logit_confidence"], dtype=np.float64)
    online, offline = [], []
    for query in range(phi.shape[1]):
        fits = gaussian_fits(phi[shadows, query], inside[shadows])
        online.append(online_likelihood_ratio(phi[target, query], fits, global_variance=global_variance))
        offline.append(offline_score(phi[target, query], fits, global_variance=global_variance))
    scores["lira_online"], scores["lira_offline"] = np.mean(online, axis=0), np.mean(offline, axis=0)
    curvature = np.asarray(statistics["log_curvature"], dtype=np.float64)
    log_in, log_out, nll, below = [], [], [], []
    for query in range(curvature.shape[1]):
        fits = gaussian_fits(curvature[shadows, query], inside[shadows])
        std_in, std_out = _spreads(fits, global_variance)
        value = curvature[target, query]
        log_in.append(_log_normal_pdf(value, fits["mean_in"], std_in))
        log_out.append(_log_normal_pdf(value, fits["mean_out"], std_out))
        nll.append(((value - fits["mean_out"]) ** 2 - (value - fits["mean_in"]) ** 2) / (2 * std_in ** 2))
        below.append(-(value - fits["mean_out"]) / std_out)
    scores["curvature_lr"] = np.logaddexp.reduce(log_in, axis=0) - np.logaddexp.reduce(log_out, axis=0)
    scores["curvature_nll"] = np.sum(nll, axis=0)
    scores["curvature_offline"] = np.mean(below, axis=0)
    scores["loss_threshold"] = -np.asarray(statistics["loss"], dtype=np.float64)[target, 0]
    return scores


def shadow_audit(statistics: dict[str, np.ndarray], inside: np.ndarray):
    """Every model as the target in turn, all but it and its partner as its shadows. Returns one row per attack and
    target (:func:`attack_metrics` of its members against its non-members, all samples of the training
    set); per attack each sample's mean score over the targets that trained on it (its exposure; not for
    the attacks of :data:`NOT_PER_SAMPLE`); and
    per attack the (member, non-member) scores of all targets pooled (for one ROC over all targets)."""
    inside = np.asarray(inside, dtype=bool)
    rows, exposure, pooled = [], {}, {}
    for target in range(len(inside)):
        scores = shadow_attack_scores(statistics, inside, target)
        members = inside[target]
        for attack, score in scores.items():
            rows.append({"attack": attack, "target": target,
                         **attack_metrics(score[members], score[~members])})
            if attack not in NOT_PER_SAMPLE:
                exposure.setdefault(attack, np.zeros(inside.shape[1]))[members] += score[members]
            pooled.setdefault(attack, ([], []))
            pooled[attack][0].append(score[members])
            pooled[attack][1].append(score[~members])
    counts = inside.sum(axis=0)
    return (pd.DataFrame(rows), {attack: total / counts for attack, total in exposure.items()},
            {attack: (np.concatenate(m), np.concatenate(n)) for attack, (m, n) in pooled.items()})


def over_targets(per_target: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over targets of each attack's metrics, with its statistic and
    description."""
    metrics = ["auroc", "balanced_accuracy", *(f"tpr_at_{_percent(rate)}_fpr" for rate in LOW_FPRS)]
    grouped = per_target.groupby("attack", sort=False)
    table = grouped[metrics].agg(["mean", "std"])
    table.columns = [f"{metric}_{stat}" for metric, stat in table.columns]
    table = table.reset_index()
    table.insert(1, "targets", grouped.size().to_numpy())
    table.insert(1, "statistic", [SHADOW_ATTACKS[a][0] for a in table["attack"]])
    table["members_per_target"] = grouped["members"].mean().to_numpy()
    table["lowest_measurable_fpr"] = grouped["lowest_measurable_fpr"].max().to_numpy()
    table["description"] = [SHADOW_ATTACKS[a][1] for a in table["attack"]]
    return table


def top_overlap(first: np.ndarray, second: np.ndarray, fraction: float) -> float:
    """The share of the top ``fraction`` of samples by ``first`` that are also in the top ``fraction`` by
    ``second`` (both higher first; chance: ``fraction``)."""
    count = max(1, int(round(fraction * len(first))))
    top_first = set(np.argsort(-np.asarray(first), kind="stable")[:count])
    top_second = set(np.argsort(-np.asarray(second), kind="stable")[:count])
    return len(top_first & top_second) / count
