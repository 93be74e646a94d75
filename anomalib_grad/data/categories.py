"""Resolve datamodule classes and category lists for multi-category training.

:func:`resolve_datamodule_class` turns a class path (``"anomalib.data.MVTecAD"``), a bare
anomalib or anomalib-grad name (``"MVTecAD"``, ``"MVTecLayout"``) or a class into an
:class:`~anomalib.data.AnomalibDataModule` subclass. :func:`known_categories` finds the
categories a datamodule class knows about (its ``CATEGORIES`` attribute, or the
``CATEGORIES`` tuple of the anomalib dataset module it belongs to). :func:`resolve_categories`
expands ``"all"`` and checks every name, listing the valid ones when a name is unknown.

Example:
    >>> from anomalib_grad.data.categories import resolve_categories, resolve_datamodule_class
    >>> datamodule_class = resolve_datamodule_class("MVTecAD")
    >>> resolve_categories(datamodule_class, ["bottle", "cable"], root=None)
    ['bottle', 'cable']
"""

import importlib
import inspect
import sys
from collections.abc import Sequence
from pathlib import Path

from anomalib.data import AnomalibDataModule

from .validation import list_subfolders

CATEGORY_PLACEHOLDER = "{category}"


class UnknownCategoryError(ValueError):
    """Raised when a requested category is not one of the datamodule's categories.

    Example:
        >>> raise UnknownCategoryError("Unknown category 'botle'.")
        Traceback (most recent call last):
        ...
        anomalib_grad.data.categories.UnknownCategoryError: Unknown category 'botle'.
    """


def resolve_datamodule_class(datamodule: str | type[AnomalibDataModule]) -> type[AnomalibDataModule]:
    """Return the datamodule class named by ``datamodule``.

    Args:
        datamodule (str | type[AnomalibDataModule]): A class, a dotted class path, or a bare class
            name exported by :mod:`anomalib.data` or :mod:`anomalib_grad.data`.

    Returns:
        type[AnomalibDataModule]: The class.

    Raises:
        ValueError: If the name cannot be imported or is not an image datamodule class.

    Example:
        >>> resolve_datamodule_class("anomalib_grad.data.MVTecLayout").__name__
        'MVTecLayout'
    """
    if isinstance(datamodule, str):
        module_name, _, class_name = datamodule.rpartition(".")
        candidates = [module_name] if module_name else ["anomalib_grad.data", "anomalib.data"]
        resolved = None
        for candidate in candidates:
            try:
                resolved = getattr(importlib.import_module(candidate), class_name, None)
            except ImportError:
                resolved = None
            if resolved is not None:
                break
        if resolved is None:
            msg = (
                f"Cannot find the datamodule class '{datamodule}'. Give a class path such as "
                "'anomalib.data.MVTecAD' or 'anomalib_grad.data.MVTecLayout', or a class name exported by "
                "anomalib.data or anomalib_grad.data."
            )
            raise ValueError(msg)
        datamodule = resolved
    if not (inspect.isclass(datamodule) and issubclass(datamodule, AnomalibDataModule)):
        msg = f"Expected an anomalib datamodule class (AnomalibDataModule subclass), got {datamodule!r}."
        raise ValueError(msg)
    return datamodule


def known_categories(datamodule_class: type[AnomalibDataModule]) -> tuple[str, ...] | None:
    """Return the fixed category list of a datamodule class, or ``None`` when it has none.

    A ``CATEGORIES`` attribute defined on the class itself wins (``None`` there means "whatever
    folders the root holds", as for :class:`~anomalib_grad.data.MVTecLayout`); otherwise the
    ``CATEGORIES`` tuple of the class's own module or of the matching
    ``anomalib.data.datasets.image`` module is used (MVTecAD, VisA, MPDD, ...).

    Args:
        datamodule_class (type[AnomalibDataModule]): The datamodule class.

    Returns:
        tuple[str, ...] | None: The categories, or ``None``.

    Example:
        >>> from anomalib.data import Visa
        >>> known_categories(Visa)[:2]
        ('candle', 'capsules')
    """
    if "CATEGORIES" in vars(datamodule_class):
        categories = vars(datamodule_class)["CATEGORIES"]
        return None if categories is None else tuple(categories)
    module_name = datamodule_class.__module__
    module_names = [module_name]
    if module_name.startswith("anomalib.data.datamodules.image."):
        module_names.append(module_name.replace(".datamodules.", ".datasets.", 1))
    for name in module_names:
        module = sys.modules.get(name) or importlib.import_module(name)
        categories = getattr(module, "CATEGORIES", None)
        if categories:
            return tuple(categories)
    return None


def category_parent(root: str | Path) -> Path:
    """Return the folder whose sub-folders are the categories, for a root that may hold ``{category}``.

    Args:
        root (str | Path): Dataset root, e.g. ``./datasets`` or ``./datasets/{category}/images``.

    Returns:
        Path: ``root`` itself, or the part before the ``{category}`` placeholder.

    Example:
        >>> category_parent("./data/{category}/train")
        PosixPath('data')
    """
    text = str(root)
    if CATEGORY_PLACEHOLDER in text:
        text = text.split(CATEGORY_PLACEHOLDER, 1)[0] or "."
    return Path(text).expanduser()


def resolve_categories(
    datamodule_class: type[AnomalibDataModule],
    categories: str | Sequence[str],
    root: str | Path | None,
) -> list[str]:
    """Expand ``"all"`` and check the requested categories.

    Args:
        datamodule_class (type[AnomalibDataModule]): The datamodule class.
        categories (str | Sequence[str]): ``"all"``, one category name or a list of names.
        root (str | Path | None): The dataset root, to list categories when the class has no fixed list.

    Returns:
        list[str]: The category names, in the given order (sorted for ``"all"``), without duplicates.

    Raises:
        UnknownCategoryError: If a name is not a valid category; the message lists the valid ones.
        ValueError: If no category is given, or ``"all"`` is asked for without a fixed list or a root.

    Example:
        >>> from anomalib.data import MVTecAD
        >>> len(resolve_categories(MVTecAD, "all", root=None))
        15
    """
    valid = known_categories(datamodule_class)
    source = f"{datamodule_class.__name__}'s categories"
    if valid is None and root is not None:
        parent = category_parent(root)
        valid = tuple(path.name for path in list_subfolders(parent))
        source = f"the sub-folders of '{parent}'"
    requested = [categories] if isinstance(categories, str) else list(categories)
    if requested == ["all"]:
        if not valid:
            msg = (
                f"categories='all' needs a category list: {datamodule_class.__name__} has none and "
                f"{'no root was given' if root is None else f'{source} are none'}. List the categories explicitly."
            )
            raise ValueError(msg)
        return sorted(valid)
    if not requested:
        msg = "Give at least one category, or 'all'."
        raise ValueError(msg)
    if valid is not None:
        unknown = [name for name in requested if name not in valid]
        if unknown:
            msg = f"Unknown categor{'y' if len(unknown) == 1 else 'ies'} {unknown}. Valid ({source}): {sorted(valid)}."
            raise UnknownCategoryError(msg)
    return list(dict.fromkeys(requested))
