"""The dock runs predictions in the background and loads the results."""

import sys
from pathlib import Path

import pytest

from qgis.core import QgsProject, QgsRasterLayer, QgsRectangle, QgsTask
from qgis.PyQt.QtCore import QPoint, Qt
from qgis.PyQt.QtTest import QTest

from plugin_test_helpers import (
    SCENE_CRS,
    run_dock,
    square_bounds,
    truncated_scene,
    wait_for,
    wait_until,
    write_scene,
)
from rrsis_qgis.expressions import load_history


def _add_raster(path, name="scene"):
    layer = QgsRasterLayer(str(path), name)
    assert layer.isValid()
    QgsProject.instance().addMapLayer(layer)
    return layer


def _result_layers(outcome):
    project = QgsProject.instance()
    return [project.mapLayer(layer_id) for layer_id in outcome.layer_ids]


def _bounds(layer):
    extent = layer.extent()
    return (extent.xMinimum(), extent.yMinimum(), extent.xMaximum(), extent.yMaximum())


@pytest.fixture
def dock(plugin, desktop):
    plugin.action.trigger()
    return plugin.dock


@pytest.mark.slow  # each run starts a worker process (torch import, model load)
def test_dock_segments_the_active_layer_into_a_temporary_layer(desktop, dock, scene, bright_checkpoint):
    layer = _add_raster(scene)
    desktop.setActiveLayer(layer)
    assert dock.layer_combo.currentLayer() is layer  # defaults to the active layer
    dock.model_widget.setFilePath(str(bright_checkpoint))
    assert "brightness test model" in dock.model_label.text()
    dock.expression_edit.setText("bright square")

    outcome = run_dock(dock)

    assert outcome.status == "ok", outcome.message
    (result,) = _result_layers(outcome)
    assert result.name() == "bright square"
    assert result.providerType() == "memory"  # temporary: no file behind it
    assert result.crs().authid() == SCENE_CRS
    assert result.featureCount() == 1
    assert _bounds(result) == pytest.approx(square_bounds(), abs=1e-6)
    feature = next(result.getFeatures())
    assert feature["expression"] == "bright square"
    assert feature["area_m2"] == pytest.approx(64 * 64, rel=2e-3)  # ground area: UTM scale 0.9996
    assert feature["score"] > 0.99
    assert result.renderer().symbol().color().alpha() < 255  # the semi-transparent style
    group = QgsProject.instance().layerTreeRoot().findGroup("rrsis — scene")
    assert group is not None and group.findLayer(result.id()) is not None
    assert desktop.layer_view.isExpanded(desktop.layer_view.node2index(group))  # results in sight
    assert not Path(dock.status_label.text()).exists()
    assert "1 polygon" in dock.status_label.text()
    assert load_history()[0] == "bright square"


@pytest.mark.slow  # each run starts a worker process (torch import, model load)
def test_dock_writes_a_geopackage_for_the_canvas_extent(desktop, dock, scene, bright_checkpoint, tmp_path):
    layer = _add_raster(scene)
    minx, miny, maxx, maxy = square_bounds()
    # the canvas shows the left half of the square only
    desktop.canvas.setExtent(QgsRectangle(minx - 40, miny - 40, minx + 32, maxy + 40))
    desktop.canvas.refresh()
    visible = desktop.canvas.extent()
    dock.layer_combo.setLayer(layer)
    dock.model_widget.setFilePath(str(bright_checkpoint))
    dock.expression_edit.setText("bright square; building")
    dock.extent_combo.setCurrentIndex(dock.extent_combo.findData("canvas"))
    dock.file_radio.setChecked(True)
    output = tmp_path / "out" / "result.gpkg"
    output.parent.mkdir()
    dock.output_widget.setFilePath(str(output))

    outcome = run_dock(dock)

    assert outcome.status == "ok", outcome.message
    assert output.is_file()
    results = _result_layers(outcome)
    assert [r.name() for r in results] == ["bright square", "building"]
    for result in results:
        assert result.providerType() == "ogr"
        assert result.source().startswith(str(output))
        assert result.crs().authid() == SCENE_CRS
        assert result.featureCount() == 1
        left, bottom, right, top = _bounds(result)
        assert (left, bottom, top) == pytest.approx((minx, miny, maxy), abs=1e-6)
        assert right == pytest.approx(visible.xMaximum(), abs=1.0)  # clipped at the canvas edge
    assert sorted(p.name for p in output.parent.iterdir()) == ["result.gpkg"]


