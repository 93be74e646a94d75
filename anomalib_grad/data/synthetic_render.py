"""Rendering of the built-in synthetic dataset: textured surfaces with alpha-blended defects.

All images share one texture family (fine oriented streaks, mottling, grain, a mild
illumination gradient, a metallic tint) and vary in streak angle, brightness, contrast
and lighting. Defects are alpha-blended into the surface; the mask is ``alpha >= 0.5``
and pixels more than one pixel away from it equal the defect-free render exactly.
:mod:`anomalib_grad.data.synthetic` writes the rendered samples to disk.

Example:
    >>> sample = render_sample(seed=0, split="test", label="spot", index=0, image_size=64)
    >>> bool((sample.image[sample.mask == 0] == sample.clean[sample.mask == 0]).mean() > 0.9)
    True
"""

import functools
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

DEFECT_TYPES = ("scratch", "spot", "crack")

_SUPERSAMPLING = 4
_TINT = np.array([1.0, 0.985, 0.955])
_SPOT_COLOURS = np.array([[0.55, 0.30, 0.14], [0.16, 0.14, 0.13], [0.30, 0.36, 0.24], [0.86, 0.84, 0.78]])


@dataclass(frozen=True)
class SyntheticSample:
    """One rendered sample of the synthetic dataset.

    Attributes:
        image (np.ndarray): ``uint8`` RGB image of shape ``(H, W, 3)``.
        clean (np.ndarray): ``uint8`` RGB render of the same surface without the defect.
        mask (np.ndarray | None): ``uint8`` mask of shape ``(H, W)`` with values 0 and 255,
            ``None`` for defect-free samples.
    """

    image: np.ndarray
    clean: np.ndarray
    mask: np.ndarray | None


def _sample_rng(seed: int, split: str, label: str, index: int, stream: int) -> np.random.Generator:
    """Return an independent generator for one stream (0 texture, 1 defect) of one sample."""
    group = zlib.crc32(f"{split}/{label}".encode())
    return np.random.default_rng([seed, group, index, stream])


