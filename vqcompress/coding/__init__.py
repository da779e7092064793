"""Turning code arrays into bytes and back: fixed-width bit packing, canonical Huffman, rANS."""
from . import huffman, rans
from .bitpack import code_dtype, pack, packed_bytes, unpack

__all__ = ["pack", "unpack", "code_dtype", "packed_bytes", "huffman", "rans"]