def test_an_existing_file_is_not_replaced_without_consent(desktop, dock, scene, bright_checkpoint, tmp_path):
    _add_raster(scene)
    output = tmp_path / "keep.gpkg"
    output.write_bytes(b"precious")
    dock.model_widget.setFilePath(str(bright_checkpoint))
    dock.expression_edit.setText("bright square")
    dock.file_radio.setChecked(True)
    dock.output_widget.setFilePath(str(output))
    assert dock.run() is None
    assert "exists" in dock.status_label.text()
    assert output.read_bytes() == b"precious"


@pytest.mark.slow  # each run starts a worker process (torch import, model load)
def test_drawn_rectangle_limits_the_run(desktop, dock, scene, bright_checkpoint):
    layer = _add_raster(scene)
    desktop.zoomToLayer(layer)
    dock.model_widget.setFilePath(str(bright_checkpoint))
    dock.expression_edit.setText("bright square")
    dock.draw_extent()
    viewport = desktop.canvas.viewport()
    to_map = desktop.canvas.getCoordinateTransform()
    minx, miny, maxx, maxy = square_bounds()
    # drag from inside the square, above-left of its centre, to beyond its bottom-right corner
    start = to_map.transform(minx + 20, maxy - 10)
    end = to_map.transform(maxx + 30, miny - 30)
    p0, p1 = QPoint(int(start.x()), int(start.y())), QPoint(int(end.x()), int(end.y()))
    QTest.mousePress(viewport, Qt.LeftButton, Qt.NoModifier, p0)
    QTest.mouseMove(viewport, p1)
    QTest.mouseRelease(viewport, Qt.LeftButton, Qt.NoModifier, p1)
    assert dock.picker.rect is not None
    assert desktop.canvas.mapTool() is None  # the drawing tool is gone once the rectangle is drawn
    drawn = dock.picker.rect

    outcome = run_dock(dock)

    assert outcome.status == "ok", outcome.message
    (result,) = _result_layers(outcome)
    left, bottom, right, top = _bounds(result)
    assert (bottom, right) == pytest.approx((miny, maxx), abs=1e-6)
    assert left == pytest.approx(drawn.xMinimum(), abs=1.0)
    assert top == pytest.approx(drawn.yMaximum(), abs=1.0)


@pytest.mark.slow  # each run starts a worker process (torch import, model load)
def test_cancel_stops_the_task_and_leaves_nothing(desktop, dock, tmp_path, slow_checkpoint):
    big = write_scene(tmp_path / "big.tif", size=512)
    _add_raster(big, "big")
    layers_before = set(QgsProject.instance().mapLayers())
    output = tmp_path / "out" / "cancelled.gpkg"
    output.parent.mkdir()
    dock.model_widget.setFilePath(str(slow_checkpoint))
    dock.expression_edit.setText("bright square")
    dock.file_radio.setChecked(True)
    dock.output_widget.setFilePath(str(output))

    task = dock.run()
    workdir = task.workdir
    wait_for(task.progressChanged)  # the library is running: tiles are being processed
    assert task.status() == QgsTask.Running
    dock.cancel_button.click()
    (outcome,) = wait_for(dock.run_finished)

    assert outcome.status == "cancelled", outcome.message
    # the run stopped between batches; the warm worker was neither killed nor stopped
    assert task.worker.alive() and task.worker.returncode is None and task.worker.state == "idle"
    assert set(QgsProject.instance().mapLayers()) == layers_before
    assert list(output.parent.iterdir()) == []
    assert not workdir.exists()
    assert dock.run_button.isEnabled() and not dock.cancel_button.isEnabled()


def test_options_out_of_the_schema_are_refused_before_any_worker_in_the_docks_words(desktop, dock, scene,
                                                                                    bright_checkpoint):
    _add_raster(scene)
    dock.model_widget.setFilePath(str(bright_checkpoint))
    dock.expression_edit.setText("bright square")
    dock.tile_spin.setValue(8)  # the library's schema refuses tiles under 16 px, with a message saying so

    assert dock.run() is None  # no task, no worker
    expected = "tile size 8 is too small; use at least 16 px (the model's input size is best); change Advanced → Tile size"
    assert dock.status_label.text() == expected
    bar_texts = [item.text() for item in desktop.message_bar.items()]
    assert any(expected in text for text in bar_texts)
    dock.tile_spin.setValue(0)


