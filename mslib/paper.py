"""The MS paper's published numbers, as data, each with its source tag from the book's *Sources* page.

Every value here is a row of ``book/sources.md`` (``tests/test_paper.py`` checks them against the page).
Tags (copied, never upgraded; the page explains them): ``[P]`` primary (the authors' repositories or the paper
page), ``[S]`` one secondary source, ``[S2]`` two or more agreeing secondary sources, ``[UNCONFIRMED]`` no source
confirms it. Values the page shows as "–" are absent here (never filled in). Recall@K values are percentages as
printed by the paper.
The Reality Check's numbers (Musgrave et al. 2020) are kept apart in :data:`REALITY_CHECK`: another protocol.
Chapter: *Results: Recall@K tables*.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BENCHMARKS", "DEVIATIONS", "PAPER_RESULTS", "PAPER_TABLE1", "REALITY_CHECK", "XBM_RESULTS", "Deviation",
    "PaperResult",
    "datasets_beside", "deviations_table", "paper_row", "paper_table", "published_recall", "reality_check_r1",
]

TAGS = ("[P]", "[S]", "[S2]", "[UNCONFIRMED]")


@dataclass(frozen=True)
class PaperResult:
    """One published row: a method's metrics on a dataset at an embedding size, with where the numbers come from."""

    method: str
    dataset: str  # cub200 | cars196 | sop | inshop
    dim: int | None  # embedding size (None: not stated by the source)
    metrics: dict[str, float]
    tag: str
    source: str
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.tag not in TAGS:
            raise ValueError(f"{self.method}/{self.dataset}: tag {self.tag!r} is not one of {TAGS}")


def _r(ks: tuple[int, ...], values: tuple[float, ...]) -> dict[str, float]:
    return {f"R@{k}": v for k, v in zip(ks, values, strict=True)}


_CUB_KS = (1, 2, 4, 8, 16, 32)
_SOP_KS = (1, 10, 100, 1000)
_INSHOP_KS = (1, 10, 20, 30)

