"""Turning code arrays into bytes and back: fixed-width bit packing, canonical Huffman."""
from . import huffman
from .bitpack import code_dtype, pack, packed_bytes, unpack

__all__ = ["pack", "unpack", "code_dtype", "packed_bytes", "huffman"]