def test_dock_without_a_default_model_explains(desktop, plugin, monkeypatch):
    from rrsis_qgis import checkpoints

    monkeypatch.setattr(checkpoints, "default_checkpoint", lambda: None)
    dock = plugin.dock
    dock.model_widget.setFilePath("")
    dock.refresh_model()
    assert dock.model_label.text() == checkpoints.NO_DEFAULT_MODEL
    assert not dock.run_button.isEnabled()


@pytest.mark.slow  # each run starts a worker process (torch import, model load)
def test_dock_runs_the_tiny_lgce_checkpoint(desktop, dock, tmp_path, tiny_checkpoint):
    """The library's random-initialised tiny LGCE model, end to end through the dock.

    Its weights are random, so what it finds means nothing; what is known is that its target
    probabilities stay far above 0.01 (they lie around 0.4-0.46 for seed 0), so at the slider's
    lowest non-zero threshold every pixel is target and the result is one polygon covering the
    scene exactly.
    """
    path = write_scene(tmp_path / "small.tif", size=128)
    layer = _add_raster(path, "small")
    dock.layer_combo.setLayer(layer)
    dock.model_widget.setFilePath(str(tiny_checkpoint))
    assert "tiny-lgce" in dock.model_label.text()
    assert "building" in dock.completer.vocabulary  # completion comes from the model's vocabulary
    dock.completer.refresh("red buil")
    assert "red building" in dock.completer.candidates()
    dock.threshold_slider.setValue(1)
    dock.expression_edit.setText("building along the road")

    outcome = run_dock(dock)

    assert outcome.status == "ok", outcome.message
    (result,) = _result_layers(outcome)
    assert result.crs().authid() == SCENE_CRS
    assert result.featureCount() == 1
    assert _bounds(result) == pytest.approx(_bounds(layer), abs=1e-6)
    assert next(result.getFeatures())["model"] == "tiny-lgce"


DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "resources" / "models" / "default"


@pytest.mark.slow  # the hint starts a worker process (torch import, model load)
def test_typing_shows_what_the_model_understands_and_its_scale(desktop, dock, scene):
    assert DEFAULT_MODEL.is_dir(), f"the default model {DEFAULT_MODEL}, which ships with the repository, is missing"
    _add_raster(scene)
    dock.model_widget.setFilePath(str(DEFAULT_MODEL))
    assert dock.hints.requests == 0 and dock.hint_label.isHidden()
    QTest.keyClicks(dock.expression_edit, "houses; solar panels")
    assert dock.hint_label.isHidden()  # nothing asked until the typing pauses
    wait_for(dock.hint_timer.timeout, 5)
    assert dock.hint_label.text() == "'houses' …\n'solar panels' …"  # the worker is on its way
    wait_for(dock.hints.answered)

    houses, panels = dock.hint_label.text().split("\n")
    assert houses.startswith("'houses' understood as building (nearest: 'buildings' 0.67")
    assert houses.endswith("runs at 1.5 m/px")
    assert panels.startswith("⚠ 'solar panels' is far from anything this model learned; nearest: '")
    assert "unpaved land" in dock.completer.vocabulary  # the phrasings the worker reported
    assert dock.hints.requests == 1

    dock.expression_edit.clear()
    QTest.keyClicks(dock.expression_edit, "houses")
    wait_for(dock.hint_timer.timeout, 5)
    assert dock.hint_label.text() == houses  # from the cache: no second worker
    assert dock.hints.requests == 1 and not dock.hints.busy()
    dock.expression_edit.setText("houses; solar panels")  # set, not typed (history, a script): the hint follows
    wait_for(dock.hint_timer.timeout, 5)
    assert dock.hint_label.text() == houses + "\n" + panels and dock.hints.requests == 1
    dock.expression_edit.setText("houses")
    wait_for(dock.hint_timer.timeout, 5)

    coarse = _add_raster(write_scene(scene.with_name("coarse.tif"), size=64, pixel=300.0), "coarse")
    dock.layer_combo.setLayer(coarse)  # the hint follows the layer: 300 m/px is too coarse for 1.5 m/px
    assert dock.hint_label.text() == houses + "; this layer is 300 m/px, too coarse (or tick Advanced → Coarse scenes: Run anyway)"
    outcome = run_dock(dock)
    assert outcome.status == "error"
    assert outcome.message == (
        "'houses' needs a scene of 3.75 m/px or finer (learned at 1.2-1.875 m/px) but coarse.tif has 300 m/px; "
        "use finer imagery, or tick Advanced → Coarse scenes: Run anyway"
    )