# The MS paper's tables: book/sources.md#src-results-cub-cars and book/sources.md#src-results-sop-inshop
PAPER_RESULTS: tuple[PaperResult, ...] = (
    PaperResult("MS", "cub200", 512, _r(_CUB_KS, (65.7, 77.0, 86.3, 91.2, 95.0, 97.3)), "[P]",
                "official code README (research-ms-loss)"),
    PaperResult("MS", "cub200", 64, _r(_CUB_KS, (57.4, 69.8, 80.0, 87.8, 93.2, 96.4)), "[P]",
                "official code README (research-ms-loss)"),
    PaperResult("MS", "cars196", 512, _r(_CUB_KS[:4], (84.1, 90.4, 94.0, 96.5)), "[S2]",
                "two third-party copies of the paper's table", note="R@16/32 not confirmed"),
    PaperResult("MS", "sop", 512, _r(_SOP_KS[:3], (78.2, 90.5, 96.0)), "[S2]",
                "two third-party copies of the paper's table", note="R@1000 not confirmed"),
    PaperResult("MS", "inshop", 512, _r(_INSHOP_KS, (89.7, 97.9, 98.5, 98.8)), "[S2]",
                "two third-party copies of the paper's table",
                note="the abstract's In-Shop R@1 88.0 is probably a smaller model (dimension unconfirmed)"),
    PaperResult("HTL", "cub200", 512, _r(_CUB_KS, (57.1, 68.8, 78.7, 86.5, 92.5, 95.5)), "[P]",
                "official code / first author's README"),
    PaperResult("HTL", "cars196", 512, _r(_CUB_KS, (81.4, 88.0, 92.7, 95.7, 97.4, 99.0)), "[P]",
                "official code / first author's README"),
    PaperResult("A-BIER", "cub200", 512, _r(_CUB_KS, (57.5, 68.7, 78.3, 86.2, 91.9, 95.5)), "[P]",
                "official code / first author's README"),
    PaperResult("A-BIER", "cars196", 512, _r(_CUB_KS, (82.0, 89.0, 93.2, 96.1, 97.8, 98.7)), "[P]",
                "official code / first author's README"),
    PaperResult("Clustering", "cub200", 64, _r(_CUB_KS[:4], (48.2, 61.4, 71.8, 81.9)), "[P]",
                "official code / first author's README"),
    PaperResult("Clustering", "cars196", 64, _r(_CUB_KS[:4], (58.1, 70.6, 80.3, 87.8)), "[P]",
                "first author's README"),
    PaperResult("ProxyNCA", "cub200", 64, _r(_CUB_KS[:4], (49.2, 61.9, 67.9, 72.4)), "[P]",
                "official code / first author's README"),
    PaperResult("ProxyNCA", "cars196", 64, _r(_CUB_KS[:4], (73.2, 82.4, 86.4, 87.8)), "[P]",
                "official code / first author's README"),
    PaperResult("Smart Mining", "cub200", 64, _r(_CUB_KS[:4], (49.8, 62.3, 74.1, 83.3)), "[P]",
                "official code / first author's README"),
    PaperResult("Smart Mining", "cars196", 64, _r(_CUB_KS[:4], (64.7, 76.2, 84.2, 90.2)), "[P]",
                "official code / first author's README"),
    PaperResult("HTL", "sop", None, _r(_SOP_KS, (74.8, 88.3, 94.8, 98.4)), "[P]", "first author's README"),
    PaperResult("HTL", "inshop", None, _r(_INSHOP_KS, (80.9, 94.3, 95.8, 97.2)), "[P]", "first author's README"),
    PaperResult("A-BIER", "sop", None, _r(_SOP_KS, (74.2, 86.9, 94.0, 97.8)), "[P]", "first author's README"),
    PaperResult("A-BIER", "inshop", None, _r(_INSHOP_KS, (83.1, 95.1, 96.9, 97.5)), "[P]",
                "first author's README"),
)

# book/sources.md#src-reality-check: Reality Check (Musgrave et al. 2020), P@1 (= R@1), R-Precision, MAP@R;
# 4 x 128-d models ("128": their mean; "512": the four concatenated).
# Another protocol (batch 32, RMSprop 1e-6, validation-based stopping).
REALITY_CHECK: tuple[PaperResult, ...] = tuple(
    PaperResult(method, dataset, dim, {"R@1": p1, "RP": rp, "MAP@R": mapr}, "[S2]",
                "Reality Check tables, as copied by two third-party sources")
    for method, dataset, dim, p1, rp, mapr in (
        ("Contrastive", "cub200", 512, 68.13, 37.24, 26.53), ("Contrastive", "cub200", 128, 59.73, 31.98, 21.18),
        ("Contrastive", "cars196", 512, 81.87, 35.11, 24.89), ("Contrastive", "cars196", 128, 69.80, 27.78, 17.24),
        ("Triplet", "cub200", 512, 64.24, 34.55, 23.69), ("Triplet", "cub200", 128, 55.76, 29.55, 18.75),
        ("Triplet", "cars196", 512, 79.13, 33.71, 23.02), ("Triplet", "cars196", 128, 65.68, 26.67, 15.82),
        ("MS", "cub200", 512, 65.04, 35.40, 24.70), ("MS", "cub200", 128, 57.60, 30.84, 20.15),
        ("MS", "cars196", 512, 85.14, 38.09, 28.07), ("MS", "cars196", 128, 73.77, 29.92, 19.32),
        ("MS+Miner", "cub200", 512, 67.73, 37.37, 26.52), ("MS+Miner", "cub200", 128, 59.41, 31.93, 21.01),
        ("MS+Miner", "cars196", 512, 83.67, 37.08, 27.01), ("MS+Miner", "cars196", 128, 71.80, 29.44, 18.86),
    )
)

