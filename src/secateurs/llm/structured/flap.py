"""FLAP: fluctuation-based adaptive structured pruning (An, Zhao, Yu, Tang & Wang 2024, "Fluctuation-based
Adaptive Structured Pruning for Large Language Models", AAAI; reference CASIA-IVA-Lab/FLAP lib/prune.py
``prune_flap`` and ``compress``, defaults of its main.py).

1. **Fluctuation metric** (eq. 5, ``WIFV``): for each input channel j of ``o_proj`` and ``down_proj``,
   ``S_j = Var_tokens(x_j) · ||W[:, j]||²`` — how much the layer's output moves when channel j is replaced by its
   mean.  ``IFV`` drops the weight factor; ``WIFN`` is Wanda's ``mean_i |W_ij| · ||x_j||``.  The attention
   channels' scores are squared (as the reference does).  Statistics: the engine's ``flap_fluctuation``
   (:class:`~secateurs.core.stats.FlapFluctuation`, the reference's estimate; ``fluctuation="exact"``:
   ``mean_var_row``) and ``scaler_row`` collectors on the block-by-block pass.
2. **Per-layer standardisation** (eq. 6): each layer's attention-channel and MLP-channel scores are standardised
   ``(S − mean) / std`` within the layer; a key/value group's score is the mean of its channels' (a head's, under
   multi-head attention, as the reference's ``reshape(-1, 128).mean``).
3. **Adaptive structure search** (``structure="AL-AM"``, §3.3): heads and MLP channels of all layers are ranked
   together by standardised score, each weighted by the parameters it holds (a head group (2·n_rep+2)·head_dim·d,
   a channel 3·d: the reference's 512/3 for LLaMA's 128-wide heads), and the lowest are removed until the removed
   parameters reach ``sparsity`` × the blocks' parameters (the reference's threshold rule: the cumulative weight of
   the kept units, in descending order, closest to the target; units above the threshold stay).  ``UL-UM``: the
   same fraction of heads and channels in every layer; ``AL-MM``/``UL-MM``: ``remove_heads`` key/value groups in
   all (resp. per layer) and the rest of the budget from the MLP channels.
4. **Bias compensation** (eq. 7): ``o_proj``/``down_proj`` get the bias ``W[:, removed] · E[x_removed]``.

As the reference, statistics of every block are taken on the *dense* outputs of the blocks before it (the search
is global, so nothing is cut until all blocks are measured): ``dense_inputs=True``.  With ``dense_inputs=False``
the widths found by the search are kept and a second pass re-selects each block's units and re-measures the
means on the outputs of the already pruned blocks before it (the sequential order of SparseGPT and Wanda).

The fluctuation is by default the reference's own streamed estimate (``fluctuation="reference"``,
:class:`~secateurs.core.stats.FlapFluctuation`: one calibration row at a time, deviations from the running mean,
the first row left out); ``fluctuation="exact"`` uses the exact pooled variance over all calibration tokens
(:class:`~secateurs.core.stats.MeanVarRow`).  Differences from the reference: the compensation means stay in
float32 (the reference rounds them to fp16, its GPU model's dtype), and a layer left with no head or no MLP channel
raises :class:`WidthError` (the reference builds a zero-width layer).  Side by side with the reference code on
SmolLM2-135M: ``benchmarks/llm_structured_reference.py``.
Calibration: the reference draws 2048 windows of 128 tokens of WikiText-2; here ``nsamples``/``seqlen`` of
:func:`~secateurs.llm.prune_structured`.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

import torch

from ...registry import option, register
from .base import Layout, StructuredContext, StructuredMethod, WidthError, cut, keep_top

Structure = Literal["AL-AM", "UL-UM", "AL-MM", "UL-MM"]
Metric = Literal["WIFV", "IFV", "WIFN"]


def fluctuation(weight: torch.Tensor, stats: dict[str, Any], metric: str = "WIFV") -> torch.Tensor:
    """FLAP's per-input-channel score of an (out, in) weight (An et al. 2024, eq. 5; the reference's ``metrics``):
    ``WIFV`` = Var(x_j)·||W[:, j]||², ``IFV`` = Var(x_j), ``WIFN`` = mean_i |W_ij|·sqrt(mean ||x_j||²)."""
    w = weight.detach().float()
    if metric == "WIFN":
        return (w.abs() * torch.sqrt(stats["scaler_row"].value.to(w.device).reshape(1, -1))).mean(0).cpu()
    var = fluctuation_stat(stats).value.to(w.device)
    return (var if metric == "IFV" else var * w.pow(2).sum(0)).cpu()


def fluctuation_stat(stats: dict[str, Any]) -> Any:
    """The collected fluctuation statistic (``flap_fluctuation`` when present, else ``mean_var_row``): its
    ``value`` is the fluctuation, its ``mean`` the mean input used by the bias compensation."""
    return stats["flap_fluctuation"] if "flap_fluctuation" in stats else stats["mean_var_row"]


def standardise(x: torch.Tensor) -> torch.Tensor:
    """(x − mean) / std within one layer (eq. 6; torch.std, unbiased, as the reference)."""
    return (x - x.mean()) / x.std()


@register("llm_structured", "flap")
class FLAP(StructuredMethod):
    """FLAP (An et al. 2024): fluctuation metric, standardised, adaptive global search over heads and MLP channels,
    bias compensation; physically removes key/value groups and MLP neurons."""

    def __init__(self,
                 metric: Annotated[Metric, option("channel score: WIFV (the paper's), IFV or WIFN")] = "WIFV",
                 structure: Annotated[Structure, option("AL-AM: global adaptive search (the paper's); UL-UM: same "
                                                        "ratio per layer; AL-MM/UL-MM: remove_heads groups")] = "AL-AM",
                 remove_heads: Annotated[int, option("key/value groups removed in AL-MM (all layers) / UL-MM "
                                                     "(per layer x layers)", ge=0)] = 8,
                 bias: Annotated[bool, option("bias compensation with the removed channels' mean inputs")] = True,
                 dense_inputs: Annotated[bool, option("measure every block on the dense outputs of the blocks "
                                                      "before it (the reference); False: re-select on the pruned "
                                                      "ones")] = True,
                 fluctuation: Annotated[Literal["reference", "exact"],
                                        option("reference: the reference's streamed estimate, one row at a time; "
                                               "exact: the pooled variance over all tokens")] = "reference"):
        self.metric, self.structure, self.remove_heads = metric, structure, remove_heads
        self.bias, self.dense_inputs, self.fluctuation = bias, dense_inputs, fluctuation

    def kinds(self) -> tuple[str, ...]:
        stat = "flap_fluctuation" if self.fluctuation == "reference" else "mean_var_row"
        return (stat, "scaler_row") if self.metric == "WIFN" else (stat,)

    def scores(self, lay: Layout, stats: list[dict[str, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel scores of (o_proj input, down_proj input), as the reference: attention squared."""
        o, down = lay.outputs()
        return fluctuation(o.weight, stats[0], self.metric) ** 2, fluctuation(down.weight, stats[1], self.metric)

    # ------------------------------------------------------------------------------------------------ search
    def _counts(self, ctx: StructuredContext, attn: list[torch.Tensor], mlp: list[torch.Tensor]
                ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer: (kept group indices, kept neuron indices), by the structure rule."""
        L, lays = len(attn), ctx.layouts
        s = float(ctx.sparsity or 0.0)
        gp, cp = lays[0].unit_params(lays[0].head_space()), lays[0].unit_params(lays[0].mlp_space())
        if self.structure in ("AL-AM", "AL-MM"):
            a = [standardise(x).reshape(lay.kv_heads, -1).mean(1) for x, lay in zip(attn, lays)]
            m = [standardise(x) for x in mlp]
            if self.structure == "AL-AM":
                flat = torch.cat([torch.cat(a), torch.cat(m)])
                weight = torch.cat([torch.full((sum(x.numel() for x in a),), float(gp), dtype=torch.float64),
                                    torch.full((sum(x.numel() for x in m),), float(cp), dtype=torch.float64)])
                order = torch.sort(flat, descending=True, stable=True).indices
                target = float(weight.sum()) - s * ctx.block_params()
                at = int(torch.argmin(torch.abs(torch.cumsum(weight[order], 0) - target)))
                thr = flat[order[at]]
                return [((x > thr).nonzero().squeeze(1), (y > thr).nonzero().squeeze(1)) for x, y in zip(a, m)]
            total_groups = sum(x.numel() for x in a)
            if self.remove_heads >= total_groups:
                raise WidthError(f"remove_heads={self.remove_heads} would remove every key/value group "
                                 f"({total_groups} in all layers)")
            neurons = int((s * ctx.block_params() - self.remove_heads * gp) / cp)
            keep_a = _global_keep(a, self.remove_heads)
            keep_m = _global_keep(m, max(neurons, 0))
            return list(zip(keep_a, keep_m))
        out = []
        for x, y, lay in zip(attn, mlp, lays):
            g = x.reshape(lay.kv_heads, -1).sum(1)
            if self.structure == "UL-UM":
                rg, rn = int(s * lay.kv_heads), int(y.numel() * s)
            else:  # UL-MM
                rg = self.remove_heads // L
                rn = int((s * ctx.block_params() / L - rg * gp) / cp)
            out.append((_layer_keep(g, rg), _layer_keep(y, max(rn, 0))))
        return out

    def run(self, ctx: StructuredContext) -> dict[str, Any]:
        if not ctx.sparsity and self.structure != "AL-MM" and self.structure != "UL-MM":
            return {}
        attn: list[torch.Tensor] = [torch.empty(0)] * len(ctx.layouts)
        mlp: list[torch.Tensor] = [torch.empty(0)] * len(ctx.layouts)
        means: list[tuple[torch.Tensor, torch.Tensor]] = [(torch.empty(0), torch.empty(0))] * len(ctx.layouts)

        def measure(i: int, _block: Any, stats: list[dict[str, Any]]) -> None:
            attn[i], mlp[i] = self.scores(ctx.layouts[i], stats)
            means[i] = (fluctuation_stat(stats[0]).mean.cpu(), fluctuation_stat(stats[1]).mean.cpu())

        ctx.walk(lambda lay: list(lay.outputs()), self.kinds(), measure, modifies=False, description="flap: measure")
        keep = self._counts(ctx, attn, mlp)
        for i, (g, n) in enumerate(keep):
            _check_nonempty(i, g, n)
        kept = [(int(g.numel()), int(n.numel())) for g, n in keep]
        if self.dense_inputs:
            for lay, (g, n), (ma, mm) in zip(ctx.layouts, keep, means):
                cut(lay, g, n, ma if self.bias else None, mm if self.bias else None)
        else:  # the widths of the search; units and means re-measured on the pruned outputs of earlier blocks
            def prune(i: int, _block: Any, stats: list[dict[str, Any]]) -> None:
                lay = ctx.layouts[i]
                a, m = self.scores(lay, stats)
                ga = a.reshape(lay.kv_heads, -1).sum(1)
                cut(lay, keep_top(ga, kept[i][0]), keep_top(m, kept[i][1]),
                    fluctuation_stat(stats[0]).mean if self.bias else None,
                    fluctuation_stat(stats[1]).mean if self.bias else None)

            ctx.walk(lambda lay: list(lay.outputs()), self.kinds(), prune, modifies=True,
                     description="flap: prune")
        return {"kept_groups": [k[0] for k in kept], "kept_neurons": [k[1] for k in kept]}


def _check_nonempty(i: int, groups: torch.Tensor, neurons: torch.Tensor) -> None:
    if groups.numel() == 0:
        raise WidthError(f"the sparsity would remove every attention head of layer {i}; lower the sparsity, or use "
                         f"method='shortgpt' to remove whole layers")
    if neurons.numel() == 0:
        raise WidthError(f"the sparsity would remove every MLP neuron of layer {i}; lower the sparsity")


def _layer_keep(scores: torch.Tensor, remove: int) -> torch.Tensor:
    """The reference's per-layer rule: ``thresh = sort(scores)[remove]``, keep ``scores >= thresh``."""
    if remove <= 0:
        return torch.arange(scores.numel())
    if remove >= scores.numel():
        return torch.empty(0, dtype=torch.long)
    thr = torch.sort(scores).values[remove]
    return (scores >= thr).nonzero().squeeze(1)


def _global_keep(per_layer: list[torch.Tensor], remove: int) -> list[torch.Tensor]:
    """The reference's AL-MM rule: ``thres = sort(all, descending)[-remove]``, keep ``scores > thres``."""
    if remove <= 0:
        return [torch.arange(x.numel()) for x in per_layer]
    flat = torch.sort(torch.cat(per_layer), descending=True).values
    thr = flat[-remove]
    return [(x > thr).nonzero().squeeze(1) for x in per_layer]
