"""Miniature copies of the four benchmarks' archives, in their exact on-disk format, and an example folder of
your own images (:func:`make_folder_dataset`).

Tests build them to check the readers without the real data (which cannot be downloaded here), and the data
chapter shows them so readers see the layout each reader expects. Images are tiny solid-colour JPEGs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def _jpeg(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (12, 10), (value % 256, 40, 200)).save(path, "JPEG")


def make_cub(root: Path) -> Path:
    """CUB_200_2011/{classes,images,image_class_labels,train_test_split}.txt + images/; classes 1,2,3 and 101,102.

    ``train_test_split.txt`` (``id is_training_image``) is the classification split, which the zero-shot reader
    ignores; here it marks every other image.
    """
    base = root / "CUB_200_2011"
    per_class = {1: 3, 2: 2, 3: 1, 101: 2, 102: 3}
    classes, images, labels, split = [], [], [], []
    i = 0
    for c, n in per_class.items():
        folder = f"{c:03d}.Bird_{c}"
        classes.append(f"{c} {folder}")
        for j in range(n):
            i += 1
            rel = f"{folder}/Bird_{c}_{j:04d}_{i}.jpg"
            _jpeg(base / "images" / rel, i)
            images.append(f"{i} {rel}")
            labels.append(f"{i} {c}")
            split.append(f"{i} {i % 2}")
    for fname, lines in (("classes.txt", classes), ("images.txt", images), ("image_class_labels.txt", labels),
                         ("train_test_split.txt", split)):
        (base / fname).write_text("\n".join(lines) + "\n")
    return root


def make_cars(root: Path, *, class_names: int = 196) -> Path:
    """cars_annos.mat written with scipy (struct array ``annotations``, cell array ``class_names``) + car_ims/.

    Classes 1,2 (train) and 99,196 (test). ``class_names`` sets the length of the class-name table (the real
    file's is 196; another length makes a table that disagrees with the class ids).
    """
    from scipy.io import savemat

    dtype = [("relative_im_path", "O"), ("bbox_x1", "O"), ("bbox_y1", "O"), ("bbox_x2", "O"), ("bbox_y2", "O"),
             ("class", "O"), ("test", "O")]
    rows = []
    for i, c in enumerate([1, 1, 2, 99, 99, 196, 196, 196], start=1):
        rel = f"car_ims/{i:06d}.jpg"
        _jpeg(root / rel, i)
        rows.append((rel, np.array([[1]], dtype=np.uint8), np.array([[1]], dtype=np.uint8),
                     np.array([[10]], dtype=np.uint8), np.array([[9]], dtype=np.uint8),
                     np.array([[c]], dtype=np.uint8), np.array([[i % 2]], dtype=np.uint8)))
    ann = np.array([rows], dtype=dtype)
    names = np.array([[f"Car {c}" for c in range(1, class_names + 1)]], dtype=object)
    savemat(root / "cars_annos.mat", {"annotations": ann, "class_names": names})
    return root


def make_sop(root: Path) -> Path:
    """Stanford_Online_Products/Ebay_{info,train,test}.txt (header line) + <super>_final/ images.

    ``Ebay_info.txt`` lists every image (train then test), as the real index does.
    """
    base = root / "Stanford_Online_Products"
    header = "image_id class_id super_class_id path"
    train = [(1, 1, "bicycle"), (2, 1, "bicycle"), (3, 2, "bicycle"), (4, 5, "chair"), (5, 5, "chair")]
    test = [(6, 11319, "chair"), (7, 11319, "chair"), (8, 11320, "sofa"), (9, 22634, "sofa")]
    for fname, rows in (("Ebay_info.txt", train + test), ("Ebay_train.txt", train), ("Ebay_test.txt", test)):
        lines = [header]
        for image_id, cls, sup in rows:
            rel = f"{sup}_final/{cls}_{image_id}.JPG"
            _jpeg(base / rel, image_id)
            lines.append(f"{image_id} {cls} {['bicycle', 'chair', 'sofa'].index(sup) + 1} {rel}")
        (base / fname).write_text("\n".join(lines) + "\n")
    return root


def make_inshop(root: Path, *, nested: bool = False) -> Path:
    """Eval/list_eval_partition.txt (count line, header, padded name column) + img/ images.

    ``nested=True`` puts the images under ``Img/img/`` as the official archive's folders do; the partition file
    names them ``img/...`` either way.
    """
    rows = [("id_00000001", "train"), ("id_00000001", "train"), ("id_00000004", "train"),
            ("id_00000002", "query"), ("id_00000002", "gallery"), ("id_00000007", "query"),
            ("id_00000007", "gallery"), ("id_00000007", "gallery")]
    lines = []
    for i, (item, status) in enumerate(rows):
        rel = f"img/WOMEN/Dresses/{item}/{i:02d}_1_front.jpg"
        _jpeg(root / ("Img" if nested else "") / rel, i)
        lines.append(f"{rel:<60}{item} {status}")
    (root / "Eval").mkdir(parents=True, exist_ok=True)
    (root / "Eval" / "list_eval_partition.txt").write_text(
        f"{len(rows)}\nimage_name item_id evaluation_status\n" + "\n".join(lines) + "\n")
    return root


def _per_class(n_images: int, n_classes: int) -> list[int]:
    """``n_images`` spread over ``n_classes`` as evenly as possible (the first classes take the remainder)."""
    base, extra = divmod(n_images, n_classes)
    return [base + (i < extra) for i in range(n_classes)]


def _synthetic_jpeg(job: tuple[str, int, int, tuple[int, int], int]) -> None:
    """One real-size JPEG: a class-seeded smooth colour field plus an image-seeded one and pixel noise."""
    path, cls, image_seed, (w, h), quality = job
    field = np.random.default_rng(cls).integers(0, 256, (h // 16 + 1, w // 16 + 1, 3))
    rng = np.random.default_rng(image_seed)
    mixed = (0.7 * field + 0.3 * rng.integers(0, 256, field.shape)).astype(np.uint8)
    img = np.asarray(Image.fromarray(mixed).resize((w, h), Image.BICUBIC), dtype=np.int16)
    img = (img + rng.integers(-24, 25, img.shape, dtype=np.int16)).clip(0, 255).astype(np.uint8)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path, "JPEG", quality=quality)


def synthetic_cub(root: str | Path, *, classes_per_split: int = 100, images_per_class: int | None = None,
                  image_size: tuple[int, int] = (500, 375), quality: int = 90, seed: int = 0,
                  processes: int = 1) -> Path:
    """A CUB-200-2011 copy in the archive's exact layout at the real size, made on the spot (nothing downloaded).

    By default 100 training classes (ids 1–100) and 100 test classes (101–200) with CUB's published counts (5,864 and
    5,924 images: the ``expected`` of its row in :data:`mslib.data.registry.DATASETS`), each a ``image_size`` (w, h)
    JPEG of smooth class-coloured noise, about the size and decoding cost of CUB's photos. ``images_per_class``
    makes a smaller tree of ``classes_per_split`` classes per split (load it with ``check_counts=False``).
    ``make gpu-check`` trains the paper's recipe on it (``benchmarks/gpu_check.py``); ``processes`` writes the
    JPEGs in parallel.
    """
    from multiprocessing import get_context

    if not 1 <= classes_per_split <= 100:
        raise ValueError(f"classes_per_split must be 1..100 (CUB's test classes start at 101), not {classes_per_split}")
    base = Path(root) / "CUB_200_2011"
    counts = ([images_per_class] * 2 * classes_per_split if images_per_class is not None else
              _per_class(5864, classes_per_split) + _per_class(5924, classes_per_split))
    ids = list(range(1, classes_per_split + 1)) + list(range(101, 101 + classes_per_split))
    classes, images, labels, split, jobs = [], [], [], [], []
    for c, n in zip(ids, counts, strict=True):
        folder = f"{c:03d}.Synthetic_{c}"
        classes.append(f"{c} {folder}")
        for j in range(n):
            i = len(images) + 1
            rel = f"{folder}/Synthetic_{c}_{j:04d}_{i}.jpg"
            jobs.append((str(base / "images" / rel), seed * 1000 + c, seed * 10**6 + i, image_size, quality))
            images.append(f"{i} {rel}")
            labels.append(f"{i} {c}")
            split.append(f"{i} {i % 2}")
    if processes > 1:
        with get_context("spawn").Pool(processes) as pool:
            pool.map(_synthetic_jpeg, jobs, chunksize=64)
    else:
        for job in jobs:
            _synthetic_jpeg(job)
    for fname, lines in (("classes.txt", classes), ("images.txt", images), ("image_class_labels.txt", labels),
                         ("train_test_split.txt", split)):
        (base / fname).write_text("\n".join(lines) + "\n")
    return Path(root)


def _shape(draw, kind: int, box: tuple[int, int, int, int], fill: tuple[int, int, int]) -> None:
    x0, y0, x1, y1 = box
    if kind == 0:
        draw.ellipse(box, fill=fill)
    elif kind == 1:
        draw.rectangle(box, fill=fill)
    elif kind == 2:
        draw.polygon([((x0 + x1) // 2, y0), (x1, y1), (x0, y1)], fill=fill)
    else:
        draw.polygon([((x0 + x1) // 2, y0), (x1, (y0 + y1) // 2), ((x0 + x1) // 2, y1), (x0, (y0 + y1) // 2)],
                     fill=fill)


def make_folder_dataset(root: str | Path, *, classes: int = 8, per_class: int = 6, seed: int = 0,
                        size: int = 48) -> Path:
    """An example of your own images: ``root/class_00/img_00.png`` ... (``folder`` layout), returns ``root``.

    Class ``c`` is one shape (ellipse, square, triangle, diamond) in one colour, both drawn once from
    ``default_rng(seed)``; each image moves, scales and tints it on a noisy background. Every other image is a
    JPEG, the others PNGs, so both decoders are read.
    """
    from PIL import ImageDraw

    root = Path(root)
    rng = np.random.default_rng(seed)
    colours = rng.integers(30, 226, (classes, 3))
    for c in range(classes):
        folder = root / f"class_{c:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            background = rng.integers(0, 60, (size, size, 3)).astype(np.uint8)
            img = Image.fromarray(background)
            half = int(rng.integers(size // 4, size // 2 - 2))
            cx, cy = (int(v) for v in rng.integers(half, size - half, 2))
            tint = np.clip(colours[c] + rng.integers(-20, 21, 3), 0, 255)
            box = (cx - half, cy - half, cx + half, cy + half)
            _shape(ImageDraw.Draw(img), c % 4, box, tuple(int(v) for v in tint))
            img.save(folder / f"img_{i:02d}.{'jpg' if i % 2 else 'png'}")
    return root


def layout(root: str | Path, max_lines: int = 12) -> str:
    """A ``tree``-like listing of ``root``: folders first, at most ``max_lines`` lines per folder level."""
    root = Path(root)
    lines: list[str] = [root.name + "/"]

    def walk(folder: Path, indent: str) -> None:
        entries = sorted(folder.iterdir(), key=lambda p: (p.is_file(), p.name))
        for i, entry in enumerate(entries):
            if i == max_lines:
                lines.append(f"{indent}... ({len(entries) - max_lines} more)")
                break
            lines.append(f"{indent}{entry.name}{'/' if entry.is_dir() else ''}")
            if entry.is_dir():
                walk(entry, indent + "    ")

    walk(root, "    ")
    return "\n".join(lines)