@functools.lru_cache(maxsize=4)
def _frequency_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the horizontal and vertical frequencies of a real 2-D FFT of a square image."""
    return np.meshgrid(np.fft.rfftfreq(size), np.fft.fftfreq(size), indexing="xy")


@functools.lru_cache(maxsize=4)
def _isotropic_filter(size: int, bandwidth: float) -> np.ndarray:
    """Return a Gaussian low-pass filter on the real-FFT grid with ``bandwidth`` in cycles per pixel."""
    freq_x, freq_y = _frequency_grid(size)
    return np.exp(-(freq_x**2 + freq_y**2) / (2 * bandwidth**2))


def _filtered_noise(rng: np.random.Generator, size: int, spectral_filter: np.ndarray) -> np.ndarray:
    """Return zero-mean, unit-variance Gaussian noise whose spectrum is shaped by ``spectral_filter``.

    The random spectrum is drawn directly in the frequency domain (random phase and
    amplitude), so only one inverse real FFT is needed per field.
    """
    half_shape = spectral_filter.shape
    spectrum = rng.standard_normal(half_shape) + 1j * rng.standard_normal(half_shape)
    noise = np.fft.irfft2(spectrum * spectral_filter, s=(size, size))
    return (noise - noise.mean()) / (noise.std() + 1e-8)


def render_surface(rng: np.random.Generator, image_size: int = 256) -> np.ndarray:
    """Render one defect-free brushed-metal surface.

    Args:
        rng (np.random.Generator): Source of randomness; the result depends only on its state.
        image_size (int): Side length of the square image in pixels. Defaults to ``256``.

    Returns:
        np.ndarray: ``float64`` RGB image of shape ``(image_size, image_size, 3)`` in ``[0, 1]``.

    Example:
        >>> surface = render_surface(np.random.default_rng(0), image_size=64)
        >>> surface.shape
        (64, 64, 3)
    """
    freq_x, freq_y = _frequency_grid(image_size)
    angle = np.deg2rad(rng.normal(0.0, 4.0))
    along = freq_x * np.cos(angle) + freq_y * np.sin(angle)
    across = -freq_x * np.sin(angle) + freq_y * np.cos(angle)
    # Long, thin streaks: narrow pass band along the brushing direction, wide across it.
    streaks = _filtered_noise(rng, image_size, np.exp(-(along**2) / (2 * 0.004**2) - across**2 / (2 * 0.12**2)))
    mottling = _filtered_noise(rng, image_size, _isotropic_filter(image_size, 0.012))
    grain = _filtered_noise(rng, image_size, _isotropic_filter(image_size, 0.25))

    coordinates = np.linspace(-0.5, 0.5, image_size)
    grid_x, grid_y = np.meshgrid(coordinates, coordinates, indexing="xy")
    light_angle = rng.uniform(0.0, 2 * np.pi)
    gradient = grid_x * np.cos(light_angle) + grid_y * np.sin(light_angle)

    luminance = (
        rng.uniform(0.44, 0.56)
        + rng.uniform(0.045, 0.065) * streaks
        + rng.uniform(0.02, 0.035) * mottling
        + 0.018 * grain
        + rng.uniform(0.03, 0.09) * gradient
    )
    tint = _TINT * (1.0 + rng.normal(0.0, 0.01, size=3))
    colour_drift = 0.004 * mottling[..., None] * rng.normal(0.0, 1.0, size=3)
    return np.clip(luminance[..., None] * tint + colour_drift, 0.0, 1.0)


def _supersampled_alpha(image_size: int, draw: Callable[[np.ndarray], None]) -> np.ndarray:
    """Rasterise shapes on a supersampled canvas and area-average them into an alpha map."""
    canvas = np.zeros((image_size * _SUPERSAMPLING, image_size * _SUPERSAMPLING), dtype=np.uint8)
    draw(canvas)
    return cv2.resize(canvas, (image_size, image_size), interpolation=cv2.INTER_AREA).astype(np.float64) / 255.0


def _draw_polyline(canvas: np.ndarray, points: np.ndarray, thickness: float) -> None:
    scaled = np.round(points * _SUPERSAMPLING).astype(np.int32).reshape(-1, 1, 2)
    line_width = max(1, round(thickness * _SUPERSAMPLING))
    cv2.polylines(canvas, [scaled], isClosed=False, color=255, thickness=line_width, lineType=cv2.LINE_8)


def _scratch_alpha(rng: np.random.Generator, image_size: int) -> np.ndarray:
    """Return the alpha map of a thin curved scratch (a cubic Bézier curve)."""

    def draw(canvas: np.ndarray) -> None:
        start = rng.uniform(0.15, 0.85, size=2) * image_size
        direction = rng.uniform(0.0, 2 * np.pi)
        length = rng.uniform(0.3, 0.6) * image_size
        end = np.clip(start + length * np.array([np.cos(direction), np.sin(direction)]), 4, image_size - 5)
        bend = rng.normal(0.0, 0.15 * length, size=(2, 2))
        controls = np.stack([start, start + (end - start) / 3 + bend[0], start + 2 * (end - start) / 3 + bend[1], end])
        t = np.linspace(0.0, 1.0, 200)[:, None]
        basis = np.hstack([(1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t**2, t**3])
        _draw_polyline(canvas, basis @ controls, thickness=rng.uniform(1.6, 2.6))

    return _supersampled_alpha(image_size, draw)


def _crack_alpha(rng: np.random.Generator, image_size: int) -> np.ndarray:
    """Return the alpha map of a branching crack drawn as persistent random walks."""

    def walk(start: np.ndarray, heading: float, steps: int) -> np.ndarray:
        turns = np.cumsum(rng.normal(0.0, 0.35, size=steps)) * 0.5 + rng.normal(0.0, 0.25, size=steps)
        headings = heading + turns
        step_lengths = rng.uniform(1.5, 3.0, size=steps)
        offsets = np.cumsum(np.stack([np.cos(headings), np.sin(headings)], axis=1) * step_lengths[:, None], axis=0)
        return np.vstack([start, start + offsets])  # OpenCV clips the parts that leave the canvas.

    def draw(canvas: np.ndarray) -> None:
        start = rng.uniform(0.25, 0.75, size=2) * image_size
        trunk = walk(start, rng.uniform(0.0, 2 * np.pi), int(rng.integers(35, 60)))
        _draw_polyline(canvas, trunk, thickness=rng.uniform(2.0, 2.8))
        for _ in range(int(rng.integers(2, 5))):
            origin = trunk[int(rng.integers(len(trunk) // 5, len(trunk)))]
            branch = walk(origin, rng.uniform(0.0, 2 * np.pi), int(rng.integers(8, 22)))
            _draw_polyline(canvas, branch, thickness=rng.uniform(1.5, 2.0))

    return _supersampled_alpha(image_size, draw)


def _spot_alpha(rng: np.random.Generator, image_size: int) -> np.ndarray:
    """Return the alpha map of an irregular blob with a soft (about 2 pixel wide) edge."""
    radius = rng.uniform(0.035, 0.08) * image_size
    centre = rng.uniform(radius + 4, image_size - radius - 4, size=2)
    harmonics = np.arange(2, 6)
    amplitudes = rng.uniform(0.0, 0.12, size=harmonics.size)
    phases = rng.uniform(0.0, 2 * np.pi, size=harmonics.size)

    rows, columns = np.mgrid[0:image_size, 0:image_size].astype(np.float64)
    offset_x, offset_y = columns - centre[0], rows - centre[1]
    theta = np.arctan2(offset_y, offset_x)[..., None]
    boundary = radius * (1.0 + np.sum(amplitudes * np.cos(harmonics * theta + phases), axis=-1))
    return np.clip((boundary - np.hypot(offset_x, offset_y)) / 2.0 + 0.5, 0.0, 1.0)


def _apply_defect(surface: np.ndarray, defect: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Blend one defect into ``surface``; return the defective image and the boolean mask."""
    image_size = surface.shape[0]
    if defect == "scratch":
        alpha = _scratch_alpha(rng, image_size)
        sign = 1.0 if rng.random() < 0.5 else -1.0
        target = np.clip(surface + sign * rng.uniform(0.3, 0.4), 0.0, 1.0)
    elif defect == "crack":
        alpha = _crack_alpha(rng, image_size)
        target = surface * rng.uniform(0.15, 0.3)
    elif defect == "spot":
        alpha = _spot_alpha(rng, image_size)
        colour = _SPOT_COLOURS[int(rng.integers(len(_SPOT_COLOURS)))]
        texture = surface - surface.mean(axis=(0, 1), keepdims=True)
        target = np.clip(colour * rng.uniform(0.9, 1.1) + 0.5 * texture, 0.0, 1.0)
    else:
        msg = f"Unknown defect type '{defect}'. Expected one of {DEFECT_TYPES}."
        raise ValueError(msg)
    alpha = alpha[..., None]
    return surface * (1.0 - alpha) + target * alpha, alpha[..., 0] >= 0.5


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


