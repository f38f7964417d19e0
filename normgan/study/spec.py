"""A study file: a base config, variants of it and seeds (``normgan study NAME|STUDY.yaml``).

    title: Stability and convergence on MNIST digits
    description: What the study asks, in a paragraph.
    config: mnist                     # a shipped config, or a YAML path relative to this file
    overrides: {train.steps: 1500}    # dotted keys set in every variant
    seeds: 3                          # or a list [0, 1, 2]: train.seed of each run
    metric: fid                       # the primary score (default: the config's eval.best_metric)
    threshold: 2.0                    # steps to reach metric <= threshold (>= for scores to maximize)
    measures: [overfitting]           # extra measures after training (normgan.study.MEASURES)
    variants:                         # name: dotted keys; a term preset (r1, l2_g, spectral…) or
      none: {regularizers.wd_g: none} #   none on a regularizers./constraints. entry
      r1: {regularizers.r1: r1}

Every (variant, seed) is one training run; all share the base config's evaluation settings (the
same N, features, reference split and evaluation seed), so their scores compare.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from normgan.config import load_config, parse_override, read_yaml_file, resolve_config_path, to_dict
from normgan.errors import ConfigError, UserError
from normgan.eval.metric_info import metric_direction
from normgan.search.space import ABSENT, FREE_SECTIONS, TERM_PRESETS, Param, apply_values, check_key
from normgan.tasks.info import TASK_INFO

#: top-level keys of a study file
KEYS = ("title", "description", "config", "overrides", "seeds", "metric", "threshold", "measures", "variants")
#: measures a study may add after training (see normgan.study.runner.MEASURES)
MEASURE_NAMES = ("overfitting",)
#: variant keys that must be the same in every run (set them in ``overrides``)
SHARED_PREFIXES = ("eval.", "train.seed")
NAME_RE = re.compile(r"^[A-Za-z0-9._+-]+$")


def packaged_study_dir() -> Path:
    """The folder of studies that ships inside the package (``normgan study stability-digits``)."""
    from importlib import resources

    return Path(str(resources.files("normgan") / "configs" / "studies"))


def shipped_studies() -> List[str]:
    return sorted(p.stem for p in packaged_study_dir().glob("*.yaml"))


def find_study(name: str) -> Path:
    """A study file path as given, else the shipped study of that name (with or without ``.yaml``)."""
    p = Path(name).expanduser()
    if p.is_file():
        return p
    shipped = packaged_study_dir() / (p.name if p.suffix in (".yaml", ".yml") else f"{p.name}.yaml")
    if shipped.is_file() and len(p.parts) == 1:
        return shipped
    raise UserError(
        f"study '{name}' is neither a file nor a shipped study; give a STUDY.yaml path or one of: "
        f"{', '.join(shipped_studies())}"
    )


def _decode(key: str, value: Any) -> Any:
    """A variant value as its config value: a preset name or ``none`` on a term entry."""
    if isinstance(value, str) and len(key.split(".")) == 2 and key.split(".")[0] in FREE_SECTIONS:
        if value == ABSENT:
            return ABSENT
        if value in TERM_PRESETS:
            return copy.deepcopy(TERM_PRESETS[value])
    return value


def _check_key(base: Dict[str, Any], key: str, *, where: str) -> None:
    try:
        check_key(base, Param(key=key, spec="", kind="grid"))
    except UserError as e:
        raise UserError(str(e).replace(f"--param {key}", f"{where}: {key}", 1)) from None


def _flat_overrides(obj: Any, *, what: str) -> Dict[str, Any]:
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise UserError(f"{what}: expected a mapping of dotted config keys to values, got {type(obj).__name__}")
    return {str(k): v for k, v in obj.items()}


@dataclass
class Variant:
    name: str
    values: Dict[str, Any]  # dotted key -> value as written (presets by name)

    def decoded(self) -> Dict[str, Any]:
        return {k: _decode(k, v) for k, v in self.values.items()}


@dataclass
class StudySpec:
    """A parsed study file (see the module docstring); :meth:`run_tree` gives one run's config."""

    name: str
    path: Optional[Path]
    title: str
    description: str
    config: str
    base: Dict[str, Any]  # the resolved base config with the overrides, as a dict
    overrides: Dict[str, Any]
    seeds: List[int]
    metric: str
    direction: str
    threshold: Optional[float]
    measures: List[str]
    variants: List[Variant] = field(default_factory=list)
    task: str = "unconditional"  # the resolved cfg.task (normgan.tasks.info.TASK_INFO names what it declares)

    @property
    def steps(self) -> int:
        return int(self.base["train"]["steps"])

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(name)

    def run_tree(self, variant: str, seed: int) -> Dict[str, Any]:
        """The config dict of one run: the base, the variant's values, ``train.seed``."""
        return apply_values(apply_values(self.base, self.variant(variant).decoded()), {"train.seed": seed})

    def describe(self) -> dict:
        """Settings a worker must share to join an existing study (compared on every start)."""
        return {
            "config": self.base,
            "variants": {v.name: v.values for v in self.variants},
            "seeds": self.seeds,
            "metric": self.metric,
            "measures": self.measures,
        }


