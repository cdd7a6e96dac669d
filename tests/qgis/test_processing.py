"""The Processing algorithm rrsis:segment: processing.run, batch runs, the modeler, cancel."""

import tempfile
from pathlib import Path

import pytest

from qgis.core import (
    QgsApplication,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingModelAlgorithm,
    QgsProcessingModelChildAlgorithm,
    QgsProcessingModelChildParameterSource,
    QgsProcessingModelParameter,
    QgsProcessingParameterRasterLayer,
    QgsProject,
    QgsRasterLayer,
    QgsVectorLayer,
)

from plugin_test_helpers import ORIGIN, SCENE_CRS, square_bounds, truncated_scene, write_scene

ALGORITHM = "rrsis:segment"


@pytest.fixture
def provider(qgis_app):
    """The plugin's provider registered the way initProcessing() does it (no GUI needed)."""
    import rrsis_qgis

    plugin = rrsis_qgis.classFactory(None)
    plugin.initProcessing()
    yield plugin.provider
    plugin.unload()


def _layer_bounds(uri):
    layer = QgsVectorLayer(uri, "result", "ogr")
    assert layer.isValid(), uri
    extent = layer.extent()
    return layer, (extent.xMinimum(), extent.yMinimum(), extent.xMaximum(), extent.yMaximum())


@pytest.mark.slow  # each run starts a worker process (torch import, model load)
def test_processing_run_writes_one_layer_per_expression(provider, scene, bright_checkpoint, tmp_path):
    import processing

    output = tmp_path / "result.gpkg"
    result = processing.run(
        ALGORITHM,
        {
            "INPUT": str(scene),
            "EXPRESSIONS": "bright square\n\nbuilding along the road\n",
            "CHECKPOINT": str(bright_checkpoint),
            "OUTPUT": str(output),
        },
    )
    assert result["OUTPUT"] == str(output) and output.is_file()
    assert result["FEATURE_COUNT"] == 2
    assert len(result["LAYERS"]) == 2
    names = []
    for uri in result["LAYERS"]:
        layer, bounds = _layer_bounds(uri)
        assert layer.crs().authid() == SCENE_CRS
        assert bounds == pytest.approx(square_bounds(), abs=1e-6)
        names.append(next(layer.getFeatures())["expression"])
    assert names == ["bright square", "building along the road"]


@pytest.mark.slow  # each run starts a worker process (torch import, model load)
def test_processing_extent_threshold_and_non_file_layer(provider, bright_checkpoint, tmp_path):
    """A virtual raster (not a file: exported first), one band read as RGB, clipped by EXTENT."""
    import processing

    source = write_scene(tmp_path / "gray.tif", bands=1)
    size = 256
    uri = (
        f"?crs={SCENE_CRS}&extent={ORIGIN[0]},{ORIGIN[1] - size},{ORIGIN[0] + size},{ORIGIN[1]}"
        f"&width={size}&height={size}&formula=%22g@1%22&g:uri={source}&g:provider=gdal"
    )
    virtual = QgsRasterLayer(uri, "virtual", "virtualraster")
    assert virtual.isValid() and virtual.dataProvider().name() == "virtualraster"
    QgsProject.instance().addMapLayer(virtual)
    minx, miny, maxx, maxy = square_bounds()
    cut = minx + 40  # the extent keeps the right part of the square only
    workdirs_before = set(Path(tempfile.gettempdir()).glob("rrsis-processing-*"))
    try:
        result = processing.run(
            ALGORITHM,
            {
                "INPUT": virtual,
                "EXPRESSIONS": "bright square",
                "CHECKPOINT": str(bright_checkpoint),
                "THRESHOLD": 0.3,
                "EXTENT": f"{cut},{ORIGIN[0] + size},{ORIGIN[1] - size},{ORIGIN[1]} [{SCENE_CRS}]",
                "BANDS": "1,1,1",
                "OUTPUT": str(tmp_path / "virtual.gpkg"),
            },
        )
    finally:
        QgsProject.instance().removeMapLayer(virtual.id())
    (uri,) = result["LAYERS"]
    _, bounds = _layer_bounds(uri)
    assert bounds == pytest.approx((cut, miny, maxx, maxy), abs=1e-6)
    assert set(Path(tempfile.gettempdir()).glob("rrsis-processing-*")) == workdirs_before  # export removed