def render_sample(seed: int, split: str, label: str, index: int, image_size: int = 256) -> SyntheticSample:
    """Render one sample of the synthetic dataset, exactly as it is written to disk.

    Args:
        seed (int): Dataset seed.
        split (str): ``"train"`` or ``"test"``.
        label (str): ``"good"`` or one of :data:`DEFECT_TYPES`.
        index (int): Index of the sample within its ``split/label`` folder.
        image_size (int): Side length of the square image in pixels. Defaults to ``256``.

    Returns:
        SyntheticSample: The image, its defect-free counterpart and its mask (``None`` for ``"good"``).

    Raises:
        ValueError: If ``label`` is neither ``"good"`` nor a known defect type.

    Example:
        >>> sample = render_sample(seed=0, split="test", label="crack", index=3, image_size=64)
        >>> sample.image.shape, sample.mask.shape
        ((64, 64, 3), (64, 64))
    """
    surface = render_surface(_sample_rng(seed, split, label, index, stream=0), image_size)
    clean = _to_uint8(surface)
    if label == "good":
        return SyntheticSample(image=clean, clean=clean, mask=None)
    defective, mask = _apply_defect(surface, label, _sample_rng(seed, split, label, index, stream=1))
    return SyntheticSample(image=_to_uint8(defective), clean=clean, mask=mask.astype(np.uint8) * 255)