# The paper's Table 1: which similarities (S self, N negative-relative, P positive-relative) each loss's pair
# weighting uses, as a secondary reading of the paper reports it ([S]; no source here shows the checkmarks
# themselves; book/sources.md#src-table1). Lifted structure is the generalised per-anchor form the paper's GPW
# section analyses; MS uses S and N through its weighting and P through its mining.
PAPER_TABLE1_TAG = "[S]"
PAPER_TABLE1_SOURCE = "a reading note of the paper (Zheng, 2022), consistent with other reading notes"
PAPER_TABLE1: dict[str, dict[str, bool]] = {
    "contrastive": {"S": True, "N": False, "P": False},
    "triplet": {"S": False, "N": False, "P": True},
    "generalized_lifted_structure": {"S": False, "N": True, "P": False},
    "binomial_deviance": {"S": True, "N": False, "P": False},
    "multi_similarity": {"S": True, "N": True, "P": True},
}


# The XBM paper's published Recall@K with the memory (Wang et al. 2020): book/sources.md#src-xbm. Another paper,
# another protocol: shown beside this book's numbers only as that paper's.
_XBM_SOURCE = "XBM paper (Wang et al. 2020), Tables of Recall@K"
XBM_RESULTS: tuple[PaperResult, ...] = (
    PaperResult("Contrastive + XBM", "cub200", 512, _r((1, 2, 4), (65.8, 75.9, 84.0)), "[S]", _XBM_SOURCE,
                "BN-Inception"),
    PaperResult("Contrastive + XBM", "cars196", 512, _r((1, 2, 4), (82.0, 88.7, 93.1)), "[S]", _XBM_SOURCE,
                "BN-Inception"),
    PaperResult("Contrastive + XBM", "sop", 512, _r((1, 10, 100), (79.5, 90.8, 96.1)), "[S]", _XBM_SOURCE,
                "BN-Inception"),
    PaperResult("Contrastive + XBM", "inshop", 512, _r((1, 10, 20), (89.9, 97.6, 98.4)), "[S]", _XBM_SOURCE,
                "BN-Inception"),
    PaperResult("Contrastive + XBM", "sop", 128, _r((1, 10, 100), (80.6, 91.6, 96.2)), "[S2]", _XBM_SOURCE,
                "ResNet-50"),
    PaperResult("Contrastive + XBM", "inshop", 128, _r((1, 10, 20), (91.3, 97.8, 98.4)), "[S2]", _XBM_SOURCE,
                "ResNet-50"),
)


def paper_row(dataset: str, dim: int | None, method: str = "MS") -> PaperResult | None:
    """The paper's row for ``method`` on ``dataset`` at embedding size ``dim``, or ``None`` (not published/known)."""
    for row in PAPER_RESULTS:
        if row.dataset == dataset and row.dim == dim and row.method == method:
            return row
    return None


def paper_table(dataset: str, dim: int | None = None, *, rows: tuple[PaperResult, ...] = PAPER_RESULTS) -> Any:
    """The published rows for ``dataset`` (optionally one ``dim``) as a DataFrame: metrics, dim, tag and source."""
    import pandas as pd

    chosen = [r for r in rows if r.dataset == dataset and (dim is None or r.dim == dim)]
    records = []
    for r in chosen:
        name = f"{r.method}^{r.dim}" if r.dim else r.method
        records.append({"method": name, **r.metrics, "tag": r.tag, "source": r.source})
    if not records:
        return pd.DataFrame(columns=["method", "tag", "source"]).set_index("method")
    df = pd.DataFrame.from_records(records).set_index("method")
    metric_cols = [c for c in df.columns if c not in ("tag", "source")]
    return df[metric_cols + ["tag", "source"]]


BENCHMARKS = ("cub200", "cars196", "sop", "inshop")
COMPARED_METHODS = ("MS", "HTL", "A-BIER")  # the paper's own rows and its two strongest baselines


