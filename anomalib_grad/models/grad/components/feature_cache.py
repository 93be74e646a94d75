"""Cache of frozen-backbone features of training images.

GRAD's backbone is frozen and its training images are not augmented, so the
features of an image are the same in every epoch. Computing them once saves
the backbone pass (most of the cost on a CPU) in every later epoch.

Example:
    >>> import torch
    >>> from anomalib_grad.models.grad.components.feature_cache import FeatureCache
    >>> cache = FeatureCache()
    >>> calls = []
    >>> def extract(images):
    ...     calls.append(len(images))
    ...     return images * 2
    >>> first = cache.get_or_compute(["a.png", "b.png"], torch.ones(2, 1), extract)
    >>> second = cache.get_or_compute(["b.png", "a.png"], torch.ones(2, 1), extract)
    >>> calls
    [2]
"""

from collections.abc import Callable, Sequence

import torch


class FeatureCache:
    """Features keyed by image path.

    Args:
        enabled: Whether to cache at all. Defaults to ``True``.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._features: dict[str, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self._features)

    def clear(self) -> None:
        """Drop every cached feature map."""
        self._features.clear()

    def get_or_compute(
        self,
        image_paths: Sequence[str] | None,
        images: torch.Tensor,
        extract: Callable[[torch.Tensor], torch.Tensor],
    ) -> torch.Tensor:
        """Return cached features of a batch, computing them for the whole batch on a miss.

        Args:
            image_paths: One path per image, or ``None`` (no caching).
            images: The batch's images.
            extract: Feature function, called on ``images`` when needed.

        Returns:
            Features of the batch, in batch order.
        """
        if not self.enabled or image_paths is None:
            return extract(images)
        if all(path in self._features for path in image_paths):
            return torch.stack([self._features[path] for path in image_paths])
        features = extract(images)
        self._features.update(zip(image_paths, features.detach(), strict=True))
        return features
