"""The Hugging Face Trainer and Lightning adapters: a few real training steps on a tiny MLP, one pruner step per
optimizer step (gradient accumulation included) with the gradients still present, and the scheduled sparsity at
the end; a clear error without the extra installed."""
import re
import sys

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from secateurs.core.masks import get_mask
from secateurs.errors import PruningError
from secateurs.schedules import callbacks
from secateurs.schedules.gmp import GradualMagnitude


class RandomDigits(Dataset):
    """64 random 8x8 'images' with labels from a fixed generator."""

    def __init__(self, n=64, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 64, generator=g)
        self.y = torch.randint(0, 10, (n,), generator=g)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"x": self.x[i], "labels": self.y[i]}


def tiny_mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


class GradSpy(GradualMagnitude):
    """Records, at every step(), whether every target's trainable weight still holds a nonzero gradient."""

    def step(self):
        self.grads_present = getattr(self, "grads_present", [])
        self.grads_present.append(all(t.leaf.grad is not None and bool(t.leaf.grad.abs().sum() > 0)
                                      for t in self.targets))
        return super().step()


def pruned(pruner):
    return sum(int((~get_mask(t)).sum()) for t in pruner.targets)


def n_weights(pruner):
    return sum(t.numel for t in pruner.targets)


# ------------------------------------------------------------------------------------------------ Hugging Face
class HFWrapper(nn.Module):
    """The HF Trainer wants a model whose forward takes the batch's keys and returns the loss."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x, labels=None):
        logits = self.net(x)
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return {"loss": loss, "logits": logits}


def test_hf_trainer_callback_steps_once_per_optimizer_step_and_ends_at_the_schedule(tmp_path):
    from transformers import Trainer, TrainingArguments

    from secateurs.schedules.callbacks import HFPruningCallback

    net = tiny_mlp()
    model = HFWrapper(net)
    pruner = GradSpy(net, 0.75, 2, 10, 2)  # pruner on a submodule of the trained model
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=12, per_device_train_batch_size=8,
                             gradient_accumulation_steps=2, learning_rate=0.05, optim="adamw_torch",
                             weight_decay=0.01, report_to=[], save_strategy="no", logging_strategy="no",
                             disable_tqdm=True, use_cpu=True, seed=0, dataloader_num_workers=0)
    trainer = Trainer(model=model, args=args, train_dataset=RandomDigits(), callbacks=[HFPruningCallback(pruner)])
    trainer.train()
    assert trainer.state.global_step == 12 and pruner.step_count == 12  # not 24: accumulation is one step
    assert all(pruner.grads_present) and len(pruner.grads_present) == 12
    assert [h["step"] for h in pruner.history] == [2, 4, 6, 8, 10]
    assert pruner.optimizer is not None  # attached, so the pruned weights' Adam state was reset
    assert pruned(pruner) == round(0.75 * n_weights(pruner))
    for t in pruner.targets:  # pruned weights stayed exactly zero through AdamW's last steps
        assert torch.all(t.leaf.detach()[~get_mask(t)] == 0)


def test_hf_trainer_stopping_early_still_ends_at_the_final_sparsity(tmp_path):
    from transformers import Trainer, TrainingArguments

    from secateurs.schedules.callbacks import HFPruningCallback

    net = tiny_mlp()
    pruner = GradualMagnitude(net, 0.6, 0, 20, 2)
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=5, per_device_train_batch_size=16,
                             learning_rate=0.01, report_to=[], save_strategy="no", logging_strategy="no",
                             disable_tqdm=True, use_cpu=True, seed=0)
    trainer = Trainer(model=HFWrapper(net), args=args, train_dataset=RandomDigits(),
                      callbacks=[HFPruningCallback(pruner)])
    with pytest.warns(RuntimeWarning, match="before end_step"):
        trainer.train()
    assert pruned(pruner) == round(0.6 * n_weights(pruner))


def test_hf_callback_refuses_a_pruner_built_on_another_model(tmp_path):
    from transformers import Trainer, TrainingArguments

    from secateurs.schedules.callbacks import HFPruningCallback

    pruner = GradualMagnitude(tiny_mlp(), 0.5, 0, 4, 2)
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=16, report_to=[],
                             save_strategy="no", disable_tqdm=True, use_cpu=True)
    trainer = Trainer(model=HFWrapper(tiny_mlp(1)), args=args, train_dataset=RandomDigits(),
                      callbacks=[HFPruningCallback(pruner)])
    with pytest.raises(PruningError, match="does not contain the pruner's model"):
        trainer.train()
    with pytest.raises(PruningError, match="Schedule"):
        HFPruningCallback(object())


# ------------------------------------------------------------------------------------------------ Lightning
def test_lightning_callback_handles_gradient_accumulation_and_ends_at_the_schedule():
    import lightning.pytorch as pl

    from secateurs.schedules.callbacks import LightningPruningCallback

    class Lit(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = tiny_mlp()

        def training_step(self, batch, batch_idx):
            return nn.functional.cross_entropy(self.net(batch["x"]), batch["labels"])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)

    pl.seed_everything(0, verbose=False)
    lit = Lit()
    pruner = GradSpy(lit.net, 0.75, 2, 10, 2)
    trainer = pl.Trainer(max_steps=12, accumulate_grad_batches=2, accelerator="cpu", devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[LightningPruningCallback(pruner)])
    loader = DataLoader(RandomDigits(), batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(0))
    trainer.fit(lit, loader)
    assert trainer.global_step == 12 and pruner.step_count == 12  # 24 batches, 12 optimizer steps
    assert all(pruner.grads_present) and len(pruner.grads_present) == 12
    assert [h["step"] for h in pruner.history] == [2, 4, 6, 8, 10]
    assert pruner.optimizer is trainer.optimizers[0]
    assert pruned(pruner) == round(0.75 * n_weights(pruner))
    for t in pruner.targets:  # momentum of pruned weights was reset: their originals stayed exactly zero
        assert torch.all(t.leaf.detach()[~get_mask(t)] == 0)


# ------------------------------------------------------------------------------------------------ missing extras
@pytest.mark.parametrize("name, module, extra", [
    ("HFPruningCallback", "transformers", "secateurs[hf]"),
    ("LightningPruningCallback", "lightning.pytorch", "secateurs[lightning]"),
])
def test_without_the_extra_a_clear_error_names_the_pip_extra(monkeypatch, name, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # "import <module>" now fails as if not installed
    monkeypatch.setattr(callbacks, "_BUILT", {})
    with pytest.raises(callbacks.MissingExtraError, match=re.escape(f"pip install {extra}")) as info:
        exec(f"from secateurs.schedules.callbacks import {name}", {})
    assert isinstance(info.value, PruningError) and isinstance(info.value, ImportError)
