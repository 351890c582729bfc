"""Training (DeeR recipe), threshold calibration; `deer-vla train` / `deer-vla calibrate`."""
