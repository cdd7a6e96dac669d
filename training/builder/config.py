"""The class mapping (``classes.yaml``): label encoding, vocabulary, attributes, relations, tiling.

One YAML file says everything the builder needs to know about a label raster and the language to
generate over it. The schema (see ``configs/skyscapes.yaml`` for the paper's full example)::

    name: skyscapes                    # shown in stats.json
    classes:                           # every value (or colour) the label raster may contain
      - {name: car, value: 11}         # integer label rasters: value (or list of values)
      - {name: building, color: "#3C1098"}   # colour-coded labels: colour (or list); not both kinds
      - {name: unlabeled, value: 0, ignore: true}  # ignored: never a target, never an object
    categories:                        # expression word -> identity or inclusion union of classes
      vehicle: [car, van, truck]
    objects:                           # optional: extra words usable only as relation objects
      parking area: [paved parking place]
    attributes:                        # attribute word -> {category: class subset or instance filter}
      light-duty: {vehicle: [car, van]}
      large: {building: {min_area_m2: 400}}
    relations:
      - phrase: driving on the road    # appended to the category: "vehicle driving on the road"
        rule: driving_on_the_road      # a rule of training.builder.relations.RULES (default: phrase)
        object: road                   # a category/object word or a list of classes
        subjects: [vehicle, car]
        buffer_m: 0.5                  # optional, else the rule's default
        min_share: 0.5                 # optional (containment rules)
        min_contact_m: 0               # optional (adjacency rules)
    templates: [category, attribute_category, category_relation, attribute_category_relation]
    tiling: {window: 1200, stride: 600, output_size: 512}
    filters: {min_area_m2: 2, min_share: 0, min_instance_area_m2: 0.5, max_ignored_share: 0.5}
    split: {fractions: {train: 0.7, val: 0.15, test: 0.15}, block_size: 2400, seed: 0}
    connectivity: 8

Every mistake raises :class:`rrsis_geo.errors.InputError` naming the file and the entry.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rrsis_geo.errors import InputError

CONFIG_DIR = Path(__file__).with_name("configs")  # the shipped mappings (skyscapes, dubai)
TEMPLATES = ("category", "attribute_category", "category_relation", "attribute_category_relation")
SPLITS = ("train", "val", "test")
_COLOR_RE = re.compile(r"^#?([0-9a-fA-F]{6})$")
_PHRASE_RE = re.compile(r"^[a-z0-9][a-z0-9 '\-]*$")


@dataclass(frozen=True)
class ClassSpec:
    """One class of the label raster: its label values or packed 0xRRGGBB colours."""

    name: str
    values: tuple[int, ...] = ()
    colors: tuple[int, ...] = ()
    ignore: bool = False


@dataclass(frozen=True)
class AttributeSpec:
    """``{word} {category}``: the category's instances restricted to classes and/or an area range."""

    word: str
    category: str
    classes: frozenset[str]
    min_area_m2: float | None = None
    max_area_m2: float | None = None

    @property
    def phrase(self) -> str:
        return f"{self.word} {self.category}"

    @property
    def filters_instances(self) -> bool:
        return self.min_area_m2 is not None or self.max_area_m2 is not None


@dataclass(frozen=True)
class RelationSpec:
    """``{category} {phrase}``: subject instances kept by ``rule`` with respect to the object."""

    phrase: str
    rule: str
    object_term: str
    object_classes: frozenset[str]
    subjects: tuple[str, ...]
    buffer_m: float
    min_share: float
    min_contact_m: float


@dataclass(frozen=True)
class TilingSpec:
    """Square crop windows of ``window`` source pixels every ``stride`` pixels, resized to ``output_size``."""

    window: int = 1200
    stride: int = 600
    output_size: int = 512


@dataclass(frozen=True)
class FilterSpec:
    """What is too small to emit (areas in m² at the source resolution) and which crops to skip."""

    min_area_m2: float = 0.0
    min_share: float = 0.0
    min_instance_area_m2: float = 0.0
    max_ignored_share: float = 0.5


