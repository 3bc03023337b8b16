import os

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _declared_only_cache(tmp_path_factory):
    # every snakemake a test starts works out what tests/declared_only.py blocks once per session (0.7 s
    # each time otherwise); the folder above the workers' own is the session's, shared by all of them
    from workflow_helpers import session_folder

    folder = session_folder(tmp_path_factory) / "declared_only"
    folder.mkdir(exist_ok=True)
    previous = os.environ.get("DECLARED_ONLY_CACHE")
    os.environ["DECLARED_ONLY_CACHE"] = str(folder)
    yield
    if previous is None:
        os.environ.pop("DECLARED_ONLY_CACHE")
    else:
        os.environ["DECLARED_ONLY_CACHE"] = previous


@pytest.fixture(autouse=True, scope="session")
def _single_thread():
    # Tests compare floats across batch sizes; one thread keeps CPU kernels' summation order fixed. For
    # the whole session, so that networks trained in module fixtures do too, and no worker's threads
    # spin waiting for a core another worker holds.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# Test files by how long they take (longest first; tests/test_slurm.py mostly waits for SLURM): each
# file runs on one worker (--dist loadfile), and starting the longest first keeps the end of the run
# from waiting on one of them. The first file to ask for a shared workflow (workflow_helpers) builds it
# and the others wait: they come after files of their own. Files not listed follow in their usual order.
LONGEST_FIRST = ["test_slurm.py", "test_reruns.py", "test_workflow_score_ahead.py", "test_workflow_datasets.py",
                 "test_difference.py", "test_workflow_precision.py", "test_workflow.py", "test_resume.py",
                 "test_workflow_gpu_slots.py", "test_baseline_training.py", "test_paper_configs.py",
                 "test_time_limit.py", "test_workflow_duplicates.py"]


def pytest_collection_modifyitems(items):
    rank = {name: k for k, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def pytest_xdist_auto_num_workers(config):
    """`-n auto`: a worker per core and one more, as tests/test_slurm.py mostly waits for SLURM (a
    training requeued through three time limits): the extra worker keeps the cores busy meanwhile."""
    return (os.cpu_count() or 1) + 1