def datasets_beside(dataset: str) -> list[str]:
    """The datasets whose published numbers are shown beside runs on ``dataset``: that one when it is a
    benchmark, else (the glyph dataset) CUB-200-2011 and Cars-196, the ones the paper's main table covers."""
    return [dataset] if dataset in BENCHMARKS else ["cub200", "cars196"]


def published_recall(
    datasets: list[str], ks: list[int], methods: tuple[str, ...] = COMPARED_METHODS
) -> Any:
    """The paper's Recall@K (%) of ``methods`` (row names starting with them) on ``datasets`` as printed in
    ``notebooks/06_recall_tables.ipynb``: one decimal, "–" where no source gives a value, only the R@K of ``ks``,
    with each row's dataset, tag and source."""
    import pandas as pd

    frames = []
    for name in datasets:
        df = paper_table(name)
        frames.append(df[df.index.str.startswith(methods)].assign(dataset=name))
    paper = pd.concat(frames).rename_axis("method (the paper's table)")
    shown = [c for c in paper.columns if c.startswith("R@") and int(c[2:]) in ks]
    table = paper[["dataset", *shown, "tag", "source"]].copy()
    for c in shown:
        table[c] = [("–" if pd.isna(v) else f"{v:.1f}") for v in table[c]]
    return table


def reality_check_r1(method: str, dataset: str, dim: int) -> float:
    """The Reality Check's R@1 (its P@1) for ``method`` on ``dataset`` at ``dim``; an error naming what exists if
    it has no such row."""
    for row in REALITY_CHECK:
        if (row.method, row.dataset, row.dim) == (method, dataset, dim):
            return row.metrics["R@1"]
    known = ", ".join(sorted({f"{r.method}/{r.dataset}/{r.dim}" for r in REALITY_CHECK}))
    raise KeyError(f"no Reality Check row for {method}/{dataset}/{dim}; known: {known}")


@dataclass(frozen=True)
class Deviation:
    """One way the official code (or the paper) and this book differ, with the Sources labels that document it.

    ``book`` may hold ``{placeholders}`` filled by :func:`deviations_table` from the paper configs' settings, so the
    settings it names are read from ``configs/``, not typed. Chapter: *Reproducing the paper*.
    """

    topic: str
    official: str
    book: str
    sources: tuple[str, ...]


