"""memorization_curvature: find memorized, mislabeled and conflicting training samples by the
curvature of the loss around each sample (Garg, Ravikumar & Roy, ICML 2024).

The public entry point for scoring any classifier is :func:`curvature_scores`.
"""

__all__ = ["curvature_scores"]
__version__ = "0.1.0"


def __getattr__(name):
    # Imported lazily so that the Snakefile's config check does not pay for importing torch.
    if name == "curvature_scores":
        from .curvature import curvature_scores

        return curvature_scores
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
