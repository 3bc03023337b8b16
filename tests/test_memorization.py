import numpy as np
import pandas as pd
import pytest

from memorization_curvature import memorization
from memorization_curvature.duplicates import top_k_fraction


def test_agreement_values():
    mem = np.array([0.9, 0.1, 0.5, 0.0])
    assert memorization.agreement(2 * mem, mem, top_k=2)["cosine_all"] == pytest.approx(1.0)
    result = memorization.agreement(np.array([1.0, 0.0, 0.0, 1.0]), mem, top_k=2)
    assert result["cosine_all"] == pytest.approx(0.9 / (np.sqrt(2) * np.linalg.norm(mem)))
    assert result["cosine_top2"] == pytest.approx(0.9 / np.sqrt(0.81 + 0.25))  # samples 0 and 2
    assert result["pearson_all"] == pytest.approx(np.corrcoef([1, 0, 0, 1], mem)[0, 1])


def test_score_file_of_another_dataset_is_refused():
    labels = np.array([0, 1, 2, 1])
    with pytest.raises(memorization.ScoreFileMismatch, match="3 memorization scores .* 4 images"):
        memorization.check_score_file(np.zeros(3), labels[:3], labels, "fz.npz")
    with pytest.raises(memorization.ScoreFileMismatch, match="1 of 4 images .* index 2"):
        memorization.check_score_file(np.zeros(4), np.array([0, 1, 5, 1]), labels, "fz.npz")
    memorization.check_score_file(np.zeros(4), labels, labels, "fz.npz")
    # a replaced image carries its source's label: its label is not checked when left out
    compared = np.array([True, True, False, True])
    memorization.check_score_file(np.zeros(4), np.array([0, 1, 5, 1]), labels, "fz.npz", compared)
    with pytest.raises(memorization.ScoreFileMismatch, match="index 3"):
        memorization.check_score_file(np.zeros(4), np.array([0, 1, 5, 0]), labels, "fz.npz", compared)


def test_fraction_of_top_curvature_samples_in_pairs():
    pairs = pd.DataFrame({"i": [0, 5], "j": [3, 6]})
    ranks = np.array([1, 2, 3, 4, 5, 6, 7])  # sample k has rank k + 1
    assert top_k_fraction(pairs, ranks, 2) == 0.5  # samples 0 and 1: 0 is in a pair
    assert top_k_fraction(pairs, ranks, 7) == pytest.approx(4 / 7)
