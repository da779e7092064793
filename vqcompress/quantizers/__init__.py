"""Quantizers in scikit-learn style: ``fit`` learns codebooks, ``encode``/``decode`` convert."""
from .kmeans import KMeansQuantizer
from .product import ProductQuantizer
from .residual import ResidualQuantizer
from .uniform import UniformQuantizer

__all__ = ["KMeansQuantizer", "ProductQuantizer", "ResidualQuantizer", "UniformQuantizer"]