@pytest.mark.slow  # each run starts a worker process (torch import, model load)
def test_batch_over_two_layers(provider, bright_checkpoint, tmp_path):
    """As the batch dialog does: one context and feedback, one run per row."""
    import processing

    utm = write_scene(tmp_path / "utm.tif")
    geographic = write_scene(tmp_path / "wgs84.tif", crs="EPSG:4326", origin=(55.2, 25.3), pixel=1e-5)
    context, feedback = QgsProcessingContext(), QgsProcessingFeedback()
    context.setProject(QgsProject.instance())
    rows = [
        (utm, SCENE_CRS, square_bounds()),
        (geographic, "EPSG:4326", square_bounds(origin=(55.2, 25.3), pixel=1e-5)),
    ]
    for index, (path, crs, expected) in enumerate(rows):
        output = tmp_path / f"batch_{index}.gpkg"
        result = processing.run(
            ALGORITHM,
            {"INPUT": str(path), "EXPRESSIONS": "bright square", "CHECKPOINT": str(bright_checkpoint), "OUTPUT": str(output)},
            context=context,
            feedback=feedback,
        )
        (uri,) = result["LAYERS"]
        layer, bounds = _layer_bounds(uri)
        assert layer.crs().authid() == crs
        assert bounds == pytest.approx(expected, abs=1e-6 if crs == SCENE_CRS else 1e-10)


@pytest.mark.slow  # each run starts a worker process (torch import, model load)
def test_modeler_can_chain_the_algorithm(provider, scene, bright_checkpoint, tmp_path):
    """A graphical model with rrsis:segment as a child runs like any other model."""
    import processing

    model = QgsProcessingModelAlgorithm("segment scenes", "rrsis tests")
    model.addModelParameter(QgsProcessingParameterRasterLayer("scene", "Scene"), QgsProcessingModelParameter("scene"))
    child = QgsProcessingModelChildAlgorithm(ALGORITHM)
    child.setChildId("segment")
    child.addParameterSources("INPUT", [QgsProcessingModelChildParameterSource.fromModelParameter("scene")])
    child.addParameterSources("EXPRESSIONS", [QgsProcessingModelChildParameterSource.fromStaticValue("bright square")])
    child.addParameterSources("CHECKPOINT", [QgsProcessingModelChildParameterSource.fromStaticValue(str(bright_checkpoint))])
    child.addParameterSources("OUTPUT", [QgsProcessingModelChildParameterSource.fromStaticValue(str(tmp_path / "model.gpkg"))])
    model.addChildAlgorithm(child)
    assert model.validate()[0], model.validate()[1]

    results = processing.run(model, {"scene": str(scene)})

    child_results = results["CHILD_RESULTS"]["segment"]
    assert child_results["FEATURE_COUNT"] == 1
    assert child_results["OUTPUT"] == str(tmp_path / "model.gpkg")
    (uri,) = child_results["LAYERS"]
    _, bounds = _layer_bounds(uri)
    assert bounds == pytest.approx(square_bounds(), abs=1e-6)


def test_cancelled_feedback_writes_nothing(provider, scene, bright_checkpoint, tmp_path):
    import processing

    feedback = QgsProcessingFeedback()
    feedback.cancel()
    output = tmp_path / "never.gpkg"
    result = processing.run(
        ALGORITHM,
        {"INPUT": str(scene), "EXPRESSIONS": "bright square", "CHECKPOINT": str(bright_checkpoint), "OUTPUT": str(output)},
        feedback=feedback,
    )
    assert "LAYERS" not in result
    assert not output.exists()
    # (QGIS itself may leave GDAL's scene.tif.aux.xml statistics beside the raster it opened)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".aux.xml")) == ["scene.tif"]


@pytest.mark.slow  # each run starts a worker process (torch import, model load)
def test_bad_input_is_a_processing_error_with_the_library_message(provider, scene, bright_checkpoint, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException, match="tile size 8 is too small"):
        processing.run(
            ALGORITHM,
            {
                "INPUT": str(scene),
                "EXPRESSIONS": "bright square",
                "CHECKPOINT": str(bright_checkpoint),
                "TILE_SIZE": 8,
                "OUTPUT": str(tmp_path / "bad.gpkg"),
            },
        )
    assert not (tmp_path / "bad.gpkg").exists()
    with pytest.raises(QgsProcessingException, match="at least one referring expression"):
        processing.run(
            ALGORITHM,
            {"INPUT": str(scene), "EXPRESSIONS": " \n ", "CHECKPOINT": str(bright_checkpoint), "OUTPUT": str(tmp_path / "x.gpkg")},
        )


