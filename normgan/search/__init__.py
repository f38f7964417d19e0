"""λ selection: grid, random and Bayesian (TPE) search on Optuna with k-fold cross-validation.

from normgan.search import run_search
run_search(config="edges2digit", params=["regularizers.l1.weight=[0,1,10,100]"], folds=3, metric="psnr")
"""

from normgan.search.runner import Search, run_search
from normgan.search.space import TERM_PRESETS, Param, parse_param, parse_params
from normgan.search.trainers import TRAINERS

__all__ = ["Search", "run_search", "Param", "parse_param", "parse_params", "TERM_PRESETS", "TRAINERS"]
