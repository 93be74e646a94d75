"""An anomalib dataset over a ready-made samples table.

:class:`SamplesDataset` holds any samples :class:`~pandas.DataFrame` with the columns anomalib
reads (``image_path``, ``split``, ``label_index``, ``mask_path``) and derives the task from it:
``segmentation`` when every anomalous row has a mask, else ``classification``. Extra columns,
such as ``category``, travel with the samples through anomalib's splits and subsets.

Example:
    >>> import pandas as pd
    >>> samples = pd.DataFrame(
    ...     {"image_path": ["a.png"], "split": ["train"], "label_index": [0], "mask_path": [None]}
    ... )
    >>> dataset = SamplesDataset(samples)  # doctest: +SKIP
    >>> dataset.task  # doctest: +SKIP
    <TaskType.CLASSIFICATION: 'classification'>
"""

import pandas as pd
from anomalib.data.datasets.base import AnomalibDataset
from anomalib.data.utils import LabelName
from torchvision.transforms.v2 import Transform


def infer_task(samples: pd.DataFrame) -> str:
    """Return ``"segmentation"`` if there are anomalous rows and all have a mask, else ``"classification"``.

    Args:
        samples (pd.DataFrame): Samples with ``label_index`` and, optionally, ``mask_path``.

    Returns:
        str: The anomalib task name.

    Example:
        >>> infer_task(pd.DataFrame({"label_index": [1], "mask_path": ["m.png"]}))
        'segmentation'
    """
    anomalous = samples["label_index"] == LabelName.ABNORMAL
    if not anomalous.any() or "mask_path" not in samples:
        return "classification"
    masks = samples.loc[anomalous, "mask_path"]
    has_mask = masks.notna() & (masks.astype(str) != "")
    return "segmentation" if bool(has_mask.all()) else "classification"


class SamplesDataset(AnomalibDataset):
    """Anomalib dataset over a given samples table.

    Args:
        samples (pd.DataFrame): One row per image; needs ``image_path``, ``split`` and
            ``label_index``; ``mask_path`` is added (all ``None``) when missing.
        augmentations (Transform | None): Augmentations applied to image (and mask). Defaults to ``None``.
        name (str): Name of the dataset, used by anomalib in paths and logs. Defaults to ``"Samples"``.
        task (str | None): ``"segmentation"`` or ``"classification"``; ``None`` infers it from ``samples``
            with :func:`infer_task`. Give it for a split without anomalies (e.g. training images) of a
            segmentation dataset, so its items still carry (empty) masks. Defaults to ``None``.

    Example:
        >>> dataset = SamplesDataset(samples, name="MultiCategory")  # doctest: +SKIP
        >>> len(dataset)  # doctest: +SKIP
        1
    """

    def __init__(
        self,
        samples: pd.DataFrame,
        augmentations: Transform | None = None,
        name: str = "Samples",
        task: str | None = None,
    ) -> None:
        super().__init__(augmentations=augmentations)
        self._name = name
        samples = samples.reset_index(drop=True)
        if "mask_path" not in samples:
            samples["mask_path"] = pd.Series([None] * len(samples), dtype=object)
        # Keep None (not NaN) for missing masks: anomalib's dataset reads None as "no mask".
        samples["mask_path"] = samples["mask_path"].astype(object).where(samples["mask_path"].notna(), None)
        samples["label_index"] = samples["label_index"].astype(int)
        samples.attrs["task"] = task or infer_task(samples)
        self.samples = samples

    @property
    def name(self) -> str:
        """Name of the dataset."""
        return self._name
