"""rrsis_geo: referring remote sensing image segmentation over georeferenced rasters."""

__version__ = "0.1.0"
