import numpy as np
import pandas as pd
import pytest

from memorization_curvature.metrics import average_over_epochs, detection_metrics, summarize_runs


def test_auroc_of_perfect_reversed_and_tied_rankings():
    corrupted = np.array([0, 0, 0, 1, 1], dtype=bool)
    assert detection_metrics(corrupted, np.array([1, 2, 3, 4, 5.0]))["auroc"] == 1.0
    assert detection_metrics(corrupted, np.array([5, 4, 3, 2, 1.0]))["auroc"] == 0.0
    assert detection_metrics(corrupted, np.ones(5))["auroc"] == 0.5


def test_undefined_without_corrupted_samples_and_refuses_nan():
    assert detection_metrics(np.zeros(4, dtype=bool), np.arange(4.0)) == {"auroc": None, "average_precision": None}
    with pytest.raises(ValueError, match="NaN"):
        detection_metrics(np.array([0, 1], dtype=bool), np.array([np.nan, 1.0]))


def test_average_over_epochs_is_the_mean_and_ranks_from_the_top():
    labels = pd.DataFrame({"index": [0, 1, 2], "given_label": [1, 2, 0], "true_label": [1, 0, 0],
                           "corrupted": [False, True, False]})
    table = average_over_epochs(labels, {3: np.array([1.0, 6.0, 2.0]), 1: np.array([3.0, 2.0, 0.0])})
    assert table["curvature"].tolist() == [2.0, 4.0, 1.0]
    assert table["rank"].tolist() == [2, 1, 3]
    with pytest.raises(ValueError, match="2 samples"):
        average_over_epochs(labels, {1: np.array([1.0, 2.0])})


def test_summary_has_one_sorted_row_per_run():
    runs = [
        {"dataset": "digits", "variant": "noise0.2", "noise_rate": 0.2, "seed": 0, "auroc": 0.9, "epochs_scored": [1, 2]},
        {"dataset": "digits", "variant": "noise0.1", "noise_rate": 0.1, "seed": 1, "auroc": None, "epochs_scored": [2]},
    ]
    table = summarize_runs(runs)
    assert table["noise_rate"].tolist() == [0.1, 0.2]
    assert np.isnan(table["auroc"][0]) and table["auroc"][1] == 0.9
    assert table["epochs_scored"].tolist() == [1, 2]


def test_methods_table_has_a_column_per_variant():
    from memorization_curvature.figures import methods_table

    results = pd.DataFrame({"dataset": "cifar10", "method": ["curvature", "csl"] * 3,
                            "variant": ["dup250", "dup250", "noise0.1", "noise0.1", "noise0.02", "noise0.02"],
                            "seed": 1, "auroc": [0.95, 0.98, 0.97, 0.99, 0.96, 0.985]})
    numbers, markdown = methods_table(results)
    assert markdown.splitlines()[0] == "| dataset | method | 2 % noise | 10 % noise | 250 duplicates |"
    assert "| cifar10 | csl | 0.9850 | 0.9900 | 0.9800 |" in markdown
    assert len(numbers) == 6


def test_auroc_table_in_the_papers_layout():
    from memorization_curvature.figures import auroc_by_noise, auroc_markdown

    runs = pd.DataFrame({"dataset": ["cifar10"] * 3 + ["digits"], "noise_rate": [0.01, 0.01, 0.1, 0.1],
                         "seed": [1, 2, 1, 0], "auroc": [0.96, 0.98, 0.99, 0.995]})
    _, numbers = auroc_by_noise(runs)
    markdown = auroc_markdown(numbers)
    assert markdown.splitlines()[0] == "| dataset | 1 % | 10 % |"
    assert "| cifar10 | 0.9700 +- 0.0141 (2) | 0.9900 (1) |" in markdown
    assert "| digits |  | 0.9950 (1) |" in markdown
