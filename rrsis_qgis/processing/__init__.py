"""Processing provider: referring segmentation for batch mode, the graphical modeler and scripts."""