def _seeds(value: Any, *, where: str) -> List[int]:
    if isinstance(value, bool):
        value = None
    if isinstance(value, int):
        if value < 1:
            raise UserError(f"{where}: seeds: {value!r}; give a count >= 1 or a list of seeds")
        return list(range(value))
    if isinstance(value, list) and value and all(isinstance(s, int) and not isinstance(s, bool) for s in value):
        if len(set(value)) != len(value):
            raise UserError(f"{where}: seeds: {value!r} repeats a seed")
        return list(value)
    raise UserError(f"{where}: seeds: {value!r}; give a count >= 1 or a list of integer seeds, e.g. [0, 1, 2]")


def _read_study_doc(path: Path, *, where: str) -> dict:
    """The study file at ``path`` as a mapping; refuses a non-mapping, an unknown key and a missing config."""
    doc = read_yaml_file(path, what="study file")  # duplicate keys and aliases are one-line errors
    if not isinstance(doc, dict):
        raise UserError(f"{where}: a study file is a mapping with keys {', '.join(KEYS)}")
    unknown = [k for k in doc if k not in KEYS]
    if unknown:
        raise UserError(f"{where}: unknown key {unknown[0]!r}; a study file has: {', '.join(KEYS)}")
    if not doc.get("config"):
        raise UserError(f"{where}: no config; give the base config (a shipped name like mnist, or a YAML path)")
    return doc


def _study_config_path(config: str, *, study_path: Path) -> Path:
    """The base config file: ``config`` relative to the study file when that file exists, else a
    shipped name or a path (``.yaml`` added to a bare name)."""
    cfg_path = Path(config)
    if not cfg_path.is_absolute() and (study_path.parent / cfg_path).is_file():
        return study_path.parent / cfg_path
    return resolve_config_path(config if config.endswith((".yaml", ".yml")) else f"{config}.yaml")


def _overridden_config(
    cfg_path: Path, *, config: str, file_overrides: Any, overrides: Sequence[str], where: str
) -> Tuple[Any, Dict[str, Any]]:
    """The base config of ``cfg_path`` with the study file's overrides and then ``overrides``
    (``key=value``, the later winning) applied, and those overrides merged; refuses an unknown
    key and a value the config refuses."""
    file_over = _flat_overrides(file_overrides, what=f"{where}: overrides")
    cli_over: Dict[str, Any] = {}
    for o in overrides:
        k, v = parse_override(o)  # the parser of `normgan train` overrides
        cli_over[k] = v
    try:
        cfg = load_config(cfg_path)
    except ConfigError as e:
        raise UserError(f"{where}: config {config}: {e}") from None
    base = to_dict(cfg)
    all_over = {**file_over, **cli_over}
    for k in all_over:
        _check_key(base, k, where=f"{where}: overrides")
    base = apply_values(base, {k: _decode(k, v) for k, v in all_over.items()})
    try:
        cfg = load_config(base=base)
    except ConfigError as e:
        raise UserError(f"{where}: overrides: {e}") from None
    return cfg, all_over


