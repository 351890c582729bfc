"""Training (DeeR recipe); `deer-vla train`. Thresholds are calibrated by `deer_vla.commands.calibrate`."""
