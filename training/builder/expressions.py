"""Referring expressions and their masks for one crop (RRSIS paper, section III-B/C).

The templates:

* ``category`` — "vehicle": the union of the category's classes (identity or inclusion);
* ``attribute_category`` — "light-duty vehicle": a class subset of the category, or its instances
  within an area range ("large building");
* ``category_relation`` — "building along the road": the category's instances kept by the rule;
* ``attribute_category_relation`` — "light-duty vehicle in the parking area".

Masks from classes alone are exact unions of class masks. Masks from instances (area attributes,
relations) leave out instances under ``filters.min_instance_area_m2`` (label noise).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from rrsis_geo.errors import InputError
from training.builder.config import AttributeSpec, BuilderConfig, RelationSpec
from training.builder.geometry import CropContext, Instances
from training.builder.relations import apply_relation


@dataclass(frozen=True)
class Expression:
    """One expression the configuration can produce, with what it is made of."""

    text: str
    template: str
    category: str
    classes: frozenset[str]
    attribute: AttributeSpec | None = None
    relation: RelationSpec | None = None


def plan_expressions(config: BuilderConfig) -> list[Expression]:
    """Every expression the templates of ``config`` can generate, in a stable order."""
    plan: list[Expression] = []
    for template in config.templates:
        if template == "category":
            plan += [Expression(word, template, word, classes)
                     for word, classes in config.categories.items()]
        elif template == "attribute_category":
            plan += [Expression(a.phrase, template, a.category, a.classes, attribute=a)
                     for a in config.attributes]
        elif template == "category_relation":
            plan += [Expression(f"{s} {r.phrase}", template, s, config.categories[s], relation=r)
                     for r in config.relations for s in r.subjects]
        elif template == "attribute_category_relation":
            plan += [Expression(f"{a.phrase} {r.phrase}", template, s, a.classes, attribute=a, relation=r)
                     for r in config.relations for s in r.subjects for a in config.attributes_of(s)]
    seen: set[str] = set()
    for expression in plan:
        if expression.text in seen:
            raise InputError(f"{config.source}: the expression {expression.text!r} would be generated "
                             "twice (a category, attribute or relation phrase repeats another); "
                             "rename one of them")
        seen.add(expression.text)
    return plan


class ExpressionMasker:
    """Computes expression masks on one crop, sharing instances between expressions."""

    def __init__(self, ctx: CropContext) -> None:
        self.ctx = ctx
        self._subjects: dict[tuple, np.ndarray] = {}
        self._instances: dict[tuple, Instances] = {}

    def subject_mask(self, expression: Expression) -> np.ndarray:
        """Mask before any relation: the class union, filtered by the attribute's area range."""
        key = self._subject_key(expression)
        if key not in self._subjects:
            mask = self.ctx.mask(expression.classes)
            attribute = expression.attribute
            if attribute is not None and attribute.filters_instances:
                instances = self.ctx.instances(mask)
                areas = self.ctx.areas_m2(instances)
                keep = np.ones(instances.count, dtype=bool)
                if attribute.min_area_m2 is not None:
                    keep &= areas >= attribute.min_area_m2
                if attribute.max_area_m2 is not None:
                    keep &= areas <= attribute.max_area_m2
                mask = instances.select(keep)
            self._subjects[key] = mask
        return self._subjects[key]

    def mask(self, expression: Expression) -> np.ndarray:
        """The expression's mask on this crop (source resolution)."""
        subject = self.subject_mask(expression)
        if expression.relation is None or not subject.any():
            return subject
        key = self._subject_key(expression)
        if key not in self._instances:
            self._instances[key] = self.ctx.instances(subject)
        return apply_relation(self._instances[key], self.ctx, expression.relation)

    @staticmethod
    def _subject_key(expression: Expression) -> tuple:
        attribute = expression.attribute
        area = (attribute.min_area_m2, attribute.max_area_m2) if attribute is not None else (None, None)
        return (expression.classes, area)


def crop_expressions(ctx: CropContext, plan: list[Expression], min_area_m2: float = 0.0,
                     min_share: float = 0.0) -> Iterator[tuple[Expression, np.ndarray]]:
    """The expressions of ``plan`` whose mask on this crop is non-empty and at least
    ``min_area_m2`` square metres and ``min_share`` of the crop."""
    masker = ExpressionMasker(ctx)
    min_px = max(1.0, min_area_m2 / ctx.pixel_area_m2 - 1e-9)
    total = ctx.shape[0] * ctx.shape[1]
    for expression in plan:
        mask = masker.mask(expression)
        area = int(np.count_nonzero(mask))
        if area >= min_px and area >= min_share * total - 1e-9:
            yield expression, mask