def _scoring(doc: dict, *, cfg, where: str) -> Tuple[str, Any, list]:
    """The study's metric, threshold and measures, checked against the config ``cfg`` and its task
    (a metric it computes, evaluation on, a numeric threshold, known measures that apply)."""
    info = TASK_INFO.get(cfg.task)
    metric = str(doc.get("metric") or cfg.eval.best_metric)
    scores = info.scores
    if metric not in scores:
        raise UserError(f"{where}: metric {metric!r} is not computed for this task; choose one of: {', '.join(scores)}")
    if not cfg.eval.every:
        raise UserError(
            f"{where}: eval.every is 0, so the runs would not be scored; set eval.every in overrides (e.g. 250)"
        )
    threshold = doc.get("threshold")
    if threshold is not None and (
        isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold)
    ):
        raise UserError(f"{where}: threshold {threshold!r} must be a number (or left out)")
    measures = doc.get("measures") or []
    if not isinstance(measures, list) or any(m not in MEASURE_NAMES for m in measures):
        raise UserError(f"{where}: measures {measures!r}; choose from: {', '.join(MEASURE_NAMES)}")
    if "overfitting" in measures and not info.noise_samples:
        raise UserError(
            f"{where}: the overfitting measure scores unconditional generators; drop it for a {cfg.task} config"
        )
    return metric, threshold, measures


def _add_variants(spec: StudySpec, raw_variants: dict, *, where: str) -> None:
    """Append the variants of ``raw_variants`` to ``spec`` in file order; refuses a bad name, a
    shared key (compared at equal N and evaluation seed) and a key the base config lacks."""
    for vname, values in raw_variants.items():
        vname = str(vname)
        if not NAME_RE.match(vname):
            raise UserError(f"{where}: variant name {vname!r}: use letters, digits, '.', '_', '+' and '-' only")
        values = _flat_overrides(values, what=f"{where}: variant {vname}")
        for k in values:
            if any(k == p.rstrip(".") or k.startswith(p) for p in SHARED_PREFIXES):
                raise UserError(
                    f"{where}: variant {vname} sets {k}; every run of a study shares it (compared at equal "
                    "N and evaluation seed): set it in overrides"
                )
            _check_key(spec.base, k, where=f"{where}: variant {vname}")
        spec.variants.append(Variant(name=vname, values=values))


def load_study(name_or_path: str, *, overrides: Sequence[str] = (), seeds: Optional[int] = None) -> StudySpec:
    """Parse and validate a study: every variant's config (each seed's too) must load, so a bad
    value is refused before the first run. ``overrides`` (``key=value``) and ``seeds`` (a count)
    replace the file's for a smaller or larger version of a shipped study."""
    path = find_study(name_or_path)
    where = str(path)
    doc = _read_study_doc(path, where=where)
    config = str(doc["config"])
    cfg_path = _study_config_path(config, study_path=path)
    cfg, all_over = _overridden_config(
        cfg_path, config=config, file_overrides=doc.get("overrides"), overrides=overrides, where=where
    )
    base = to_dict(cfg)
    metric, threshold, measures = _scoring(doc, cfg=cfg, where=where)
    raw_variants = doc.get("variants")
    if not isinstance(raw_variants, dict) or not raw_variants:
        raise UserError(
            f"{where}: variants: give a mapping of variant names to dotted config keys, e.g. {{none: {{}}, r1: {{regularizers.r1: r1}}}}"
        )
    spec = StudySpec(
        name=path.stem,
        path=path,
        title=str(doc.get("title") or path.stem),
        description=str(doc.get("description") or "").strip(),
        config=config,
        base=base,
        overrides=all_over,
        seeds=_seeds(doc.get("seeds", 3) if seeds is None else seeds, where=where),
        metric=metric,
        direction=metric_direction(metric),
        threshold=None if threshold is None else float(threshold),
        measures=list(measures),
        task=cfg.task,
    )
    _add_variants(spec, raw_variants, where=where)
    for v in spec.variants:
        try:
            load_config(base=spec.run_tree(v.name, spec.seeds[0]))
        except ConfigError as e:
            raise UserError(f"{where}: variant {v.name}: {e}") from None
    return spec
