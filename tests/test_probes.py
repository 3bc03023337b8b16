"""The counter-based Rademacher probes: exact +-1, the specified integer function, good statistics,
and independent of how they are asked for (batch, order, chunk of probes)."""

import math

import pytest
import torch

from memorization_curvature.curvature import probe_keys, probes_from_keys, rademacher_probes

M32 = 0xFFFFFFFF


def mix32(x: int) -> int:
    """The hash in plain Python integers (unbounded, reduced mod 2**32): the specification."""
    x ^= x >> 16
    x = (x * 0x7FEB352D) & M32
    x ^= x >> 15
    x = (x * 0x846CA68B) & M32
    return x ^ (x >> 16)


def reference_entry(seed: int, sample_id: int, probe: int, j: int) -> int:
    key = mix32(((sample_id >> 32) & M32) ^ 0x243F6A88)
    key = mix32(key ^ (sample_id & M32))
    key = mix32(key ^ (seed & M32))
    key = mix32(key ^ (seed >> 32))
    key = mix32(key ^ probe)
    key_a, key_b = key, mix32(key ^ 0x85A308D3)
    word = mix32(mix32((j // 32) ^ key_a) ^ key_b)
    return 1 if (word >> (j % 32)) & 1 else -1


def test_tensor_code_computes_the_integer_function_exactly():
    # large ids and seeds exercise every word of the 64-bit inputs and the products near 2**64
    seeds, ids = [0, 7, 2**40 + 12345, 2**64 - 1], torch.tensor([0, 1, 99_999, 2**33 + 5, 2**62 + 3])
    for seed in seeds:
        probes = rademacher_probes(ids, 3, (2, 5, 7), seed).flatten(2)  # 70 entries: 3 words, last partial
        for i, sample_id in enumerate(ids.tolist()):
            for k in range(3):
                expected = [reference_entry(seed, sample_id, k, j) for j in range(70)]
                assert probes[i, k].tolist() == expected, (seed, sample_id, k)


def test_entries_are_exactly_plus_or_minus_one_in_any_dtype():
    for dtype in (torch.float32, torch.float64):
        probes = rademacher_probes(torch.arange(16), 4, (3, 8, 8), seed=1, dtype=dtype)
        assert probes.dtype == dtype and probes.shape == (16, 4, 3, 8, 8)
        assert set(probes.unique().tolist()) == {-1.0, 1.0}


def test_a_samples_probes_do_not_depend_on_batch_order_or_chunking():
    ids = torch.tensor([5, 17, 3, 1000, 42])
    whole = rademacher_probes(ids, 10, (1, 6, 6), seed=3)
    # one sample alone, in another order, in chunks of probes
    assert torch.equal(rademacher_probes(ids[3:4], 10, (1, 6, 6), seed=3), whole[3:4])
    perm = torch.tensor([4, 2, 0, 1, 3])
    assert torch.equal(rademacher_probes(ids[perm], 10, (1, 6, 6), seed=3), whole[perm])
    chunks = [rademacher_probes(ids, 3, (1, 6, 6), seed=3, first=k) for k in (0, 3, 6)]
    chunks.append(rademacher_probes(ids, 1, (1, 6, 6), seed=3, first=9))
    assert torch.equal(torch.cat(chunks, 1), whole)
    keys = probe_keys(ids, 10, seed=3)
    assert torch.equal(probes_from_keys(keys[:, 4:7], (1, 6, 6)), whole[:, 4:7])
    assert not torch.equal(rademacher_probes(ids, 10, (1, 6, 6), seed=4), whole)


def bound(samples: int, sigmas: float = 6.0) -> float:
    """``sigmas`` standard errors of a mean (or correlation) of ``samples`` independent +-1 products."""
    return sigmas / math.sqrt(samples)


def test_statistics_mean_and_correlations_across_elements_probes_samples():
    samples, n, shape = 200, 10, (3, 16, 16)  # 768 entries per probe: 24 hash words
    probes = rademacher_probes(torch.arange(samples), n, shape, seed=0, dtype=torch.float64).flatten(2)
    rows = probes.reshape(samples * n, -1)  # 2000 probe vectors of 768 entries
    m, d = rows.shape
    # the mean, overall and at each position, and at each bit position within a hash word
    assert abs(float(rows.mean())) < bound(m * d)
    assert float(rows.mean(0).abs().max()) < bound(m)
    bit_means = rows.reshape(m, d // 32, 32).mean((0, 1))
    assert float(bit_means.abs().max()) < bound(m * d // 32)
    # across elements: every pair of the first 128 positions (bits of the same word, of neighbouring
    # words, and the same bit of consecutive words), correlated over the 2000 probe vectors
    corr = (rows[:, :128].T @ rows[:, :128]) / m
    off_diagonal = corr[~torch.eye(128, dtype=torch.bool)]
    assert float(off_diagonal.abs().max()) < bound(m)
    # across probes of one sample, and across samples with neighbouring ids (same probe number)
    per_sample = probes @ probes.transpose(1, 2) / d  # (samples, n, n)
    between_probes = per_sample[:, ~torch.eye(n, dtype=torch.bool)]
    assert float(between_probes.abs().max()) < bound(d)
    assert abs(float(between_probes.mean())) < bound(d * samples * n * (n - 1) / 2, 5)
    neighbours = (probes[1:] * probes[:-1]).mean(-1)  # (samples - 1, n)
    assert float(neighbours.abs().max()) < bound(d)
    # across seeds: the same sample and probe number under seeds 0 and 1
    other = rademacher_probes(torch.arange(samples), n, shape, seed=1, dtype=torch.float64).flatten(2)
    assert float((probes * other).mean(-1).abs().max()) < bound(d)


@pytest.mark.parametrize("seed", [-1, 2**64])
def test_seed_out_of_range_is_refused(seed):
    with pytest.raises(ValueError, match="seed must be in"):
        rademacher_probes(torch.arange(2), 1, (4,), seed)