def test_without_a_worker_the_hint_stays_quietly_empty(desktop, dock, scene, tmp_path):
    from rrsis_qgis import deps

    _add_raster(scene)
    dock.python_choice = deps.PythonChoice(str(tmp_path / "no-python"), "setting")
    QTest.keyClicks(dock.expression_edit, "houses")
    wait_for(dock.hint_timer.timeout, 5)
    wait_until(lambda: not dock.hints.busy(), 30)  # the thread may answer before a wait_for connects
    assert dock.hint_label.isHidden() and dock.hint_label.text() == ""
    assert "cannot start the worker Python" in dock.hints.failure(str(tmp_path / "no-python"), dock._checkpoint_key())
    assert dock.hints.requests == 1
    wait_for(dock.hint_timer.timeout, 5) if dock.hint_timer.isActive() else None
    dock.show_hint()  # typing on asks no one again
    assert dock.hints.requests == 1 and dock.hint_label.isHidden()


@pytest.mark.slow  # each run starts a worker process (torch import, model load)
def test_a_truncated_geotiff_is_a_message_and_the_next_run_works(desktop, dock, scene, bright_checkpoint, tmp_path):
    cut = _add_raster(truncated_scene(tmp_path / "cut.tif"), "cut")
    dock.layer_combo.setLayer(cut)
    dock.model_widget.setFilePath(str(bright_checkpoint))
    dock.expression_edit.setText("bright square")

    outcome = run_dock(dock)

    assert outcome.status == "error" and outcome.layer_ids == []
    assert "cannot read" in outcome.message and "cut.tif" in outcome.message and "\n" not in outcome.message
    assert "Advanced → Unreadable pixels: Skip" in outcome.message  # the dock's name for the CLI option
    assert any("cannot read" in item.text() for item in desktop.message_bar.items())
    assert dock.task is None and dock.run_button.isEnabled()

    dock.read_error_combo.setCurrentIndex(dock.read_error_combo.findData("skip"))
    outcome = run_dock(dock)
    assert outcome.status == "ok", outcome.message
    assert "warning:" in outcome.message and "unreadable pixel window(s)" in outcome.message

    dock.layer_combo.setLayer(_add_raster(scene))
    outcome = run_dock(dock)
    assert outcome.status == "ok", outcome.message
    assert _result_layers(outcome)[0].featureCount() == 1


def test_a_hint_worker_on_its_way_is_stopped_at_once_on_unload(qgis_app):
    from rrsis_qgis.hints import ExplainService

    service = ExplainService()
    assert service.request(sys.executable, "", ["houses"])
    assert service.worker_started.wait(60)  # the worker process runs (it is importing torch)
    service.shutdown(timeout=60)
    assert not service.busy()
    # stopped, not waited for: a worker left to answer exits with status 0
    assert service.worker.returncode not in (None, 0), service.worker.returncode
    assert service.failures == {}  # a stop is not a failure: no "no hint" later


def test_every_dock_option_of_the_schema_has_its_control(dock):
    """The dock's choices are the library's options (rrsis_geo.options), checked by its schema."""
    from rrsis_geo.options import DOCK, spec, specs
    from rrsis_qgis.dock import DOCK_CONTROLS
    from rrsis_qgis.layers import LayerInputError

    assert set(DOCK_CONTROLS) == {s.name for s in specs(DOCK)}
    assert all(getattr(dock, widget, None) is not None for widget in DOCK_CONTROLS.values())
    for name, combo in (("device", dock.device_combo), ("on_read_error", dock.read_error_combo)):
        assert [combo.itemData(i) for i in range(combo.count())] == list(spec(name).choices)
    dock.read_error_combo.setCurrentIndex(dock.read_error_combo.findData("skip"))
    dock.overlap_spin.setValue(0.5)
    dock.force_gsd_check.setChecked(True)
    dock.tta_check.setChecked(True)
    options = dock.options()
    assert (options.on_read_error, options.overlap, options.force_gsd, options.tta) == ("skip", 0.5, True, True)
    assert options.to_dict("worker")["tta"] is True  # what the worker receives
    dock.tta_check.setChecked(False)
    dock.tile_spin.setValue(8)  # below the schema's 16 px: refused in the dock's own words
    with pytest.raises(LayerInputError, match="tile size 8 is too small.*; change Advanced → Tile size"):
        dock.options()
    dock.tile_spin.setValue(0)
    dock.read_error_combo.setCurrentIndex(0)
    dock.force_gsd_check.setChecked(False)
