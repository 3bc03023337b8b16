"""Steps of rules/data.smk: the dataset, split once, and the labels of each run."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from .. import io

log = logging.getLogger(__name__)


def prepare(dataset: str, output: str, **options) -> None:
    """Load ``dataset`` (options: see :func:`memorization_curvature.data.prepare`) into one file.

    Image folders are decoded into scratch files beside ``output`` and streamed from there into it, so
    that a dataset larger than memory (ImageNet) never has to fit.
    """
    import tempfile

    from .. import data

    Path(output).parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".prepare-", dir=Path(output).parent) as scratch:
        prepared = data.prepare(dataset, scratch=scratch, **options)
        io.save_npz(output, **prepared.to_arrays())
    log.info("%s: %d training and %d test images of shape %s, %d classes", dataset,
             len(prepared.train_labels), len(prepared.test_labels), prepared.image_shape, prepared.num_classes)


def corrupt(data_path: str, output: str, *, rate: float, seed: int) -> None:
    from .. import corruption, data

    prepared = data.load_prepared(data_path)
    given, corrupted = corruption.corrupt_labels(prepared.train_labels, prepared.num_classes, rate, seed)
    table = pd.DataFrame({
        "index": np.arange(len(given)),
        "given_label": given,
        "true_label": prepared.train_labels,
        "corrupted": corrupted,
    })
    io.save_csv(output, table)
    log.info("corrupted %d of %d labels (rate %g, seed %d)", corrupted.sum(), len(given), rate, seed)


def inject_duplicates(data_path: str, output_data: str, output_labels: str, *, copies: int, seed: int) -> None:
    """A run's own training images with ``copies`` images replaced by relabelled copies of others."""
    import dataclasses
    import tempfile

    from .. import corruption, data

    prepared = data.load_prepared(data_path)
    Path(output_data).parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".inject-", dir=Path(output_data).parent) as scratch:
        # the new images go to a scratch file and stream from there into the output: never all in memory
        out = data.new_image_array(prepared.train_images.shape, scratch, "train")
        images, given, true, injected = corruption.inject_duplicates(
            prepared.train_images, prepared.train_labels, prepared.num_classes, copies, seed, out=out)
        io.save_npz(output_data, **dataclasses.replace(prepared, train_images=images).to_arrays())
    io.save_csv(output_labels, pd.DataFrame({"index": np.arange(len(given)), "given_label": given,
                                             "true_label": true, "corrupted": injected}))
    log.info("replaced %d of %d training images by copies of others with a conflicting label (seed %d)",
             copies, len(given), seed)