@dataclass(frozen=True)
class SplitSpec:
    """Region split of a scene given no split of its own: blocks of ``block_size`` px shared out."""

    fractions: Mapping[str, float] = field(
        default_factory=lambda: {"train": 0.7, "val": 0.15, "test": 0.15}
    )
    block_size: int | None = None  # None: twice the window
    seed: int = 0


@dataclass(frozen=True)
class BuilderConfig:
    """Everything ``classes.yaml`` says, validated."""

    name: str
    encoding: str  # "integer" or "rgb"
    classes: tuple[ClassSpec, ...]
    categories: Mapping[str, frozenset[str]]
    objects: Mapping[str, frozenset[str]]
    attributes: tuple[AttributeSpec, ...]
    relations: tuple[RelationSpec, ...]
    templates: tuple[str, ...]
    tiling: TilingSpec
    filters: FilterSpec
    split: SplitSpec
    connectivity: int = 8
    source: str = "<memory>"

    @property
    def target_classes(self) -> tuple[str, ...]:
        """Names of the classes that are not ignored, in file order."""
        return tuple(c.name for c in self.classes if not c.ignore)

    def class_index(self) -> dict[str, int]:
        """Index of each non-ignored class in a class map; 0 means ignored or nodata."""
        return {name: i + 1 for i, name in enumerate(self.target_classes)}

    def attributes_of(self, category: str) -> tuple[AttributeSpec, ...]:
        return tuple(a for a in self.attributes if a.category == category)

    def vocabulary(self) -> dict[str, list[str]]:
        """The words the generated expressions are made of (for stats.json and model configs)."""
        return {
            "categories": list(self.categories),
            "attributes": sorted({a.word for a in self.attributes}),
            "relations": [r.phrase for r in self.relations],
        }

    def with_tiling(self, window: int | None = None, stride: int | None = None,
                    output_size: int | None = None) -> "BuilderConfig":
        """A copy with some tiling settings replaced (command-line overrides)."""
        tiling = dataclasses.replace(
            self.tiling,
            **{k: v for k, v in (("window", window), ("stride", stride),
                                 ("output_size", output_size)) if v is not None},
        )
        _check_tiling(tiling, self.source)
        return dataclasses.replace(self, tiling=tiling)

    def with_split(self, fractions: Mapping[str, float] | None = None,
                   block_size: int | None = None, seed: int | None = None) -> "BuilderConfig":
        """A copy with some region-split settings replaced (command-line overrides)."""
        split = SplitSpec(
            fractions=dict(fractions) if fractions is not None else dict(self.split.fractions),
            block_size=block_size if block_size is not None else self.split.block_size,
            seed=seed if seed is not None else self.split.seed,
        )
        _check_split(split, self.source)
        return dataclasses.replace(self, split=split)


