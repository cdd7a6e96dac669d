"""Build RefSegRS-style referring segmentation datasets from semantic label rasters.

The method of the RRSIS paper (Yuan et al., section III), made a tool: crop scenes with a sliding
window, generate expressions from templates (category, attribute + category, category + spatial
relation, all three) over a class vocabulary, derive each expression's mask from the labels by
class algebra and instance-level relation rules, and write the RefSegRS layout read by
``training.datasets``.

Command line: ``python -m training.builder --help``. Library::

    from training.builder import SceneSpec, build_dataset, load_config
    stats = build_dataset([SceneSpec(image, labels, "train")], load_config("classes.yaml"), "out/")
"""

from training.builder.build import build_dataset, plan_crops
from training.builder.cli import load_scenes, main
from training.builder.config import CONFIG_DIR, BuilderConfig, load_config, parse_config
from training.builder.expressions import Expression, plan_expressions
from training.builder.relations import RULES
from training.builder.scenes import SceneSpec

__all__ = ["BuilderConfig", "CONFIG_DIR", "Expression", "RULES", "SceneSpec", "build_dataset",
           "load_config", "load_scenes", "main", "parse_config", "plan_crops", "plan_expressions"]
