"""Spatial relations as instance-level rules (RRSIS paper, section III-C, step 3).

A relation phrase ("building along the road") is decided per instance: the subject mask is split
into connected components and each component is kept or dropped by a *rule* that looks at the
relation's object classes around it. The paper names two kinds of relation:

* **adjacency** ("with", "along", "along with"): the instance comes within a buffer of the object;
* **containment** ("in", "on", "surrounded by"): enough of the instance's boundary touches the
  object.

Buffers are metres, turned into pixels with the crop's ground sample distance (see
:mod:`training.builder.geometry` for what "within ``b`` m" means), so the same scene at two GSDs
gets the same decisions. A boundary pixel is an instance pixel with a 4-neighbour outside the
instance inside the crop (the crop's own edge is unknown ground and never counts either way).

Every rule has the signature ``rule(instances, ctx, relation) -> keep`` (one bool per instance)
and reads its thresholds from the :class:`~training.builder.config.RelationSpec`, whose defaults
come from the rule's registration below (``classes.yaml`` may override them per relation).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from training.builder.geometry import CropContext, Instances

if TYPE_CHECKING:  # config imports RULES from here at call time; keep the import one-way
    from training.builder.config import RelationSpec

RuleFn = Callable[[Instances, CropContext, "RelationSpec"], np.ndarray]


@dataclass(frozen=True)
class Rule:
    """A registered rule and the default thresholds a relation gets when it names none."""

    name: str
    kind: str  # "adjacency" or "containment"
    fn: RuleFn
    buffer_m: float
    min_share: float = 0.0
    min_contact_m: float = 0.0

    @property
    def description(self) -> str:
        return " ".join((self.fn.__doc__ or "").split())


RULES: dict[str, Rule] = {}


def rule(name: str, kind: str, *, buffer_m: float, min_share: float = 0.0,
         min_contact_m: float = 0.0) -> Callable[[RuleFn], RuleFn]:
    """Register ``fn`` as the rule ``name`` with its default thresholds."""

    def register(fn: RuleFn) -> RuleFn:
        RULES[name] = Rule(name, kind, fn, buffer_m, min_share, min_contact_m)
        return fn

    return register


# ------------------------------------------------------------------------------------ primitives
def reaches(instances: Instances, near: np.ndarray) -> np.ndarray:
    """Per instance: does any of its pixels lie in ``near``?"""
    return instances.per_instance(near) > 0


def contact_length_m(instances: Instances, near: np.ndarray, gsd_m: float) -> np.ndarray:
    """Per instance: length (m) of its boundary lying in ``near`` (boundary pixels × GSD)."""
    return instances.per_instance(instances.boundary() & near) * gsd_m


def boundary_share(instances: Instances, near: np.ndarray) -> np.ndarray:
    """Per instance: share of its boundary pixels lying in ``near``; NaN for an instance with no
    boundary inside the crop (it fills the crop, so nothing is known about its surroundings)."""
    boundary = instances.boundary()
    total = instances.per_instance(boundary)
    touching = instances.per_instance(boundary & near)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, touching / np.maximum(total, 1), np.nan)


def keep_adjacent(instances: Instances, ctx: CropContext, relation: "RelationSpec") -> np.ndarray:
    """Adjacency: keep instances whose gap to the object is at most ``buffer_m`` and, when
    ``min_contact_m`` > 0, whose boundary runs within the buffer for at least that length."""
    near = ctx.near(relation.object_classes, relation.buffer_m)
    keep = reaches(instances, near)
    if relation.min_contact_m > 0:
        keep &= contact_length_m(instances, near, ctx.gsd_m) >= relation.min_contact_m - 1e-9
    return keep


def keep_enclosed(instances: Instances, ctx: CropContext, relation: "RelationSpec") -> np.ndarray:
    """Containment: keep instances with at least ``min_share`` of their boundary within
    ``buffer_m`` of the object."""
    share = boundary_share(instances, ctx.near(relation.object_classes, relation.buffer_m))
    return np.nan_to_num(share, nan=-1.0) >= relation.min_share - 1e-9


# ------------------------------------------------------------------------------ generic rules
@rule("adjacent_to", "adjacency", buffer_m=2.0)
def adjacent_to(instances: Instances, ctx: CropContext, relation: "RelationSpec") -> np.ndarray:
    """Keeps each instance with a gap of at most buffer_m (default 2 m) to the object and, if
    min_contact_m > 0, at least that length of boundary within the buffer."""
    return keep_adjacent(instances, ctx, relation)


@rule("enclosed_by", "containment", buffer_m=1.0, min_share=0.75)
def enclosed_by(instances: Instances, ctx: CropContext, relation: "RelationSpec") -> np.ndarray:
    """Keeps each instance at least min_share (default 75 %) of whose boundary lies within
    buffer_m (default 1 m) of the object."""
    return keep_enclosed(instances, ctx, relation)


# ------------------------------------------------------------------- the paper's seven relations
@rule("in_the_parking_area", "containment", buffer_m=0.5, min_share=0.5)
def in_the_parking_area(instances: Instances, ctx: CropContext, relation: "RelationSpec") -> np.ndarray:
    """Keeps each instance (a vehicle) at least half (min_share 0.5) of whose boundary lies
    within 0.5 m (buffer_m) of a parking place: parked inside the lot, not merely beside it."""
    return keep_enclosed(instances, ctx, relation)


@rule("with_a_parking_lot", "adjacency", buffer_m=3.0)
def with_a_parking_lot(instances: Instances, ctx: CropContext, relation: "RelationSpec") -> np.ndarray:
    """Keeps each instance (a building) that comes within 3 m (buffer_m) of a parking place,
    e.g. across a sidewalk; any length of contact suffices."""
    return keep_adjacent(instances, ctx, relation)


@rule("driving_on_the_road", "containment", buffer_m=0.5, min_share=0.5)
def driving_on_the_road(instances: Instances, ctx: CropContext, relation: "RelationSpec") -> np.ndarray:
    """Keeps each instance (a vehicle) at least half (min_share 0.5) of whose boundary lies
    within 0.5 m (buffer_m) of the road: on the carriageway, not parked off it or far away."""
    return keep_enclosed(instances, ctx, relation)


@rule("along_the_road", "adjacency", buffer_m=3.0, min_contact_m=2.0)
def along_the_road(instances: Instances, ctx: CropContext, relation: "RelationSpec") -> np.ndarray:
    """Keeps each instance whose gap to the road is at most 3 m (buffer_m) along at least 2 m
    (min_contact_m) of its boundary: it lines the road rather than touching it at a corner."""
    return keep_adjacent(instances, ctx, relation)


@rule("along_with_tree", "adjacency", buffer_m=1.0, min_contact_m=2.0)
def along_with_tree(instances: Instances, ctx: CropContext, relation: "RelationSpec") -> np.ndarray:
    """Keeps each instance whose gap to a tree is at most 1 m (buffer_m) along at least 2 m
    (min_contact_m) of its boundary: trees line it."""
    return keep_adjacent(instances, ctx, relation)


@rule("on_the_road", "containment", buffer_m=0.5, min_share=0.5)
def on_the_road(instances: Instances, ctx: CropContext, relation: "RelationSpec") -> np.ndarray:
    """Keeps each instance (e.g. a road marking) at least half (min_share 0.5) of whose boundary
    lies within 0.5 m (buffer_m) of the road surface."""
    return keep_enclosed(instances, ctx, relation)


@rule("surrounded_by_building", "containment", buffer_m=2.0, min_share=0.75)
def surrounded_by_building(instances: Instances, ctx: CropContext,
                           relation: "RelationSpec") -> np.ndarray:
    """Keeps each instance at least 75 % (min_share) of whose boundary lies within 2 m
    (buffer_m) of a building: a courtyard, not a patch open on one side."""
    return keep_enclosed(instances, ctx, relation)


def apply_relation(instances: Instances, ctx: CropContext, relation: "RelationSpec") -> np.ndarray:
    """Mask of the instances the relation's rule keeps."""
    if instances.count == 0:
        return np.zeros(ctx.shape, dtype=bool)
    keep = np.asarray(RULES[relation.rule].fn(instances, ctx, relation), dtype=bool)
    return instances.select(keep)