# ----------------------------------------------------------------------------------------- loading
def load_config(path: str | Path) -> BuilderConfig:
    """Read and validate a ``classes.yaml``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"class mapping {path} does not exist; pass --classes with a classes.yaml "
                         "(see training/builder/configs/skyscapes.yaml for an example)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not valid YAML: {exc}") from exc
    return parse_config(data, source=str(path))


def parse_config(data: Any, source: str = "<memory>") -> BuilderConfig:
    """Validate a parsed ``classes.yaml`` mapping (see the module docstring for the schema)."""
    if not isinstance(data, Mapping):
        raise InputError(f"{source}: expected a mapping with at least 'classes' and 'categories'")
    _reject_unknown(data, {"name", "classes", "categories", "objects", "attributes", "relations",
                           "templates", "tiling", "filters", "split", "connectivity"}, source, "top level")
    classes, encoding = _parse_classes(data.get("classes"), source)
    known = {c.name for c in classes if not c.ignore}
    ignored = {c.name for c in classes if c.ignore}

    def union(value: Any, where: str) -> frozenset[str]:
        names = [value] if isinstance(value, str) else value
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise InputError(f"{source}: {where} must be a class name or a non-empty list of class names")
        for name in names:
            if name in ignored:
                raise InputError(f"{source}: {where} uses the ignored class {name!r}; ignored classes "
                                 "cannot be targets or objects")
            if name not in known:
                raise InputError(f"{source}: {where} names the unknown class {name!r}; classes are: "
                                 f"{', '.join(sorted(known))}")
        return frozenset(names)

    categories = _parse_terms(data.get("categories"), source, "categories", union, required=True)
    objects = _parse_terms(data.get("objects") or {}, source, "objects", union, required=False)
    overlap = set(categories) & set(objects)
    if overlap:
        raise InputError(f"{source}: {sorted(overlap)} appear in both 'categories' and 'objects'; "
                         "keep each word in one of them")
    attributes = _parse_attributes(data.get("attributes") or {}, categories, union, source)
    relations = _parse_relations(data.get("relations") or [], categories, objects, union, source)
    templates = _parse_templates(data.get("templates", list(TEMPLATES)), source)
    tiling = TilingSpec(**_section(data, "tiling", TilingSpec, source))
    _check_tiling(tiling, source)
    filters = FilterSpec(**_section(data, "filters", FilterSpec, source))
    for name in ("min_area_m2", "min_share", "min_instance_area_m2", "max_ignored_share"):
        if getattr(filters, name) < 0:
            raise InputError(f"{source}: filters.{name} must be >= 0")
    if filters.min_share > 1 or filters.max_ignored_share > 1:
        raise InputError(f"{source}: filters.min_share and max_ignored_share are shares in 0..1")
    split = SplitSpec(**_section(data, "split", SplitSpec, source))
    _check_split(split, source)
    connectivity = data.get("connectivity", 8)
    if connectivity not in (4, 8):
        raise InputError(f"{source}: connectivity must be 4 or 8 (pixels counted as one instance)")
    return BuilderConfig(
        name=str(data.get("name") or Path(source).stem), encoding=encoding, classes=classes,
        categories=categories, objects=objects, attributes=attributes, relations=relations,
        templates=templates, tiling=tiling, filters=filters, split=split,
        connectivity=connectivity, source=source,
    )


def parse_color(text: Any, where: str) -> int:
    """``"#RRGGBB"`` (or ``RRGGBB``) -> packed ``0xRRGGBB``."""
    match = _COLOR_RE.match(str(text).strip()) if isinstance(text, str) else None
    if match is None:
        raise InputError(f"{where}: colour {text!r} is not of the form '#RRGGBB' (quote it in YAML)")
    return int(match.group(1), 16)


def format_color(packed: int) -> str:
    return f"#{packed:06X}"


# ----------------------------------------------------------------------------------------- helpers
def _reject_unknown(data: Mapping, allowed: Iterable[str], source: str, where: str) -> None:
    unknown = sorted(set(map(str, data)) - set(allowed))
    if unknown:
        raise InputError(f"{source}: unknown key(s) {unknown} in {where}; allowed: {sorted(allowed)}")


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _parse_classes(raw: Any, source: str) -> tuple[tuple[ClassSpec, ...], str]:
    if not isinstance(raw, list) or not raw:
        raise InputError(f"{source}: 'classes' must be a non-empty list of "
                         "{name, value | color, ignore} entries")
    specs: list[ClassSpec] = []
    seen_values: dict[int, str] = {}
    kinds = set()
    for i, entry in enumerate(raw):
        where = f"{source}: classes[{i}]"
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            raise InputError(f"{where} needs a 'name' and a 'value' or 'color'")
        _reject_unknown(entry, {"name", "value", "color", "ignore"}, source, f"classes[{i}]")
        name = entry["name"].strip()
        if not name or any(s.name == name for s in specs):
            raise InputError(f"{where}: class name {name!r} is empty or repeated")
        if ("value" in entry) == ("color" in entry):
            raise InputError(f"{where} ({name}): give exactly one of 'value' (integer labels) "
                             "or 'color' (colour-coded labels)")
        if "value" in entry:
            kinds.add("integer")
            values = _as_list(entry["value"])
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
                raise InputError(f"{where} ({name}): 'value' must be an integer or a list of integers")
            keys = tuple(values)
            spec = ClassSpec(name=name, values=keys, ignore=bool(entry.get("ignore", False)))
        else:
            kinds.add("rgb")
            keys = tuple(parse_color(c, f"{where} ({name})") for c in _as_list(entry["color"]))
            spec = ClassSpec(name=name, colors=keys, ignore=bool(entry.get("ignore", False)))
        for key in keys:
            if key in seen_values:
                raise InputError(f"{where}: {key!r} is given to both {seen_values[key]!r} and {name!r}")
            seen_values[key] = name
        specs.append(spec)
    if len(kinds) != 1:
        raise InputError(f"{source}: classes mix 'value' and 'color'; a label raster is either "
                         "integer-coded or colour-coded")
    if all(s.ignore for s in specs):
        raise InputError(f"{source}: every class is ignored; nothing could be a target")
    if sum(not s.ignore for s in specs) > 65000:
        raise InputError(f"{source}: too many classes")
    return tuple(specs), kinds.pop()


def _check_phrase(text: Any, where: str) -> str:
    if not isinstance(text, str) or not _PHRASE_RE.match(" ".join(text.split()).lower()):
        raise InputError(f"{where}: {text!r} must be lower-case words (letters, digits, '-', \"'\")")
    phrase = " ".join(text.split())
    if phrase != phrase.lower():
        raise InputError(f"{where}: {text!r} must be lower case (expressions are written as given)")
    return phrase


def _parse_terms(raw: Any, source: str, section: str, union, required: bool) -> dict[str, frozenset[str]]:
    if not isinstance(raw, Mapping) or (required and not raw):
        raise InputError(f"{source}: '{section}' must be a mapping of word -> class or list of classes")
    return {_check_phrase(word, f"{source}: {section}"): union(classes, f"{section}.{word}")
            for word, classes in raw.items()}


def _parse_attributes(raw: Any, categories: Mapping[str, frozenset[str]], union,
                      source: str) -> tuple[AttributeSpec, ...]:
    if not isinstance(raw, Mapping):
        raise InputError(f"{source}: 'attributes' must map attribute word -> {{category: classes}}")
    specs = []
    for word, per_category in raw.items():
        word = _check_phrase(word, f"{source}: attributes")
        if not isinstance(per_category, Mapping) or not per_category:
            raise InputError(f"{source}: attributes.{word} must map category -> classes or "
                             "{classes, min_area_m2, max_area_m2}")
        for category, rule in per_category.items():
            where = f"attributes.{word}.{category}"
            if category not in categories:
                raise InputError(f"{source}: {where}: {category!r} is not one of the categories "
                                 f"({', '.join(categories)})")
            if isinstance(rule, Mapping):
                _reject_unknown(rule, {"classes", "min_area_m2", "max_area_m2"}, source, where)
                classes = union(rule["classes"], where) if "classes" in rule else categories[category]
                lo, hi = rule.get("min_area_m2"), rule.get("max_area_m2")
                if lo is None and hi is None and "classes" not in rule:
                    raise InputError(f"{source}: {where} needs classes, min_area_m2 or max_area_m2")
                for v in (lo, hi):
                    if v is not None and (not isinstance(v, (int, float)) or v < 0):
                        raise InputError(f"{source}: {where}: areas must be numbers >= 0 (m²)")
            else:
                classes, lo, hi = union(rule, where), None, None
            if not classes <= categories[category]:
                raise InputError(f"{source}: {where}: {sorted(classes - categories[category])} are not "
                                 f"part of the category {category!r}")
            specs.append(AttributeSpec(word=word, category=category, classes=classes,
                                       min_area_m2=None if lo is None else float(lo),
                                       max_area_m2=None if hi is None else float(hi)))
    return tuple(specs)


def _parse_relations(raw: Any, categories, objects, union, source: str) -> tuple[RelationSpec, ...]:
    from training.builder.relations import RULES  # local: relations imports nothing from here

    if not isinstance(raw, list):
        raise InputError(f"{source}: 'relations' must be a list of {{phrase, rule, object, subjects}}")
    specs = []
    for i, entry in enumerate(raw):
        where = f"relations[{i}]"
        if not isinstance(entry, Mapping):
            raise InputError(f"{source}: {where} must be a mapping")
        _reject_unknown(entry, {"phrase", "rule", "object", "subjects", "buffer_m", "min_share",
                                "min_contact_m"}, source, where)
        phrase = _check_phrase(entry.get("phrase"), f"{source}: {where}.phrase")
        rule_name = entry.get("rule") or phrase.replace(" ", "_").replace("-", "_")
        if rule_name not in RULES:
            raise InputError(f"{source}: {where} ({phrase}): unknown rule {rule_name!r}; rules are: "
                             f"{', '.join(sorted(RULES))}")
        rule = RULES[rule_name]
        obj = entry.get("object")
        if isinstance(obj, str) and obj in categories:
            term, object_classes = obj, categories[obj]
        elif isinstance(obj, str) and obj in objects:
            term, object_classes = obj, objects[obj]
        else:
            object_classes = union(obj, f"{where}.object")
            term = " ∪ ".join(sorted(object_classes))
        subjects = entry.get("subjects")
        if not isinstance(subjects, list) or not subjects:
            raise InputError(f"{source}: {where} ({phrase}) needs a non-empty 'subjects' list of categories")
        for subject in subjects:
            if subject not in categories:
                raise InputError(f"{source}: {where} ({phrase}): subject {subject!r} is not a category")
            if categories[subject] & object_classes:
                raise InputError(f"{source}: {where} ({phrase}): subject {subject!r} shares classes "
                                 f"{sorted(categories[subject] & object_classes)} with the object; a "
                                 "relation needs disjoint subject and object")
        params = {}
        for key in ("buffer_m", "min_share", "min_contact_m"):
            value = entry.get(key, getattr(rule, key))
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise InputError(f"{source}: {where} ({phrase}): {key} must be a number >= 0")
            params[key] = float(value)
        if params["min_share"] > 1:
            raise InputError(f"{source}: {where} ({phrase}): min_share is a share of the boundary, 0..1")
        specs.append(RelationSpec(phrase=phrase, rule=rule_name, object_term=term,
                                  object_classes=object_classes, subjects=tuple(subjects), **params))
    phrases = [s.phrase for s in specs]
    if len(set(phrases)) != len(phrases):
        raise InputError(f"{source}: relation phrases must be unique")
    return tuple(specs)


def _parse_templates(raw: Any, source: str) -> tuple[str, ...]:
    if not isinstance(raw, list) or not raw or not all(t in TEMPLATES for t in raw):
        raise InputError(f"{source}: 'templates' must be a non-empty list drawn from {list(TEMPLATES)}")
    return tuple(dict.fromkeys(raw))


def _section(data: Mapping, key: str, cls: type, source: str) -> dict:
    raw = data.get(key) or {}
    if not isinstance(raw, Mapping):
        raise InputError(f"{source}: '{key}' must be a mapping")
    allowed = {f.name for f in dataclasses.fields(cls)}
    _reject_unknown(raw, allowed, source, key)
    return dict(raw)


def _check_tiling(tiling: TilingSpec, source: str) -> None:
    for name in ("window", "stride", "output_size"):
        value = getattr(tiling, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 8:
            raise InputError(f"{source}: tiling.{name} must be an integer number of pixels >= 8")
    if tiling.stride > tiling.window:
        raise InputError(f"{source}: tiling.stride ({tiling.stride}) is larger than the window "
                         f"({tiling.window}); parts of the scene would never be cropped")


def _check_split(split: SplitSpec, source: str) -> None:
    fractions = split.fractions
    if not isinstance(fractions, Mapping) or not fractions or set(fractions) - set(SPLITS):
        raise InputError(f"{source}: split.fractions must map some of {list(SPLITS)} to shares")
    if any(not isinstance(v, (int, float)) or v < 0 for v in fractions.values()) or \
            sum(fractions.values()) <= 0:
        raise InputError(f"{source}: split.fractions must be numbers >= 0 with a positive sum")
    if split.block_size is not None and (not isinstance(split.block_size, int) or split.block_size < 8):
        raise InputError(f"{source}: split.block_size must be an integer number of pixels >= 8")
    if not isinstance(split.seed, int):
        raise InputError(f"{source}: split.seed must be an integer")
