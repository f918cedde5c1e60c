"""The dataset registry: one :class:`DatasetSpec` row per dataset (book chapter "Data").

Everything that depends on a dataset's name reads its row here: the splits, the published counts
(``expected``), the citation key, how it is read (a files ``reader`` or an in-memory ``loader``), whether its
images are glyph-like gray tensors (``gray``, for :func:`mslib.data.transforms.build_transform`), where it comes
from (``origin``, ``download``, ``manual``), the miniature ``fixture`` the tests build, whether it has query and
gallery splits (In-Shop) and its folder under ``data/``. A new dataset is one row plus its reader or loader.

- A files ``reader`` is ``reader(root, **options) -> (records, folder)``: ``records`` maps each base split
  (``train``, ``test``; or ``train``, ``query``, ``gallery``) to ``(relative image paths, raw class ids)``, and
  the images are ``folder / path`` (:mod:`mslib.data.datasets`; read by name in :mod:`mslib.data.loading`).
- An in-memory ``loader`` is ``loader(split, *, root, transform, val_fraction, seed, **options) -> Dataset`` (the
  glyphs; its items are tensors already): it carves ``val`` itself (:func:`mslib.data.datasets._select`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from mslib.data import fixtures
from mslib.data.datasets import _load_glyphs, read_cars196, read_cub200, read_inshop, read_sop
from mslib.data.download import RemoteFile
from mslib.data.errors import fetch_hint
from mslib.data.folder import read_folder
from mslib.data.omniglot import OMNIGLOT_EXPECTED, OMNIGLOT_FILES, load_omniglot, make_omniglot_fixture

ORIGINS = ("generated", "download", "manual", "own")  # made here; fetched; fetched by hand; the user's own files
Reader = Callable[..., tuple[dict[str, Any], Path]]
Loader = Callable[..., Any]


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset: what it is, how it is read and fetched. ``expected``: published ``(images, classes)`` per
    split (``None`` where no class count is published separately; empty where nothing is published)."""

    name: str
    title: str
    splits: tuple[str, ...]
    citation: str | None  # key in book/references.bib
    origin: str  # one of ORIGINS
    expected: Mapping[str, tuple[int, int | None]] = field(default_factory=dict)
    reader: Reader | None = None
    loader: Loader | None = None
    options: tuple[str, ...] = ()  # keyword options the reader / loader takes (TrainConfig.dataset_options)
    gray: bool = False  # items are glyph-like 1×H×W gray tensors: build_transform(..., glyphs=True)
    download: tuple[RemoteFile, ...] = ()  # files `python -m mslib data download NAME` fetches (with checksums)
    manual: str | None = None  # what to do by hand instead of (or when) a download fails; {root} is filled in
    fixture: Callable[..., Path] | None = None  # fixture(root, **options) writes a miniature copy; returns root
    query_gallery: bool = False  # test = query against gallery (In-Shop)
    default_root: str | None = None  # folder under data/; None: nothing on disk (glyphs) or the user names it
    pad_to_k: bool = True  # a class with n < k training images is padded by the P×K sampler (official); else error
    paper: bool = False  # one of the paper's four benchmarks (its tables report it)

    def __post_init__(self) -> None:
        object.__setattr__(self, "expected", MappingProxyType(dict(self.expected)))
        problems = []
        if (self.reader is None) == (self.loader is None):
            problems.append("exactly one of reader and loader")
        if self.origin not in ORIGINS:
            problems.append(f"origin one of {', '.join(ORIGINS)}")
        if (self.origin == "download") != bool(self.download):
            problems.append("download files exactly when origin is 'download'")
        if self.origin != "download" and not self.manual:
            problems.append("manual instructions (there is no download)")
        if not {"train", "test"} <= set(self.splits) or not set(self.expected) <= set(self.splits):
            problems.append("splits holding train, test and every split of expected")
        if self.query_gallery and not {"query", "gallery"} <= set(self.splits):
            problems.append("query and gallery splits (query_gallery=True)")
        if problems:
            raise ValueError(f"dataset spec {self.name!r} needs " + "; ".join(problems))

    @property
    def verify_splits(self) -> tuple[str, ...]:
        """The base splits ``verify`` reads (``val`` is carved out of ``train``; In-Shop's test is query+gallery)."""
        return ("train", "query", "gallery") if self.query_gallery else ("train", "test")


_ZERO_SHOT = ("train", "val", "test")

DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (
    DatasetSpec(
        "glyphs", "Glyphs-208 (embedded, rendered from matplotlib's fonts)", _ZERO_SHOT, None, "generated",
        expected={"train": (5200, 104), "test": (5200, 104)}, loader=_load_glyphs, gray=True,
        options=("glyph_seed", "images_per_class", "classes", "cache", "fonts"),
        manual="glyphs is generated locally, nothing to download: `python -m mslib data glyphs`"),
    DatasetSpec(
        "cub200", "CUB-200-2011", _ZERO_SHOT, "wah2011caltech", "download",
        expected={"train": (5864, 100), "test": (5924, 100)}, reader=read_cub200, fixture=fixtures.make_cub,
        default_root="cub200", paper=True,
        download=(RemoteFile(
            "CUB_200_2011.tgz",
            ("https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz",
             "http://www.vision.caltech.edu.s3-us-west-2.amazonaws.com/visipedia-data/CUB-200-2011/CUB_200_2011.tgz"),
            md5="97eceeb196236b17998738112f37df78", extract=True),)),
    DatasetSpec(
        "cars196", "Cars196 (Stanford Cars)", _ZERO_SHOT, "krause20133d", "download",
        expected={"train": (8054, 98), "test": (8131, 98)}, reader=read_cars196, fixture=fixtures.make_cars,
        default_root="cars196", paper=True,
        download=(RemoteFile("car_ims.tgz", ("http://ai.stanford.edu/~jkrause/car196/car_ims.tgz",),
                             md5="d5c8f0aa497503f355e17dc7886c3f14", extract=True),
                  RemoteFile("cars_annos.mat", ("http://ai.stanford.edu/~jkrause/car196/cars_annos.mat",),
                             md5="b407c6086d669747186bd1d764ff9dbc"))),
    DatasetSpec(
        "sop", "Stanford Online Products", _ZERO_SHOT, "song2016deep", "download",
        expected={"train": (59551, 11318), "test": (60502, 11316)}, reader=read_sop, fixture=fixtures.make_sop,
        default_root="sop", paper=True,
        download=(RemoteFile("Stanford_Online_Products.zip",
                             ("ftp://cs.stanford.edu/cs/cvgl/Stanford_Online_Products.zip",),
                             md5="7f73d41a2f44250d4779881525aea32e", extract=True),),
        manual=("If the FTP server does not answer, download Stanford_Online_Products.zip from Google Drive (file id "
                "1TclrpQOF_ullUP99wk_gjGN8pKvtErG8, MD5 7f73d41a2f44250d4779881525aea32e), unzip it so that "
                "{root}/Stanford_Online_Products/Ebay_train.txt exists, then run `python -m mslib data verify sop`.")),
    DatasetSpec(
        "inshop", "In-Shop Clothes Retrieval (DeepFashion)", (*_ZERO_SHOT, "query", "gallery"), "liu2016deepfashion",
        "manual", expected={"train": (25882, 3997), "query": (14218, None), "gallery": (12612, None)},
        reader=read_inshop, fixture=fixtures.make_inshop, query_gallery=True, default_root="inshop", paper=True,
        manual=(
            "In-Shop Clothes Retrieval (DeepFashion) is distributed through Google Drive only, so it cannot be "
            "fetched automatically and nothing was downloaded. From the DeepFashion In-Shop folder (Drive folder "
            "0B7EVK8r0v71pVDZFQXRsMDZCX1E) download:\n"
            "  1. Img/img.zip (file id 0B7EVK8r0v71pS2YxRE1QTFZzekU) and unzip it into {root}/ so that "
            "{root}/img/WOMEN/... exists (unzipped inside {root}/Img/, as in the archive's own folders, works "
            "too);\n"
            "  2. Eval/list_eval_partition.txt (file id 0B7EVK8r0v71pYVBqLXpRVjhHeWM) into {root}/Eval/.\n"
            "No checksum is published for these files; `python -m mslib data verify inshop` then checks the layout, "
            "the published counts (25,882 train / 14,218 query / 12,612 gallery) and that every image decodes.")),
    DatasetSpec(
        "folder", "Your own images (root/<class>/<image>, or a CSV path,label,split)",
        (*_ZERO_SHOT, "query", "gallery"), None, "own", reader=read_folder, options=("csv", "split_seed"),
        fixture=fixtures.make_folder_dataset, pad_to_k=False,
        manual=("folder reads your own images, nothing to download: put them in DIR/<class>/<image> (or list them "
                "in a CSV with the columns path,label,split) and pass --root DIR (README.md, 'Your own images')")),
    DatasetSpec(
        "omniglot", "Omniglot-242 (the authors' background small1 + small2 zips, vendored)", _ZERO_SHOT,
        "lake2015human", "download", expected={s: OMNIGLOT_EXPECTED[s] for s in ("train", "test")},
        loader=load_omniglot, gray=True, options=("image_size",), download=OMNIGLOT_FILES,
        fixture=make_omniglot_fixture,
        manual=("Omniglot-242 is vendored in the repository (data/omniglot/); `python -m mslib data download "
                "omniglot --root DIR` fetches the same two zips from the authors' repository (sha256-checked)")),
)}


def dataset_spec(name: str) -> DatasetSpec:
    """The registry row of ``name``; an unknown name is a ``ValueError`` listing the valid ones."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    return DATASETS[name]


def fetch_advice(name: str) -> str:
    """What to do to (re-)fetch ``name``, by its row's ``origin``: the download command, the manual route where
    there is no download, or where a generated or your own dataset comes from (appended to the readers' errors by
    :mod:`mslib.data.loading`)."""
    spec = DATASETS.get(name)
    origin = spec.origin if spec is not None else "download"
    if origin == "manual":
        return (f"{name} cannot be downloaded automatically: fetch its files by hand (`{fetch_hint(name)}` prints "
                "the steps; it downloads nothing)")
    if origin == "own":
        return (f"{name} reads your own images: check the folder or CSV you passed as root (layout root/<class>/"
                "<image>, or a CSV path,label,split; README.md, 'Your own images')")
    if origin == "generated":
        return str(spec.manual)
    return f"fetch it (again) with `{fetch_hint(name)}`"


def is_paper_dataset(name: str | None) -> bool:
    """Whether ``name`` is one of the paper's four benchmarks (a run record's dataset; unknown names: False)."""
    spec = DATASETS.get(name) if name is not None else None
    return spec is not None and spec.paper


def published_counts() -> dict[str, Mapping[str, tuple[int, int | None]]]:
    """``{name: expected}`` of the datasets with published split sizes (the data chapter's table)."""
    return {name: spec.expected for name, spec in DATASETS.items() if spec.expected}


__all__ = ["DATASETS", "DatasetSpec", "dataset_spec", "fetch_advice", "is_paper_dataset", "published_counts"]
