"""Using a trained generator: sample files (sample) and paired translation of image folders
(translate). Import the modules; this package imports nothing."""
