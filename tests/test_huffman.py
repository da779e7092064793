"""Canonical Huffman coding: round trips, optimality against a naive Huffman, bad streams."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import naive
from vqcompress import FormatError
from vqcompress.coding import huffman


@given(st.integers(1, 300), st.lists(st.integers(0, 10**6), max_size=400))
def test_round_trip(n_symbols, raw):
    symbols = np.array([v % n_symbols for v in raw], dtype=np.uint16)
    lengths, stream = huffman.encode(symbols, n_symbols)
    back = huffman.decode(lengths, stream, symbols.size, n_symbols)
    np.testing.assert_array_equal(back, symbols)


@pytest.mark.parametrize("symbols", [np.array([], np.uint8), np.array([7] * 50, np.uint8)])
def test_empty_and_one_symbol_streams(symbols):
    lengths, stream = huffman.encode(symbols, 8)
    assert stream.size == (symbols.size + 7) // 8  # one bit per symbol for a lone symbol
    np.testing.assert_array_equal(huffman.decode(lengths, stream, symbols.size, 8), symbols)


@pytest.mark.parametrize("seed", range(5))
def test_size_is_optimal_huffman(seed):
    r = np.random.default_rng(seed)
    p = r.dirichlet(np.ones(40) * 0.5)
    symbols = r.choice(40, size=20_000, p=p).astype(np.uint8)
    freqs = np.bincount(symbols, minlength=40)
    lengths, stream = huffman.encode(symbols, 40)
    bits = int(freqs @ lengths.astype(np.int64))
    opt = naive.huffman_total_bits(freqs)
    assert bits <= opt * 1.001
    assert stream.size == (bits + 7) // 8


def test_length_limit_stays_near_optimal():
    r = np.random.default_rng(0)
    p = np.exp(-np.arange(32) / 1.2)
    p /= p.sum()
    symbols = r.choice(32, size=1_000_000, p=p).astype(np.uint8)
    freqs = np.bincount(symbols, minlength=32)
    lengths = huffman.code_lengths(freqs)
    assert lengths.max() <= huffman.MAX_LEN
    assert naive.huffman_total_bits(freqs) > 0
    assert int(freqs @ lengths.astype(np.int64)) <= naive.huffman_total_bits(freqs) * 1.001
    kraft = np.sum(2.0 ** -lengths[lengths > 0].astype(float))
    assert kraft == pytest.approx(1.0)


def test_canonical_codes_are_a_prefix_code():
    lengths = np.array([2, 3, 3, 1, 0], dtype=np.uint8)
    codes = huffman.canonical_codes(lengths)
    words = [format(int(codes[s]), f"0{lengths[s]}b") for s in range(4)]
    assert words == ["10", "110", "111", "0"]


def test_corrupt_tables_and_streams():
    symbols = np.array([0, 1, 2, 1, 0, 0, 2], dtype=np.uint8)
    lengths, stream = huffman.encode(symbols, 3)
    with pytest.raises(FormatError, match="prefix"):
        huffman.decode(np.array([1, 1, 1], np.uint8), stream, 7, 3)
    with pytest.raises(FormatError, match="longer"):
        huffman.decode(np.array([17, 1, 1], np.uint8), stream, 7, 3)
    with pytest.raises(FormatError, match="ran out"):
        huffman.decode(lengths, stream[:0], 7, 3)
    with pytest.raises(FormatError, match="ran out"):
        huffman.decode(lengths, stream, 100, 3)
    # an incomplete code: "11" starts no code word
    with pytest.raises(FormatError, match="invalid code"):
        huffman.decode(np.array([1, 2, 0], np.uint8), np.array([0xFF], np.uint8), 2, 3)


def test_entropy_bits():
    assert huffman.entropy_bits(np.array([0, 1, 0, 1]), 2) == pytest.approx(1.0)
    assert huffman.entropy_bits(np.array([3, 3, 3]), 4) == 0.0
