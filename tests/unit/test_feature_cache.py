"""Feature cache: computed once per image, served in the extractor's precision, stored in the chosen one."""

import pytest
import torch

from anomalib_grad.models.grad.components.feature_cache import FeatureCache


def extractor(calls: list[int]):
    generator = torch.Generator().manual_seed(0)
    table = torch.randn(4, 3, 5, 5, generator=generator) * 40  # one feature map per image index

    def extract(images: torch.Tensor) -> torch.Tensor:
        calls.append(len(images))
        return table[images[:, 0, 0, 0].long()]

    return table, extract


def images_of(indices: list[int]) -> torch.Tensor:
    return torch.tensor(indices, dtype=torch.float32).reshape(-1, 1, 1, 1).expand(-1, 3, 2, 2)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_features_are_computed_once_and_served_as_stored(dtype):
    calls: list[int] = []
    table, extract = extractor(calls)
    cache = FeatureCache(dtype=dtype)
    first = cache.get_or_compute(["a", "b"], images_of([0, 1]), extract)
    second = cache.get_or_compute(["b", "a"], images_of([1, 0]), extract)
    assert calls == [2]
    # the oracle: torch's own rounding of the extractor's output to the cache's precision
    expected = table[[0, 1]].to(getattr(torch, dtype)).float()
    assert first.dtype == second.dtype == torch.float32
    assert torch.equal(first, expected) and torch.equal(second, expected.flip(0))
    assert cache.nbytes == 2 * 3 * 5 * 5 * (4 if dtype == "float32" else 2)
    if dtype == "float16":
        assert not torch.equal(first, table[[0, 1]])  # rounded, within half precision's relative step
        torch.testing.assert_close(first, table[[0, 1]], rtol=2**-11, atol=0)


def test_a_batch_with_an_unseen_image_is_recomputed_and_stored():
    calls: list[int] = []
    _, extract = extractor(calls)
    cache = FeatureCache()
    cache.get_or_compute(["a"], images_of([0]), extract)
    cache.get_or_compute(["a", "c"], images_of([0, 2]), extract)
    assert calls == [1, 2] and len(cache) == 2
    cache.clear()
    assert len(cache) == 0 and cache.nbytes == 0


def test_disabled_or_unkeyed_batches_are_never_cached():
    calls: list[int] = []
    _, extract = extractor(calls)
    for cache, paths in ((FeatureCache(enabled=False), ["a"]), (FeatureCache(), None)):
        cache.get_or_compute(paths, images_of([0]), extract)
        cache.get_or_compute(paths, images_of([0]), extract)
        assert len(cache) == 0
    assert calls == [1, 1, 1, 1]


def test_unknown_precision_is_refused_with_the_valid_ones():
    with pytest.raises(ValueError, match=r"cache_dtype='bfloat16'.*\['float16', 'float32'\]"):
        FeatureCache(dtype="bfloat16")
