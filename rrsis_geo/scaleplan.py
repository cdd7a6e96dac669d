"""Per expression, the ground sample distance to run it at; per scene, one pass per scale.

Each expression runs at the scale of the category it names (:mod:`.understanding`); an
expression naming several ("car next to the building") runs at the finest of them; one naming
none at the checkpoint's ``gsd_m``. Expressions whose tile plans over a scene coincide share one
pass over the reader. A scene coarser than :data:`COARSE_FACTOR` times the coarsest GSD an
expression's category was learned at is refused before any tile is read (``force_gsd`` runs it
anyway); finer scenes are downsampled as before (see :func:`rrsis_geo.engine.plan_tiles`).

Everything here is plain data with ``to_dict()`` for JSON (the QGIS worker sends it as is).
Importing this module does not import torch: :func:`check_coarse_early` answers a 300 m/px
scene before the model (and torch) has loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

from .errors import Fix, ScaleError
from .knowledge import CategoryScale, ModelKnowledge
from .raster import RasterSource
from .understanding import Explanation, explain_with, word_matches

if TYPE_CHECKING:  # pragma: no cover
    from .grid import TilePlan
    from .segmenter import Segmenter

#: a scene may be at most this many times coarser than the coarsest GSD a category was learned at
COARSE_FACTOR = 2.0


@dataclass(frozen=True)
class ExpressionPlan:
    """One expression: what the model reads in it and the scale it runs at (None: the scene's GSD)."""

    expression: str
    explanation: Explanation
    scale: Optional[CategoryScale]
    calibration_offset: float = 0.0  # the logit offset of the category it names (rrsis_geo.calibration)

    @property
    def gsd_m(self) -> Optional[float]:
        return None if self.scale is None else self.scale.gsd_m

    @property
    def coarsest_scene_m(self) -> Optional[float]:
        """The coarsest scene GSD this expression accepts without ``force_gsd``."""
        return None if self.scale is None else COARSE_FACTOR * self.scale.max_m

    def to_dict(self) -> Dict[str, Any]:
        return {
            "expression": self.expression,
            "explanation": self.explanation.to_dict(),
            "scale": None if self.scale is None else self.scale.to_dict(),
            "gsd_m": self.gsd_m,
            "coarsest_scene_m": self.coarsest_scene_m,
            "calibration_offset": self.calibration_offset,
        }


@dataclass(frozen=True)
class ScalePass:
    """Expressions that share one pass over a scene's tiles (same tile plan)."""

    gsd_m: Optional[float]
    indexes: Tuple[int, ...]  # positions in the run's expression list (GeoTIFF band - 1)
    expressions: Tuple[str, ...]
    tiles: "TilePlan"

    def to_dict(self) -> Dict[str, Any]:
        rows, cols = self.tiles.grid.shape
        return {
            "gsd_m": self.gsd_m,
            "expressions": list(self.expressions),
            "tiles": len(self.tiles.grid),
            "grid": [rows, cols],
            "footprint_px": list(self.tiles.footprint),
            "resampled": self.tiles.resample,
        }


@dataclass(frozen=True)
class ScenePlan:
    """A scene's passes, finest scale first."""

    scene: str
    scene_gsd_m: Optional[float]
    passes: Tuple[ScalePass, ...]

    @property
    def tiles(self) -> int:
        return sum(len(p.tiles.grid) for p in self.passes)

    def to_dict(self) -> Dict[str, Any]:
        return {"scene": self.scene, "scene_gsd_m": self.scene_gsd_m, "passes": [p.to_dict() for p in self.passes]}


def plan_expressions(segmenter: "Segmenter", texts: Sequence[str]) -> List[ExpressionPlan]:
    """The explanation and scale of each expression (the finest of the categories it names)."""
    knowledge = segmenter.knowledge
    calibration = segmenter.card.calibration
    plans = []
    for text in texts:
        explanation = explain_with(segmenter, text)
        scales = [s for s in (knowledge.scale_of(c) for c in explanation.categories) if s is not None]
        scale = min(scales, key=lambda s: s.gsd_m) if scales else knowledge.scale_of(None)
        offset = calibration.offset_for(explanation.categories) if calibration is not None else 0.0
        plans.append(ExpressionPlan(text, explanation, scale, offset))
    return plans


def scene_gsd(source: RasterSource) -> Optional[float]:
    """The scene's coarser axis GSD in metres (None without a CRS)."""
    return max(source.gsd) if source.gsd else None


def check_coarse(source: RasterSource, expressions: Sequence[ExpressionPlan]) -> None:
    """Refuse (:class:`ScaleError`) the first expression that asks for a finer scene than ``source``."""
    have = scene_gsd(source)
    if have is None:
        return
    for plan in expressions:
        limit = plan.coarsest_scene_m
        if limit is not None and have > limit:
            s = plan.scale
            learned = f"{s.gsd_m:g}" if s.min_m == s.max_m else f"{s.min_m:g}-{s.max_m:g}"
            named = f" ({s.category})" if s.category in plan.explanation.categories and s.category != plan.expression else ""
            raise ScaleError(
                f"'{plan.expression}'{named} needs a scene of {limit:g} m/px or finer (learned at {learned} m/px) but "
                f"{source.path.name} has {have:.3g} m/px; use finer imagery",
                fix=Fix("force_gsd", effect="to run it anyway", alternative=True),
            )


def check_coarse_early(sources: Sequence[RasterSource], texts: Sequence[str], knowledge: ModelKnowledge) -> None:
    """Before the model is loaded: refuse scenes too coarse for *every* category of the checkpoint.

    Only the words of each expression are read here (no text encoder yet): an expression whose
    words name a category is refused with that category's limit, any other with the loosest one.
    """
    scales = list(knowledge.scales.values()) + [s for s in [knowledge.scale_of(None)] if s is not None]
    if not scales:
        return
    loosest = max(scales, key=lambda s: s.max_m)
    for source in sources:
        have = scene_gsd(source)
        if have is None or have <= COARSE_FACTOR * loosest.max_m:
            continue
        plans = []
        for text in texts:
            categories = tuple(dict.fromkeys(c for _, c in word_matches(knowledge, text) if c is not None))
            named = [s for s in (knowledge.scale_of(c) for c in categories) if s is not None]
            scale = min(named, key=lambda s: s.gsd_m) if named else loosest
            plans.append(ExpressionPlan(text, Explanation(text, categories, (), (), bool(categories), 0.0), scale))
        check_coarse(source, plans)


def plan_scene(
    source: RasterSource,
    expressions: Sequence[ExpressionPlan],
    tile_size: int,
    overlap: float,
    *,
    resample: Optional[bool] = None,
    force_gsd: bool = False,
) -> ScenePlan:
    """Check the scene's GSD against every expression, then group the expressions into passes."""
    from .grid import plan_tiles
    if not force_gsd:
        check_coarse(source, expressions)
    passes: Dict[Tuple[Any, ...], List[int]] = {}
    tiles: Dict[Tuple[Any, ...], "TilePlan"] = {}
    by_gsd: Dict[Optional[float], "TilePlan"] = {}
    for i, plan in enumerate(expressions):
        if plan.gsd_m not in by_gsd:
            by_gsd[plan.gsd_m] = plan_tiles(source, tile_size, overlap, model_gsd=plan.gsd_m, resample=resample)
        tp = by_gsd[plan.gsd_m]
        key = (tp.footprint, tp.resample)
        passes.setdefault(key, []).append(i)
        tiles.setdefault(key, tp)
    out = []
    for k, ix in passes.items():
        scales = {expressions[i].gsd_m for i in ix}  # several only when none is resampled (--no-resample)
        gsd = scales.pop() if len(scales) == 1 else None
        out.append(ScalePass(gsd, tuple(ix), tuple(expressions[i].expression for i in ix), tiles[k]))
    out.sort(key=lambda p: p.tiles.footprint[0] * p.tiles.footprint[1])  # finest first
    return ScenePlan(source.path.name, scene_gsd(source), tuple(out))
