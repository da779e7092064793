"""vqcompress: vector-quantization compression of neural-network weights."""
from . import allocate, calibration, nn
from .cluster import KMeansResult, kmeans, kmeans_1d_optimal
from .errors import FormatError, InputError, VQCompressError
from .pipeline import CompressedModel, CompressedTensor, compress, load
from .quantizers import KMeansQuantizer, ProductQuantizer, ResidualQuantizer, UniformQuantizer

__version__ = "0.1.0"

__all__ = ["nn", "calibration", "allocate", "compress", "load", "CompressedModel", "CompressedTensor", "kmeans", "kmeans_1d_optimal", "KMeansResult", "KMeansQuantizer",
           "ProductQuantizer", "ResidualQuantizer", "UniformQuantizer", "VQCompressError",
           "InputError", "FormatError", "__version__"]