class RecordingFeedback(QgsProcessingFeedback):
    """Keeps what the algorithm logs, as the Processing dialog's log would show it."""

    def __init__(self):
        super().__init__()
        self.infos, self.warnings = [], []

    def pushInfo(self, info):  # noqa: N802 - QGIS API
        self.infos.append(info)
        super().pushInfo(info)

    def pushWarning(self, warning):  # noqa: N802 - QGIS API
        self.warnings.append(warning)
        super().pushWarning(warning)


@pytest.mark.slow  # each run starts a worker process (torch import, model load)
def test_plan_warnings_and_read_faults_reach_the_processing_log(provider, bright_checkpoint, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    cut = truncated_scene(tmp_path / "cut.tif")
    parameters = {"INPUT": str(cut), "EXPRESSIONS": "bright building\nzzqx", "CHECKPOINT": str(bright_checkpoint),
                  "OUTPUT": str(tmp_path / "out.gpkg")}
    with pytest.raises(QgsProcessingException) as caught:
        processing.run(ALGORITHM, parameters, feedback=RecordingFeedback())
    message = str(caught.value)
    assert "cannot read" in message and "cut.tif" in message and "\n" not in message and "Traceback" not in message
    assert "set ON_READ_ERROR to skip" in message
    assert not (tmp_path / "out.gpkg").exists()

    feedback = RecordingFeedback()
    result = processing.run(ALGORITHM, dict(parameters, ON_READ_ERROR=1), feedback=feedback)
    assert result["FEATURE_COUNT"] >= 1
    assert any(line.startswith("'bright building' understood as building") for line in feedback.infos)
    assert any(line.startswith("'zzqx'") for line in feedback.infos)  # every expression has its plan line
    assert any("'zzqx'" in line for line in feedback.warnings)
    assert any("unreadable pixel window(s) were treated as nodata" in line for line in feedback.warnings)


def test_algorithm_metadata(provider):
    algorithm = QgsApplication.processingRegistry().algorithmById(ALGORITHM)
    assert algorithm.displayName() == "Segment by referring expression"
    names = [p.name() for p in algorithm.parameterDefinitions()]
    for name in ("INPUT", "EXPRESSIONS", "CHECKPOINT", "THRESHOLD", "EXTENT", "TILE_SIZE", "OVERLAP", "ON_READ_ERROR", "FORCE_GSD", "OUTPUT"):
        assert name in names
    assert algorithm.parameterDefinition("CHECKPOINT").flags() & algorithm.parameterDefinition("CHECKPOINT").FlagOptional
    assert algorithm.parameterDefinition("EXPRESSIONS").multiLine()


def test_every_processing_option_of_the_schema_is_a_parameter(provider):
    """Parameters derive from rrsis_geo.options: name, default, range and choices."""
    from rrsis_geo.options import PROCESSING, specs

    algorithm = QgsApplication.processingRegistry().algorithmById(ALGORITHM)
    for spec in specs(PROCESSING):
        parameter = algorithm.parameterDefinition(spec.processing)
        assert parameter is not None, f"Processing has no parameter for {spec.name}"
        if spec.choices:
            assert len(parameter.options()) == len(spec.choices)
            assert parameter.defaultValue() == spec.choices.index(spec.default)
        elif spec.kind is float and spec.high is not None:
            assert parameter.maximum() == spec.high and parameter.defaultValue() == spec.default


def test_a_bad_option_names_its_parameter(provider, scene, bright_checkpoint, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    parameters = {"INPUT": str(scene), "EXPRESSIONS": "bright", "CHECKPOINT": str(bright_checkpoint),
                  "OUTPUT": str(tmp_path / "out.gpkg"), "BANDS": "4,3"}
    with pytest.raises(QgsProcessingException) as caught:
        processing.run(ALGORITHM, parameters, feedback=RecordingFeedback())
    assert str(caught.value) == "bands '4,3' is not 3 comma-separated numbers; set BANDS (e.g. 4,3,2)"
    assert not (tmp_path / "out.gpkg").exists()
