"""Glyphs-208: the embedded offline default dataset (no download, no system packages).

Classes are characters; instances are renderings of the character in the 23 TTF faces bundled with matplotlib,
with seeded augmentation. The recipe (fonts, character list, rendering, augmentation, split) is the one in
``book/sources.md#src-glyphs``; :data:`RECIPE_VERSION` changes whenever it changes. Generation is
deterministic for a seed and a set of library versions; the sha256 of the image array is stored with the cache so
that runs on different machines can be compared (a Pillow/FreeType or matplotlib font update changes pixels, not
the task).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np

from mslib.files import atomic_write
from mslib.paths import data_dir

RECIPE_VERSION = "glyphs208-v2"
CANVAS = 64
SIZE = 32
SPLIT_SEED = 12345
MIN_FACES = 8

#: The 23 matplotlib faces, in the recipe's order.
MATPLOTLIB_FACES = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans-BoldOblique.ttf",
    "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSansMono-Oblique.ttf", "DejaVuSansMono-BoldOblique.ttf",
    "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSerif-BoldItalic.ttf",
    "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf",
    "cmr10.ttf", "cmb10.ttf", "cmss10.ttf", "cmti10.ttf", "cmtt10.ttf", "cmmi10.ttf", "cmsy10.ttf",
)

#: Debian packages of the optional ``fonts="extended"`` set (recipe step 8).
EXTENDED_PACKAGES = (
    "fonts-urw-base35", "fonts-cmu", "fonts-freefont-ttf", "fonts-liberation2", "fonts-go", "fonts-sil-gentiumplus",
    "fonts-oldstandard", "fonts-comic-neue", "fonts-humor-sans", "fonts-dejavu-extra",
)

_GROUPS = (
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "abdefghijkmnpqrtuy",
    "123456789",
    "ΓΔΘΛΞΠΣΦΨΩ",
    "αβδεζηθλμξπσςτφψω",
    "БДЖИЙЛЦЧШЩЪЫЬЭЮЯЂЉЊЋ",
    "!#$%&()*+/<=>?@[\\]^{}~",
    "¡¢£¥§©¬®°±¶¿«»¼½¾÷ÆæÞþ",
    "∂∃∅∇∈√∞∝∠∪∫≈≠≡≤≥⊂⊃⊆⊇⊕⊗⊥∴∓≅⊢⊣ℏℓ€‰†‡™",
    "←↑→↓↔↕⇐⇒⇔⇑⇓↗↘↙↖↦↩↪",
    "♠♣♥■□▲△▼◆◇●",
)
#: The frozen class list (208 characters, recipe step 3), in class-index order.
CHARACTERS: tuple[str, ...] = tuple(ch for group in _GROUPS for ch in group)
assert len(CHARACTERS) == 208, len(CHARACTERS)


def font_paths(fonts: str = "matplotlib") -> list[Path]:
    """The font files of a font set: ``"matplotlib"`` (default, the 23 bundled faces) or ``"extended"``.

    ``"extended"`` adds every .ttf/.otf owned by :data:`EXTENDED_PACKAGES` (sorted, DejaVu files that matplotlib
    already ships skipped); it needs ``apt-get install -y <packages>`` and is never used unless asked for.
    """
    import matplotlib

    base = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    paths = [base / name for name in MATPLOTLIB_FACES]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"matplotlib's bundled fonts are missing: {', '.join(map(str, missing))}")
    if fonts == "matplotlib":
        return paths
    if fonts != "extended":
        raise ValueError(f"unknown font set {fonts!r}; choose 'matplotlib' or 'extended'")
    extra: set[Path] = set()
    absent = []
    for package in EXTENDED_PACKAGES:
        try:
            out = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True, check=True).stdout
        except (OSError, subprocess.CalledProcessError):
            absent.append(package)
            continue
        for line in out.splitlines():
            p = Path(line)
            if p.suffix.lower() in (".ttf", ".otf") and p.is_file():
                if p.name.startswith("DejaVu") and (base / p.name).exists():
                    continue
                extra.add(p)
    if absent:
        raise FileNotFoundError(
            "the extended font set needs these Debian packages: " + " ".join(absent)
            + f"\n  install them with: apt-get install -y {' '.join(EXTENDED_PACKAGES)}"
        )
    return paths + sorted(extra)


def _font(path: Path, size: float):
    from PIL import ImageFont

    return ImageFont.truetype(str(path), max(1, int(round(size))))


@cache
def _cmap(path: Path) -> tuple[dict[int, str], bool]:
    from fontTools.ttLib import TTFont

    with TTFont(str(path), lazy=True) as tt:
        cmap = dict(tt.getBestCmap() or {})
    return cmap, path.name.startswith("cm") and path.suffix == ".ttf"


@cache
def _base_size(path: Path) -> float:
    """Font size whose cap height ('H') is 0.42 of the canvas."""
    left, top, right, bottom = _font(path, 100).getbbox("H", anchor="ls")
    cap = max(bottom - top, 1)
    return 0.42 * CANVAS * 100 / cap


def _has_codepoint(path: Path, ch: str) -> bool:
    from fontTools.agl import UV2AGL

    cmap, is_bakoma = _cmap(path)
    cp = ord(ch)
    name = cmap.get(cp)
    if name is None or name == ".notdef":
        return False
    return not (is_bakoma and UV2AGL.get(cp) != name)


def _render(path: Path, ch: str, scale: float = 1.0, stroke: int = 0):
    """White glyph on a black 64×64 L image, baseline at 0.70·64, centred horizontally on its bbox."""
    from PIL import Image, ImageDraw

    size = _base_size(path) * scale
    font = _font(path, size)
    left, top, right, bottom = font.getbbox(ch, anchor="ls", stroke_width=stroke)
    limit = 0.86 * CANVAS
    if max(right - left, bottom - top) > limit:
        font = _font(path, size * limit / max(right - left, bottom - top))
        left, top, right, bottom = font.getbbox(ch, anchor="ls", stroke_width=stroke)
    baseline = 0.70 * CANVAS
    lo, hi = 0.07 * CANVAS, 0.93 * CANVAS
    if baseline + top < lo:
        baseline += lo - (baseline + top)
    elif baseline + bottom > hi:
        baseline -= (baseline + bottom) - hi
    x = CANVAS / 2 - (left + right) / 2
    img = Image.new("L", (CANVAS, CANVAS), 0)
    ImageDraw.Draw(img).text((x, baseline), ch, fill=255, font=font, anchor="ls", stroke_width=stroke,
                             stroke_fill=255)
    return img


def available_faces(ch: str, paths: Sequence[Path]) -> list[int]:
    """Indices of the faces that really have ``ch`` (cmap, AGL name for BaKoMa, ≥ 4 pixels above 128)."""
    out = []
    for i, path in enumerate(paths):
        if _has_codepoint(path, ch) and int((np.asarray(_render(path, ch)) > 128).sum()) >= 4:
            out.append(i)
    return out


def _augment(path: Path, ch: str, rng: np.random.Generator) -> np.ndarray:
    """One augmented 32×32 uint8 rendering (recipe step 5, parameters drawn in the recipe's order)."""
    from PIL import Image, ImageFilter
    from scipy import ndimage

    scale = rng.uniform(0.85, 1.15)
    stroke = int(rng.choice([-1, 0, 0, 1, 2]))
    img = _render(path, ch, scale=scale, stroke=max(stroke, 0))
    if stroke == -1:
        thin = img.filter(ImageFilter.MinFilter(3))
        ink, ink_thin = np.asarray(img, dtype=np.float64).sum(), np.asarray(thin, dtype=np.float64).sum()
        if ink_thin >= 0.5 * ink:
            img = thin
    angle = np.deg2rad(rng.uniform(-12, 12))
    shear = rng.uniform(-0.2, 0.2)
    aspect = float(np.exp(rng.uniform(-0.1, 0.1)))
    tx, ty = rng.uniform(-0.07, 0.07, size=2) * CANVAS
    # forward map about the centre: A = R · Shear · diag(aspect, 1/aspect); PIL wants the inverse (output → input)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    forward = rot @ np.array([[1.0, shear], [0.0, 1.0]]) @ np.diag([aspect, 1.0 / aspect])
    inv = np.linalg.inv(forward)
    c = np.array([CANVAS / 2, CANVAS / 2])
    offset = c - inv @ (c + np.array([tx, ty]))
    img = img.transform((CANVAS, CANVAS), Image.Transform.AFFINE,
                        (inv[0, 0], inv[0, 1], offset[0], inv[1, 0], inv[1, 1], offset[1]),
                        resample=Image.Resampling.BILINEAR, fillcolor=0)
    grids = rng.standard_normal((2, 4, 4))
    magnitude = rng.uniform(0, 2.5)
    zoom = CANVAS / 4
    dy, dx = (ndimage.zoom(g, zoom, order=3, mode="nearest") * magnitude for g in grids)
    yy, xx = np.mgrid[0:CANVAS, 0:CANVAS].astype(np.float64)
    arr = ndimage.map_coordinates(np.asarray(img, dtype=np.float64), [yy + dy, xx + dx], order=1, mode="constant")
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    radius = rng.uniform(0, 1.2)
    if radius > 0.3:
        img = img.filter(ImageFilter.GaussianBlur(radius))
    small = np.asarray(img.resize((SIZE, SIZE), Image.Resampling.BOX), dtype=np.float64) / 255.0
    bg, fg = rng.uniform(0, 0.2), rng.uniform(0.7, 1.0)
    sigma = rng.uniform(0, 0.04)
    out = bg + (fg - bg) * small + rng.normal(0.0, 1.0, small.shape) * sigma
    return np.round(np.clip(out, 0, 1) * 255).astype(np.uint8)


def _versions() -> dict[str, str]:
    import fontTools
    import matplotlib
    import PIL

    return {"matplotlib": matplotlib.__version__, "pillow": PIL.__version__, "fonttools": fontTools.version,
            "numpy": np.__version__}


def _resolve_classes(classes: int | Sequence[str] | None) -> list[str]:
    if classes is None:
        return list(CHARACTERS)
    if isinstance(classes, int):
        if not 2 <= classes <= len(CHARACTERS):
            raise ValueError(f"classes={classes}: choose between 2 and {len(CHARACTERS)} classes")
        return list(CHARACTERS[:classes])
    chars = list(classes)
    unknown = [c for c in chars if c not in CHARACTERS]
    if unknown:
        raise ValueError(f"characters {unknown!r} are not Glyphs-208 classes (see mslib.data.glyphs.CHARACTERS)")
    return chars


def cache_path(seed: int = 0, images_per_class: int = 50, classes: int | Sequence[str] | None = None,
               fonts: str = "matplotlib") -> Path:
    """Where :func:`generate_glyphs` caches an array: keyed by recipe version, seed, classes, fonts, versions."""
    chars = _resolve_classes(classes)
    key = json.dumps({"recipe": RECIPE_VERSION, "seed": seed, "n": images_per_class, "chars": "".join(chars),
                      "fonts": fonts, "versions": _versions()}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return data_dir() / "glyphs" / f"{RECIPE_VERSION}-seed{seed}-n{images_per_class}-c{len(chars)}-{fonts}-{digest}.npz"


def generate_glyphs(
    seed: int = 0,
    images_per_class: int = 50,
    classes: int | Sequence[str] | None = None,
    cache: bool = True,
    *,
    fonts: str = "matplotlib",
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Render the glyph dataset: ``X`` uint8 ``[N, 32, 32]``, ``y`` int64 class indices, the class characters.

    ``classes``: ``None`` (all 208), an int (the first n of :data:`CHARACTERS`) or a list of characters; ``y``
    indexes the returned list. Images are class-major (``images_per_class`` per class). With ``cache`` the arrays
    are read from / written to ``data/glyphs/`` (see :func:`cache_path`); the sha256 of ``X`` is stored there and
    checked on load. ``fonts="extended"`` adds system fonts (see :func:`font_paths`).
    """
    chars = _resolve_classes(classes)
    path = cache_path(seed, images_per_class, chars, fonts)
    if cache and path.is_file():
        with np.load(path, allow_pickle=False) as data:
            X, y, stored = data["X"], data["y"], str(data["sha256"])
            chars_stored = list(str(data["chars"]))
        if glyphs_sha256(X) == stored and chars_stored == chars:
            return X, y, chars
        path.unlink()  # corrupt cache: regenerate
    paths = font_paths(fonts)
    X = np.empty((len(chars) * images_per_class, SIZE, SIZE), dtype=np.uint8)
    y = np.repeat(np.arange(len(chars), dtype=np.int64), images_per_class)
    for c, ch in enumerate(chars):
        faces = available_faces(ch, paths)
        if len(faces) < MIN_FACES:
            raise RuntimeError(f"class {ch!r} (U+{ord(ch):04X}) has only {len(faces)} faces (< {MIN_FACES}); "
                               "the fonts differ from the recipe's")
        rng = np.random.default_rng([seed, ord(ch)])
        order = [faces[i] for i in rng.permutation(len(faces))]
        for j in range(images_per_class):
            X[c * images_per_class + j] = _augment(paths[order[j % len(order)]], ch, rng)
    if cache:
        atomic_write(path, lambda tmp: _save_cache(tmp, X, y, chars, fonts, seed))
    return X, y, chars


def _save_cache(file: Path, X: np.ndarray, y: np.ndarray, chars: list[str], fonts: str, seed: int) -> None:
    """The cache file's arrays (read back by :func:`generate_glyphs`); written through a handle, so ``np.savez``
    does not append ``.npz`` to the temporary file's name."""
    with open(file, "wb") as fh:
        np.savez_compressed(fh, X=X, y=y, chars=np.array("".join(chars)), sha256=np.array(glyphs_sha256(X)),
                            recipe=np.array(RECIPE_VERSION), versions=np.array(json.dumps(_versions())),
                            fonts=np.array(fonts), seed=np.array(seed))


def glyphs_sha256(X: np.ndarray) -> str:
    """sha256 of the image array's bytes (C order, uint8): the identity of a generated dataset."""
    return hashlib.sha256(np.ascontiguousarray(X).tobytes()).hexdigest()


def split_classes(num_classes: int, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """The recipe's zero-shot split: classes permuted with ``default_rng(12345)``, first half train, rest test.

    An odd count drops the last class of the permutation.
    """
    perm = np.random.default_rng(seed).permutation(num_classes)
    half = num_classes // 2
    return np.sort(perm[:half]), np.sort(perm[half : 2 * half])
