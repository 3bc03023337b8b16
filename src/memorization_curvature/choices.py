"""The allowed values of each concept, listed once: the config schema takes its enums from here
(``x-choices: NAME`` in schemas/config.schema.yaml) and the code checks its arguments against them.

Plain tuples, no imports: the Snakefile's config check reads them without loading torch.
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
# What a cleaning does to the top of a ranking: drop those samples, or give them the suggested label
CLEANING_ACTIONS = ("remove", "relabel")

# The files each torchvision dataset needs under data.root, in torchvision's layout.
DATA_FILES = {
    "mnist": tuple(f"MNIST/raw/{p}-{k}-ubyte" for p in ("train", "t10k") for k in ("images-idx3", "labels-idx1")),
    "fashion_mnist": tuple(f"FashionMNIST/raw/{p}-{k}-ubyte" for p in ("train", "t10k")
                           for k in ("images-idx3", "labels-idx1")),
    "cifar10": tuple(f"cifar-10-batches-py/{f}" for f in
                     ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch",
                      "batches.meta")),
    "cifar100": tuple(f"cifar-100-python/{f}" for f in ("train", "test", "meta")),
}
