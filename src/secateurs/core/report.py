"""What a pruning call did, per layer and overall; prints as a table."""
from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field


@dataclass
class LayerReport:
    name: str
    numel: int
    kept: int

    @property
    def sparsity(self) -> float:
        return 1 - self.kept / self.numel if self.numel else 0.0


@dataclass
class PruneReport:
    method: str
    allocation: str
    pattern: str
    target_sparsity: float
    layers: list[LayerReport] = field(default_factory=list)

    @property
    def numel(self) -> int:
        return sum(l.numel for l in self.layers)

    @property
    def kept(self) -> int:
        return sum(l.kept for l in self.layers)

    @property
    def sparsity(self) -> float:
        """Overall fraction of the targeted weights that are zero-masked."""
        return 1 - self.kept / self.numel if self.numel else 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["layers"] = [{**asdict(l), "sparsity": l.sparsity} for l in self.layers]
        d.update(numel=self.numel, kept=self.kept, sparsity=self.sparsity)
        return d

    def table(self):
        from rich.table import Table

        t = Table(title=f"{self.method} / {self.allocation} / {self.pattern}: sparsity {self.sparsity:.4f}")
        for col in ("layer", "weights", "kept", "sparsity"):
            t.add_column(col, justify="left" if col == "layer" else "right")
        for l in self.layers:
            t.add_row(l.name, f"{l.numel:,}", f"{l.kept:,}", f"{l.sparsity:.4f}")
        t.add_row("[bold]total", f"{self.numel:,}", f"{self.kept:,}", f"{self.sparsity:.4f}")
        return t

    def __str__(self) -> str:
        from rich.console import Console

        buf = io.StringIO()
        Console(file=buf, width=100, color_system=None).print(self.table())
        return buf.getvalue()
