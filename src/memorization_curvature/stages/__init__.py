"""The rule-facing layer: one module per rule file (``rules/X.smk`` runs ``stages/X.py``), one
function per step. A step reads its input files, calls the concern modules of the package (data,
corruption, models, training, curvature, metrics, figures, ...), and writes its outputs; the scripts
under ``scripts/`` only unpack Snakemake's object and call it.

A step imports what it needs inside its function (torch and the modules built on it too): a light
step starts without torch, and a rule's code digest (:mod:`..provenance`) holds only the code its job
runs. Nothing is imported here.
"""
