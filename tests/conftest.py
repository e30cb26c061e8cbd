import pytest

from strom.storage.files import DiskMedium, MemoryMedium


@pytest.fixture(params=["disk", "memory"])
def medium_factory(request, tmp_path):
    """A factory of fresh media, one per backend: the same contract tests
    run over real files and over the in-memory backend."""
    counter = iter(range(10**6))

    def make():
        if request.param == "disk":
            return DiskMedium(str(tmp_path / f"m{next(counter)}"))
        return MemoryMedium()

    make.kind = request.param
    return make
