"""mslib: the tested library behind mslib-book (Multi-Similarity loss, Wang et al., CVPR 2019)."""

__version__ = "0.1.0"