# book/sources.md#src-deviations and the sections each row names. Every number in `official` appears in one of
# its source sections (tests/test_paper.py checks it). Append a row to extend the chapter's table.
DEVIATIONS: tuple[Deviation, ...] = (
    Deviation("Model selection",
              "R@1 is computed on the test set every 200 iterations and the best value is reported; the final model "
              "is never evaluated.",
              "The final model's test numbers are the headline. A class-disjoint validation split (val_fraction) can "
              "select a model instead, as the Reality Check recommends; the official protocol's number is available "
              "(official_test_selection), always labelled best on test, and taken on the official schedule only "
              "(before the first update and every eval_every updates, never the final model).",
              ("src-official-eval", "src-reality-check")),
    Deviation("BatchNorm",
              "Running statistics are frozen every iteration (the affine parameters still train). The code's comment "
              "credits this with about +2% R@1 on CUB and no effect on the other datasets; the paper does not "
              "mention it.",
              "freeze_bn: {freeze_bn} in the paper configs, as the code runs, documented as a deviation; off in the "
              "CPU chapters.",
              ("src-official-recipe",)),
    Deviation("Numerical precision",
              "fp32 throughout (the code pins torch 1.1.0 and uses no autocast).",
              "The paper configs set amp: {amp} (autocast for the network's forward pass; the loss is computed in "
              "fp32) and channels_last: {channels_last}, for speed on a GPU. Neither is part of the official recipe.",
              ("src-official-recipe",)),
    Deviation("Training transform",
              "RandomResizedCrop(227, scale 0.16-1) after Resize(256), where the paper describes a resize and a "
              "random crop.",
              "The paper configs use the code's transform (it produced the published number); "
              "mslib.data.transforms documents it.",
              ("src-official-recipe", "src-paper")),
    Deviation("Hyperparameters",
              "alpha = {official_alpha:g}, beta = {official_beta:g}, lambda = {official_lam:g} (hard-coded), "
              "epsilon = {official_epsilon:g} (hard-coded), against the paper's alpha = {paper_alpha:g}, "
              "beta = {paper_beta:g}, lambda = {paper_lam:g}, epsilon = {paper_epsilon:g}.",
              "Both are named presets (MS_PRESETS official and paper); the configs use official, and the ablation "
              "chapter marks both.",
              ("src-paper", "src-official-loss")),
    Deviation("Self-pairs",
              "Removed by value: the loss drops positives with S >= 1 - 1e-5, and the evaluation takes the "
              "second-largest positive similarity as the threshold, so exact duplicates are dropped too.",
              "Self-pairs are excluded by index (the diagonal), in the loss and in Recall@K; on data without "
              "duplicate images both rules give the same numbers.",
              ("src-official-loss", "src-official-eval")),
    Deviation("Learning-rate schedule",
              "The scheduler is stepped before the optimiser (torch 1.1 semantics), so each drop (and each warm-up "
              "step) takes effect one update earlier than torch's current convention places it.",
              "Matched: the learning rate of every update equals the official code's "
              "(mslib.run.trainer.lr_at_update, tested against a plain loop of the official rules).",
              ("src-official-recipe",)),
    Deviation("Sampler",
              "A class with fewer than K images keeps all of them and is padded to K by drawing with replacement.",
              "Matched (mslib.data.PKSampler). Under torchrun, p x k is the global batch: every process runs the "
              "same sampler and takes its share of the classes of each batch.",
              ("src-official-recipe",)),
    Deviation("Seeding and learning rates",
              "The random seed, momentum, bias learning-rate factor and backbone learning-rate multiplier are "
              "never read: runs are not seeded, and backbone and head share one learning rate.",
              "Every run is seeded and resumable; one learning rate for all parameters, as the code effectively "
              "runs.",
              ("src-official-recipe",)),
    Deviation("Datasets",
              "CUB only: no Cars, SOP or In-Shop configs or loaders; the query/gallery evaluation path is unused.",
              "Loaders for all four datasets; In-Shop evaluates queries against the gallery. The Cars, SOP and "
              "In-Shop configs follow the CUB recipe with lengths that are this book's assumptions (SOP with the "
              "batch of 1000 quoted from the paper's appendix); they are not the authors' recipes.",
              ("src-official-recipe", "src-official-eval", "src-paper")),
)


def deviations_table(settings: dict[str, Any], rows: tuple[Deviation, ...] = DEVIATIONS) -> Any:
    """The deviation rows as a DataFrame (topic, official code, this book, sources), placeholders filled.

    ``settings`` holds the paper configs' values the rows name (``freeze_bn``, ``amp``, ``channels_last``); the MS
    hyperparameters come from :data:`mslib.losses.MS_PRESETS`. A missing setting raises ``KeyError`` naming it.
    """
    import pandas as pd

    from mslib.losses import MS_PRESETS

    values = {f"{preset}_{k}": v for preset, hp in MS_PRESETS.items() for k, v in hp.items()} | dict(settings)
    records = []
    for row in rows:
        try:
            official, book = row.official.format(**values), row.book.format(**values)
        except KeyError as err:
            raise KeyError(f"deviation {row.topic!r} needs the setting {err.args[0]!r}") from None
        records.append({"topic": row.topic, "official code": official, "this book": book,
                        "sources": ", ".join(row.sources)})
    return pd.DataFrame.from_records(records).set_index("topic")
