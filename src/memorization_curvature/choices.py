"""The allowed values of each concept, listed once: the config schema takes its enums from here
(``x-choices: NAME`` in schemas/config.schema.yaml) and the code checks its arguments against them.

Plain tuples, no imports: the Snakefile's config check reads them without loading torch. A job only
checks a value against them and stops if it is not there, never computes with them: outside the code
digests (a new value reruns nothing; the code that acts on it is in its own module).
"""

DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10", "cifar100", "imagefolder")
MODELS = ("small_cnn", "resnet18_cifar", "resnet18")
CURVATURE_FORMS = ("paper", "official")  # mean squared norm (the paper's equation) / mean norm (its code)
CURVATURE_METHODS = ("finite_difference", "hvp")
# float32: the finite difference as a subtraction; bf16: by difference propagation, linear ops in bf16
CURVATURE_PRECISIONS = ("float32", "bf16")
HISTORY_METHODS = (
    "csl", "final_loss", "in_confidence", "learning_time", "forgetting_events", "aum", "el2n",
    "datamap_confidence", "datamap_variability",
)
PLACEMENTS = ("auto", "device", "stream")
# Where the peer methods' per-epoch statistics come from: an evaluation pass over the training set after
# each epoch, or the logits the training steps compute anyway
TRAINING_STATISTICS = ("eval_pass", "training_pass")
# What a cleaning does to the top of a ranking: drop those samples, or give them the suggested label
CLEANING_ACTIONS = ("remove", "relabel")
