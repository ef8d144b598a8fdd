"""What a pruning call did, per layer and overall; prints as a table.  One report for every front door
(:func:`secateurs.prune`, :func:`secateurs.llm.prune`)."""
from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class LayerReport:
    """One target: its name, size, kept weights, (out, in) view, planned sparsity or N:M, and block index."""

    name: str
    numel: int
    kept: int
    shape: tuple[int, int] = (0, 0)
    target: float = 0.0
    pattern: str = "unstructured"
    block: int | None = None

    @property
    def sparsity(self) -> float:
        return 1 - self.kept / self.numel if self.numel else 0.0


@dataclass
class PruneReport:
    """Settings, per-layer results and (for calibrated runs) timings and calibration details."""

    method: str
    allocation: str
    pattern: str
    target_sparsity: float
    layers: list[LayerReport] = field(default_factory=list)
    scope: str = "layer"
    solver: str | None = None
    method_options: dict[str, Any] = field(default_factory=dict)
    allocation_options: dict[str, Any] = field(default_factory=dict)
    solver_options: dict[str, Any] = field(default_factory=dict)
    blocks_path: str | None = None
    block_targets: list[str] = field(default_factory=list)  # per block, its layers' planned sparsity (or N:M)
    block_seconds: list[float] = field(default_factory=list)
    seconds: float = 0.0
    device: str = "cpu"
    dtype: str | None = None  # the targeted weights' dtype as the model holds them (blocks may run in float32)
    skipped: list[str] = field(default_factory=list)  # layers never called on the calibration data (left dense)
    calibration: dict[str, Any] | None = None
    model_sparsity: float | None = None  # zeros among all parameters, for front doors that report it

    @property
    def numel(self) -> int:
        return sum(l.numel for l in self.layers)

    @property
    def kept(self) -> int:
        return sum(l.kept for l in self.layers)

    @property
    def sparsity(self) -> float:
        """Overall fraction of the targeted weights that are zero."""
        return 1 - self.kept / self.numel if self.numel else 0.0

    overall_sparsity = sparsity

    def to_dict(self) -> dict:
        """JSON-ready dictionary (``--json``, secateurs.json)."""
        d = asdict(self)
        d["layers"] = [{**asdict(l), "shape": list(l.shape), "sparsity": l.sparsity} for l in self.layers]
        d.update(numel=self.numel, kept=self.kept, sparsity=self.sparsity, overall_sparsity=self.sparsity)
        return d

    def table(self) -> Any:
        from rich.table import Table

        solver = f" / {self.solver}" if self.solver else ""
        t = Table(title=f"{self.method} / {self.scope} / {self.allocation} / {self.pattern}{solver}: "
                        f"sparsity {self.sparsity:.4f}")
        for col in ("layer", "weights", "target", "kept", "sparsity"):
            t.add_column(col, justify="left" if col == "layer" else "right")
        for l in self.layers:
            target = l.pattern if ":" in l.pattern else f"{l.target:.4f}"
            t.add_row(l.name, f"{l.numel:,}", target, f"{l.kept:,}", f"{l.sparsity:.4f}")
        t.add_row("[bold]overall", f"{self.numel:,}", f"{self.target_sparsity:.4f}", f"{self.kept:,}",
                  f"{self.sparsity:.4f}")
        if self.model_sparsity is not None:
            t.add_row("whole model (all parameters)", "", "", "", f"{self.model_sparsity:.4f}")
        return t

    def __rich__(self) -> Any:
        return self.table()

    def __str__(self) -> str:
        from rich.console import Console

        buf = io.StringIO()
        Console(file=buf, width=110, color_system=None).print(self.table())
        return buf.getvalue()
