"""Studies: a grid of config variants × seeds, trained, scored at equal N and reported.

normgan study stability-digits            # a shipped study (normgan/configs/studies/*.yaml)
normgan study my-study.yaml --workers 2   # a study file, two worker processes

from normgan.study import run_study
run_study(study="stability-digits", workers=1)
"""

from normgan.study.runner import Study, run_study
from normgan.study.spec import StudySpec, load_study, shipped_studies

__all__ = ["Study", "run_study", "StudySpec", "load_study", "shipped_studies"]
