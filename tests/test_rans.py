"""rANS coding: round trips, closeness to the entropy, bad tables and streams."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vqcompress import FormatError
from vqcompress.coding import huffman, rans


@given(st.integers(1, 300), st.lists(st.integers(0, 10**6), max_size=400))
def test_round_trip(n_symbols, raw):
    symbols = np.array([v % n_symbols for v in raw], dtype=np.uint16)
    freq, stream = rans.encode(symbols, n_symbols)
    np.testing.assert_array_equal(rans.decode(freq, stream, symbols.size, n_symbols), symbols)


@pytest.mark.parametrize("symbols", [np.array([], np.uint8), np.array([5] * 1000, np.uint8)])
def test_empty_and_one_symbol_streams(symbols):
    freq, stream = rans.encode(symbols, 8)
    assert stream.size <= 4  # one symbol of probability 1 costs nothing but the state
    np.testing.assert_array_equal(rans.decode(freq, stream, symbols.size, 8), symbols)


def test_within_half_a_percent_of_entropy():
    r = np.random.default_rng(1)
    p = np.exp(-np.arange(32) / 3.0)
    symbols = r.choice(32, size=200_000, p=p / p.sum()).astype(np.uint8)
    _, stream = rans.encode(symbols, 32)
    h = huffman.entropy_bits(symbols, 32)
    assert stream.size * 8 / symbols.size <= h * 1.005


def test_quantized_frequencies():
    f = rans.quantize_freqs([1, 0, 10**9, 3])
    assert f.sum() == 1 << rans.SCALE_BITS and f[1] == 0 and f[0] >= 1 and f[3] >= 1


def test_corrupt_tables_and_streams():
    r = np.random.default_rng(0)
    symbols = r.integers(0, 6, 500).astype(np.uint8)
    freq, stream = rans.encode(symbols, 6)
    with pytest.raises(FormatError, match="sum"):
        rans.decode(freq // 2, stream, 500, 6)
    with pytest.raises(FormatError, match="expected"):
        rans.decode(freq.astype(np.uint16), stream, 500, 6)
    with pytest.raises(FormatError):
        rans.decode(freq, stream[: stream.size // 2], 500, 6)
    bad = stream.copy()
    bad[10] ^= 0x55
    with pytest.raises(FormatError, match="corrupt|ran out"):
        rans.decode(freq, bad, 500, 6)
    with pytest.raises(FormatError):
        rans.decode(freq, stream, 499, 6)  # the wrong count leaves the state off
