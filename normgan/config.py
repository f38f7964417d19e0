"""The configuration schema: typed dataclasses, YAML files and dotted overrides.

    cfg = load_config("configs/mnist.yaml", overrides=["train.steps=500", "optim.g.lr=1e-4"])

OmegaConf structured configs give merging, ``a.b.c=value`` overrides and type checks; this module
turns their exceptions into one-line :class:`~normgan.errors.ConfigError` messages and adds the
semantic checks (ranges, known names) so that everything is validated before the first step.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from normgan.errors import ConfigError, UserError
from normgan.runtime.paths import expand_path
from normgan.tasks.info import TASK_INFO, auto_task, task_names

RESOLUTIONS = (28, 32, 64, 128, 256)
#: ``task: auto`` becomes the first task that fits data.name (normgan.tasks.info.auto_task: ``paired`` for a
#: paired dataset, else ``unconditional``; ``conditional`` when model.*.conditioning is set)
TASK_CHOICES = ("auto",) + task_names()
DIRECTIONS = ("AtoB", "BtoA")


@dataclass
class DataConfig:
    name: str = "mnist5k"  # built-in name, "folder", "idx"; paired: gray2color, …, "aligned", "paired_folders"
    root: Optional[str] = None  # folder of images or IDX file, for name=folder|idx|aligned|paired_folders
    resolution: int = 32
    channels: Optional[int] = None  # None: as the source; 1 or 3 converts
    batch_size: int = 64
    holdout: float = 0.1  # fraction kept out of training, as the evaluation reference
    strict: bool = False  # unreadable image files are an error instead of a warning
    direction: str = "AtoB"  # paired: AtoB (G maps A to B) or BtoA
    load_size: Optional[int] = (
        None  # paired jitter (pix2pix: 286 for 256): load at this size, random-crop data.resolution
    )
    flip: bool = False  # paired: random horizontal flip, the same on both sides of a pair
    folds: int = 0  # 0: off; K >= 2: cut the training split into K folds, train on K-1, evaluate on the held-out one
    fold: int = 0  # with data.folds: which fold (0..folds-1) is held out as the evaluation reference / validation set
    stream: str = "auto"  # folder only: true decodes images per batch in DataLoader workers; auto: when they need > 1/4 of free memory
    workers: int = 2  # streaming: DataLoader worker processes decoding images (0: in the main process)
    label_sampling: str = "uniform"  # conditional: G's classes uniform, or histogram (the training split's frequencies)


@dataclass
class GeneratorConfig:
    name: str = "dcgan"
    z_dim: int = 64
    width: int = 32
    norm: str = "batch"  # batch | instance | layer | none
    dropout: float = 0.0
    conditioning: Optional[str] = None  # class-conditional G: cbn (conditional BatchNorm) | concat (z ⊕ embed(y))
    options: Dict[str, Any] = field(
        default_factory=dict
    )  # architecture options (unet: depth, test_dropout; resnet: blocks)


@dataclass
class DiscriminatorConfig:
    name: str = "dcgan"
    width: int = 32
    norm: str = "batch"  # use "none" with per-sample gradient penalties (R1, WGAN-GP)
    dropout: float = 0.0
    conditioning: Optional[str] = None  # class-conditional D: projection | ac (auxiliary classifier, term 'ac')
    options: Dict[str, Any] = field(default_factory=dict)  # architecture options (patchgan: layers)


@dataclass
class ModelConfig:
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)


@dataclass
class AdamConfig:
    # 5e-4: 2e-4 (DCGAN) halved neither FID at 3,000 steps; see docs/decisions.md. A number, or a
    # schedule like a term weight's: {schedule: cosine_warmup, base: 2.0e-4, end: 10000} (lr_t = base × multiplier)
    lr: Any = 5.0e-4
    # [β1, β2]; β2 may be a schedule mapping too: [0.0, {schedule: cosine_warmup, base: 0.9, final: 1.1, end: 10000}]
    betas: List[Any] = field(default_factory=lambda: [0.5, 0.999])


@dataclass
class OptimConfig:
    g: AdamConfig = field(default_factory=AdamConfig)
    d: AdamConfig = field(default_factory=AdamConfig)
    d_steps: int = 1  # discriminator steps per generator step
    ema: float = 0.99  # decay of the EMA copy of G (0 disables averaging)
    ema_rampup: bool = True  # decay_t = min(ema, (1 + t) / (10 + t)): early samples are not stuck at init
    # instead of ema: the EMA's half-life in images (R3GAN/StyleGAN), a number or a schedule mapping;
    # β_t = 0.5^(data.batch_size / halflife_t), 0 at halflife_t = 0; null or 0: use optim.ema
    ema_halflife: Any = None
    gate_lr: float = 1.0e-2  # learning rate of hard-concrete gate parameters (log α), which must travel far


@dataclass
class TrainConfig:
    steps: int = 3000  # generator steps
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    log_every: int = 50
    sample_every: int = 500
    checkpoint_every: int = 500
    num_samples: int = 64  # images in each fixed-noise grid
    tensorboard: bool = True
    threads: int = (
        0  # torch intra-op threads on CPU; 0: the cores free when the run starts (normgan/runtime/threads.py)
    )
    precision: str = "fp32"  # fp32 | bf16 | fp16: autocast forwards (fp16 also scales losses); weights stay fp32
    report: bool = False  # write RUN/report.html (normgan report) at the end of a finished run
    compile: bool = False  # torch.compile the adversarial forwards of G and D (terms keep the eager modules)


@dataclass
class EvalConfig:
    every: int = 0  # evaluate the EMA generator every N steps and at the end; 0: off
    n: int = 2000  # generated samples per evaluation (FIDs compare only at equal N)
    # domain (classifier of the run's training split) | domain-full (classifier of the source's default split,
    # data.holdout 0.1: for runs on a small split) | inception | pkg.module:Class
    features: str = "domain"
    metrics: List[str] = field(default_factory=lambda: ["fid", "kid", "pr"])
    reference: str = "test"  # the held-out split; "train" only when asked for
    seed: int = 0
    best_metric: str = "fid"  # best.pt keeps the checkpoint with the best value of this metric
    cache_dir: Optional[str] = None  # domain classifier cache (default $NORMGAN_CACHE or ~/.cache/normgan)


@dataclass
class AugmentConfig:
    # what D sees, in every phase: T(x) for real and generated images (docs/regularizers.md, "Augmentation")
    kind: str = "none"  # none | diffaugment | ada
    ops: Optional[List[str]] = None  # null: diffaugment [color, translation, cutout]; ada all of its ops
    # probability of each op per image: a number in [0, 1], a schedule mapping, or "adaptive" (ADA's
    # controller on r_t = E[sign D(x_real)]); null: 1 for diffaugment, adaptive for ada
    p: Any = None
    target: float = 0.6  # adaptive p: the r_t it holds
    speed: float = 500000.0  # adaptive p: images for p to move by 1 (ADA: 500 kimg)
    interval: int = 4  # adaptive p: steps between adjustments
    penalty: str = "input"  # gradient penalties: input (w.r.t. the un-augmented x, through T) | augmented (w.r.t. T(x))


@dataclass
class Config:
    # auto | unconditional (z -> image) | paired (image x -> image y) | conditional ((z, class) -> image);
    # auto follows data.name, and model.*.conditioning (set: conditional)
    task: str = "auto"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: str = "bce"
    optim: OptimConfig = field(default_factory=OptimConfig)
    regularizers: Dict[str, Any] = field(default_factory=dict)
    constraints: Dict[str, Any] = field(default_factory=dict)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    @property
    def paired(self) -> bool:
        """True for an image-to-image run (``task: paired``, resolved by :func:`validate`)."""
        return self.task == "paired"


def packaged_config_dir() -> Path:
    """The folder of ready configs that ships inside the package."""
    return Path(str(resources.files("normgan") / "configs"))


def resolve_config_path(path: str | Path) -> Path:
    """A config path as given, else the packaged config of the same file name (``configs/mnist.yaml``)."""
    p = Path(path)
    if p.is_file():
        return p
    for candidate in (packaged_config_dir() / p.name, packaged_config_dir() / f"{p.name}.yaml"):
        if candidate.is_file():
            return candidate
    shipped = ", ".join(sorted(q.name for q in packaged_config_dir().glob("*.yaml")))
    raise ConfigError(f"config file '{path}' does not exist; give a YAML path or a shipped config ({shipped})")


def _one_line(exc: OmegaConfBaseException) -> str:
    """OmegaConf's message without its multi-line 'full_key/object_type' trailer."""
    msg = str(exc).splitlines()[0].strip()
    key = getattr(exc, "full_key", None)
    if key and key not in msg:
        msg = f"{key}: {msg}"
    return msg


class _Loader(yaml.SafeLoader):
    """The one YAML loader of normgan (config files, study files, run folders' config.yaml, override
    values): YAML's safe loader, except that a key written twice is an error (the second ``data:``
    would silently replace the first), aliases (``*name``) are refused (a few hundred bytes of
    nested aliases expand to billions of nodes), ``1e-4`` is a float as in OmegaConf's overrides,
    and dates stay strings."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None,
                None,
                f"alias *{event.anchor} (YAML anchors and aliases are not supported; write the values out)",
                event.start_mark,
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                continue  # an unhashable key: the safe constructor reports it
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first at line {seen[key] + 1}); keep one", key_node.start_mark
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                  |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
                  |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                  |[-+]?\.(?:inf|Inf|INF)
                  |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)
_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:timestamp"]
    for k, v in _Loader.yaml_implicit_resolvers.items()
}


def load_yaml(text: str, *, source: str) -> Any:
    """Parse YAML ``text`` with normgan's loader (see :class:`_Loader`); a syntax error, a duplicate
    key or an alias raises a one-line :class:`ConfigError` naming ``source`` and the line."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(e, "problem", None)
        if problem and ("duplicate key" in problem or problem.startswith("alias *")):
            raise ConfigError(f"{source}{where}: {problem}") from None
        raise ConfigError(f"{source} is not valid YAML{where}; fix its syntax") from None
    except RecursionError:
        raise ConfigError(f"{source} is nested too deeply; fix its syntax") from None


def read_yaml_file(path: str | Path, *, what: str = "config file") -> Any:
    """The YAML document in ``path`` (None when empty); one-line ConfigErrors for unreadable files."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read {what} '{path}': {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what} '{path}' is not a text (UTF-8 YAML) file; give a YAML file") from None
    return load_yaml(text, source=f"{what} '{path}'")


def parse_override(item: str) -> tuple[str, Any]:
    """``key=value`` as (key, value): the one parser of command-line overrides (train, search, study).

    The value is read as YAML (``5``, ``1e-4``, ``true``, ``null``, ``[0.5, 0.9]``, ``{term: weights}``)."""
    if "=" not in item:
        raise ConfigError(f"override '{item}' must look like key=value (e.g. train.steps=500)")
    key, value = item.split("=", 1)
    key = key.strip().lstrip("+")
    if not key:
        raise ConfigError(f"override '{item}' has no key; write key=value")
    if any(not part for part in key.split(".")):
        raise ConfigError(f"override '{item}': key '{key}' has an empty part; write dotted names like train.steps")
    return key, load_yaml(value, source=f"override '{item}'")


def _read_yaml(path: Path) -> Dict[str, Any]:
    data = read_yaml_file(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file '{path}' must hold a mapping of keys (data:, model:, …), not {type(data).__name__}"
        )
    return data


def split_config_and_overrides(items: List[str]) -> tuple[Optional[str], List[str]]:
    """Command-line words as (the one config file or None, the key=value overrides)."""
    config, overrides = None, []
    for item in items:
        if "=" in item:
            overrides.append(item)
        elif config is None:
            config = item
        else:
            raise UserError(f"unexpected argument '{item}'; give one config file and key=value overrides")
    return config, overrides


def load_config(
    path: str | Path | None = None, *, overrides: List[str] | None = None, base: Dict[str, Any] | None = None
) -> Config:
    """Defaults ← ``base`` (a saved run's config) ← the YAML file ← dotted overrides; validated.

    Raises :class:`ConfigError` with one line naming the key for unknown keys, wrong types and bad values.
    """
    schema = OmegaConf.structured(Config)
    layers = []
    if base is not None:
        layers.append(base)
    if path is not None:
        layers.append(_read_yaml(resolve_config_path(path)))
    parsed = [(item, *parse_override(item)) for item in overrides or []]
    try:
        merged = schema
        for layer in layers:
            _check_sections(layer)
            _check_shapes(layer, merged)
            _replace_schedules(layer, merged)
            merged = OmegaConf.merge(merged, OmegaConf.create(layer))
        for _item, key, value in parsed:
            node = OmegaConf.select(merged, key, default=None) if value == {} else None
            if node is not None and OmegaConf.get_type(node) is dict:
                # merging {} would keep a free mapping's keys; `regularizers={}` means "no terms"
                OmegaConf.update(merged, key, {}, merge=False)
                continue
            extra: Any = value
            for part in reversed(key.split(".")):
                extra = {part: extra}
            _check_sections(extra)
            _check_shapes(extra, merged)
            _replace_schedules(extra, merged)
            merged = OmegaConf.merge(merged, OmegaConf.create(extra))
        cfg = OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        raise ConfigError(_explain(e)) from None
    # regularizers/constraints come through as DictConfig-free plain containers
    validate(cfg)
    return cfg


#: top-level sections that must be mappings, with an example of the expected shape
MAPPING_SECTIONS = {
    "data": "data: {name: mnist5k, batch_size: 64}",
    "model": "model: {generator: {width: 32}}",
    "optim": "optim: {g: {lr: 2.0e-4}}",
    "regularizers": "regularizers: {wd_g: {term: weights, net: G, norm: l2, weight: 1.0e-6}}",
    "constraints": "constraints: {sn: {kind: spectral, net: D}}",
    "augment": "augment: {kind: diffaugment}",
    "train": "train: {steps: 3000}",
    "eval": "eval: {every: 1000}",
}


#: keys that hold a number or a schedule mapping ``{schedule: NAME, base: ..., ...}`` (docs/decisions.md)
SCHEDULABLE_KEYS = ("optim.g.lr", "optim.d.lr", "optim.ema_halflife", "augment.p")


def _replace_schedules(layer: Any, merged: Any) -> None:
    """A schedule mapping (one with ``schedule:``) given for a key of :data:`SCHEDULABLE_KEYS`
    replaces the value before it instead of merging into it (the old schedule's options would stay);
    a mapping without ``schedule:`` (``optim.g.lr.end=2000``) updates the keys of the one there."""
    for key in SCHEDULABLE_KEYS:
        value: Any = layer
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, dict) and "schedule" in value:
            OmegaConf.update(merged, key, None, merge=False)


def _check_sections(layer: Any) -> None:
    """A one-line error for a section given as a list or a scalar instead of a mapping of names."""
    if not isinstance(layer, dict):
        return
    for key, example in MAPPING_SECTIONS.items():
        value = layer.get(key)
        if value is not None and not isinstance(value, dict):
            raise ConfigError(
                f"{key}: expected a mapping of names, got a {type(value).__name__} ({str(value)[:40]}); "
                f"write it as {example}"
            )


def _check_shapes(layer: Any, node: Any, prefix: str = "") -> None:
    """One-line errors, before OmegaConf merges ``layer`` into ``node``, where the two disagree in
    shape: a non-string key, a mapping where the schema has a list (``optim.g.betas.5=1``), or a
    value that is not a mapping where the schema has a section (``model.generator=3``)."""
    from omegaconf import DictConfig, ListConfig

    if not isinstance(layer, dict):
        return
    for k, v in layer.items():
        if not isinstance(k, str):
            raise ConfigError(
                f"{prefix}{k!r}: config keys are names, not {type(k).__name__}s; "
                f"check the key (normgan train --dry-run prints every key)"
            )
        child = node.get(k) if isinstance(node, DictConfig) and k in node else None
        if isinstance(child, ListConfig) and isinstance(v, dict):
            whole = list(child)
            raise ConfigError(
                f"{prefix}{k} is a list {whole}, not a mapping of keys (an index such as {prefix}{k}.0 "
                f"cannot be set); set the whole list, e.g. {prefix}{k}=[{','.join(map(str, whole))}]"
            )
        if (
            isinstance(child, DictConfig)
            and v is not None
            and not isinstance(v, dict)
            and f"{prefix}{k}" not in SCHEDULABLE_KEYS  # a number replaces a schedule
        ):
            raise ConfigError(
                f"{prefix}{k}: expected a mapping of keys, got a {type(v).__name__} ({str(v)[:40]}); "
                f"write it as {prefix}{k}: {{key: value}}"
            )
        if isinstance(v, dict) and isinstance(child, DictConfig):
            _check_shapes(v, child, f"{prefix}{k}.")


def _explain(e: OmegaConfBaseException) -> str:
    msg = _one_line(e)
    name = type(e).__name__
    if name in ("ConfigKeyError", "ConfigAttributeError"):
        key = getattr(e, "full_key", None) or ""
        return (
            f"unknown config key '{key}'"
            + (f" ({msg})" if key not in msg else "")
            + "; check the spelling (normgan train --dry-run prints every key)"
        )
    if name == "ValidationError":
        key = getattr(e, "full_key", None) or "?"
        return f"{key}: {msg}"
    return msg


_PLAIN = (str, int, float, bool, type(None))


def _plain(x: Any) -> bool:
    if isinstance(x, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in x.items())
    if isinstance(x, list):
        return all(_plain(v) for v in x)
    return isinstance(x, _PLAIN)


def to_dict(cfg: Config) -> Dict[str, Any]:
    """The resolved config as plain YAML-able containers (every default written out).

    A loaded config holds plain values only, so a deep copy of the dataclass is the answer (0.2 ms;
    every checkpoint stores it, and OmegaConf's conversion takes 20-70 ms, which a GPU run at 2 ms a
    step pays at each checkpoint). Anything else set by hand (a tuple, an OmegaConf node) goes
    through OmegaConf, which turns it into plain lists and dicts."""
    d = dataclasses.asdict(cfg)
    return d if _plain(d) else OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)


def to_yaml(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def flatten(d: Any, prefix: str = "") -> Dict[str, Any]:
    """Dotted keys of the leaves of a nested mapping (a resolved config); empty mappings are dropped,
    so ``regularizers: {}`` and no ``regularizers`` key are the same config."""
    out: Dict[str, Any] = {}
    for k, v in (d or {}).items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _check(cond: bool, key: str, value: Any, allowed: str) -> None:
    if not cond:
        raise ConfigError(f"{key}: bad value {value!r}; {allowed}")


def validate(cfg: Config) -> None:
    """Semantic checks beyond types. Component names are checked against their registries."""
    cfg.data.root = expand_path(cfg.data.root)
    cfg.eval.cache_dir = expand_path(cfg.eval.cache_dir)
    _validate_data(cfg.data)
    _validate_models_and_optim(cfg)
    _validate_train(cfg)
    _validate_names(cfg)
    _validate_eval(cfg)
    _validate_augment(cfg)

    from normgan.regularizers import validate_regularizers

    validate_regularizers(cfg)
    check_per_sample_penalties(cfg)


def _validate_data(d: Any) -> None:
    """Check the ``data`` section: resolution, batch size, channels, holdout, folds, streaming, workers, root."""
    _check(
        d.resolution in RESOLUTIONS,
        "data.resolution",
        d.resolution,
        f"supported resolutions are {', '.join(map(str, RESOLUTIONS))}",
    )
    _check(d.batch_size >= 1, "data.batch_size", d.batch_size, "must be >= 1")
    _check(d.channels in (None, 1, 3), "data.channels", d.channels, "use 1 (grey), 3 (RGB) or null (as the source)")
    _check(0.0 <= d.holdout < 1.0, "data.holdout", d.holdout, "must be in [0, 1)")
    _check(d.folds == 0 or d.folds >= 2, "data.folds", d.folds, "use 0 (off) or a number of folds >= 2")
    if d.folds:
        _check(
            0 <= d.fold < d.folds,
            "data.fold",
            d.fold,
            f"the held-out fold must be in 0..{d.folds - 1} (data.folds={d.folds})",
        )
    else:
        _check(d.fold == 0, "data.fold", d.fold, "set data.folds >= 2 to hold out a fold (data.fold needs data.folds)")
    d.stream = str(d.stream).strip().lower()  # a str field: YAML true/false arrive as 'True'/'False'
    _check(d.stream in ("auto", "true", "false"), "data.stream", d.stream, "use auto, true or false")
    _check(
        d.stream != "true" or d.name == "folder",
        "data.stream",
        d.stream,
        f"streaming is for data.name=folder (data.name is {d.name}); set data.stream to auto or false",
    )
    _check(d.workers >= 0, "data.workers", d.workers, "must be >= 0 (0 decodes in the main process)")
    if d.name in ("folder", "idx"):
        _check(
            bool(d.root),
            "data.root",
            d.root,
            f"data.name={d.name} needs data.root (a {'folder' if d.name == 'folder' else 'IDX file'})",
        )


def _validate_models_and_optim(cfg: Config) -> None:
    """Check the generator/discriminator sizes and dropout, and the optimizer settings."""
    g, dd, o = cfg.model.generator, cfg.model.discriminator, cfg.optim
    _check(g.z_dim >= 1, "model.generator.z_dim", g.z_dim, "must be >= 1")
    for key, net in (("model.generator", g), ("model.discriminator", dd)):
        _check(net.width >= 1, f"{key}.width", net.width, "must be >= 1")
        _check(0.0 <= net.dropout < 1.0, f"{key}.dropout", net.dropout, "must be in [0, 1)")
    _check(o.gate_lr > 0, "optim.gate_lr", o.gate_lr, "must be > 0")
    _check(o.d_steps >= 1, "optim.d_steps", o.d_steps, "must be >= 1")
    _check(0.0 <= o.ema < 1.0, "optim.ema", o.ema, "must be in [0, 1)")
    _validate_optim_schedules(cfg)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _validate_optim_schedules(cfg: Config) -> None:
    """Check lr, betas and the EMA half-life, each a number or a schedule mapping (docs/decisions.md):
    a schedule must stay in range at every step up to train.steps (checked at its breakpoints).
    Numbers become floats, so a config reads the same whether it says 1 or 1.0."""
    from normgan.regularizers.weights import check_schedule

    o, steps = cfg.optim, cfg.train.steps
    for key, adam in (("optim.g", o.g), ("optim.d", o.d)):
        if isinstance(adam.lr, dict):
            check_schedule(adam.lr, key=f"{key}.lr", steps=steps, positive_base=True)
        else:
            _check(_is_number(adam.lr) and adam.lr > 0, f"{key}.lr", adam.lr, "must be > 0 (or a schedule mapping)")
            adam.lr = float(adam.lr)
        betas = adam.betas
        _check(len(betas) == 2, f"{key}.betas", betas, "two numbers in [0, 1) (β2 may be a schedule mapping)")
        _check(
            _is_number(betas[0]) and 0.0 <= betas[0] < 1.0,
            f"{key}.betas",
            betas,
            "two numbers in [0, 1); only β2 (the second) may be a schedule mapping",
        )
        if isinstance(betas[1], dict):
            check_schedule(betas[1], key=f"{key}.betas[1]", steps=steps, below=1.0)
        else:
            _check(_is_number(betas[1]) and 0.0 <= betas[1] < 1.0, f"{key}.betas", betas, "two numbers in [0, 1)")
        adam.betas = [float(b) if _is_number(b) else b for b in betas]
    h = o.ema_halflife
    if isinstance(h, dict):
        check_schedule(h, key="optim.ema_halflife", steps=steps)
    elif h is not None:
        _check(
            _is_number(h) and 0 <= h < float("inf"),
            "optim.ema_halflife",
            h,
            "a half-life in images is a number >= 0 (0 or null: use optim.ema), or a schedule mapping",
        )
        o.ema_halflife = float(h)
    if o.ema_halflife not in (None, 0.0) and o.ema != OptimConfig.ema:
        raise ConfigError(
            f"optim.ema_halflife: set together with optim.ema={o.ema!r}; give one of them "
            "(the EMA decay is either a constant optim.ema or follows the half-life)"
        )


def _validate_train(cfg: Config) -> None:
    """Check the ``train`` section (steps, intervals, seeds, threads, precision, device) and ``eval.seed``."""
    t = cfg.train
    _check(t.steps >= 1, "train.steps", t.steps, "must be a positive number of generator steps")
    for key in ("log_every", "sample_every", "checkpoint_every", "num_samples"):
        _check(getattr(t, key) >= 1, f"train.{key}", getattr(t, key), "must be >= 1")
    check_seed(t.seed, key="train.seed")
    check_seed(cfg.eval.seed, key="eval.seed")
    _check(t.threads >= 0, "train.threads", t.threads, "must be >= 0 (0: as many as cores are free at the start)")
    _check(
        t.precision in ("fp32", "bf16", "fp16"),
        "train.precision",
        t.precision,
        "use fp32, bf16 (autocast) or fp16 (autocast + gradient scaling)",
    )
    _check(
        t.device == "auto" or t.device == "cpu" or t.device.startswith("cuda"),
        "train.device",
        t.device,
        "use auto, cpu, cuda or cuda:N",
    )


def _validate_names(cfg: Config) -> None:
    """Check the loss, network and norm-layer names against their registries, and resolve the task."""
    # names against registries (imported here: they import config-free modules only)
    from normgan.functional.losses import LOSSES
    from normgan.models import DISCRIMINATORS, GENERATORS, NORM_LAYERS

    g, dd = cfg.model.generator, cfg.model.discriminator
    LOSSES.get(cfg.loss, key="loss")
    GENERATORS.get(g.name, key="model.generator.name")
    DISCRIMINATORS.get(dd.name, key="model.discriminator.name")
    NORM_LAYERS.get(g.norm, key="model.generator.norm")
    NORM_LAYERS.get(dd.norm, key="model.discriminator.norm")
    _resolve_task(cfg)


def _validate_eval(cfg: Config) -> None:
    """Check ``eval.every`` and, when periodic evaluation is on, the task's evaluation arguments."""
    e = cfg.eval
    _check(e.every >= 0, "eval.every", e.every, "must be >= 0 (0 turns periodic evaluation off)")
    if e.every:
        task = TASK_INFO.get(cfg.task)
        try:
            task.check_eval_args(n=e.n, features=e.features, metrics=e.metrics, reference=e.reference)
            task.check_best_metric(best_metric=e.best_metric, metrics=e.metrics)
        except UserError as err:  # the CLI option names (--n) become config keys (eval.n)
            raise ConfigError(str(err).replace("--", "eval.", 1) if str(err).startswith("--") else str(err)) from None
        if task.noise_samples and e.features == "domain-full" and cfg.data.folds:
            from normgan.eval.metric_info import DOMAIN_FULL_FOLDS

            raise ConfigError(DOMAIN_FULL_FOLDS)
        if "modes" in e.metrics and cfg.data.name != "stacked_mnist":
            raise ConfigError(
                f"eval.metrics: modes counts the 1000 digit triples of Stacked MNIST; data.name is {cfg.data.name!r}: "
                "drop modes from eval.metrics or set data.name: stacked_mnist"
            )


AUGMENT_KINDS = ("none", "diffaugment", "ada")


def _validate_augment(cfg: Config) -> None:
    """Check the ``augment`` section: kind, ops of that kind, p (number, schedule or adaptive) and
    the adaptive controller's settings, the penalty input."""
    from normgan.functional.augment import ADA_OPS, DIFFAUGMENT_OPS
    from normgan.regularizers.weights import check_schedule

    a = cfg.augment
    _check(a.kind in AUGMENT_KINDS, "augment.kind", a.kind, f"choose one of: {', '.join(AUGMENT_KINDS)}")
    _check(a.penalty in ("input", "augmented"), "augment.penalty", a.penalty, "choose one of: input, augmented")
    if a.kind == "none":
        return
    allowed = ADA_OPS if a.kind == "ada" else DIFFAUGMENT_OPS
    if a.ops is not None:
        _check(len(a.ops) > 0, "augment.ops", a.ops, f"name at least one of: {', '.join(allowed)} (or kind: none)")
        for op in a.ops:
            _check(op in allowed, "augment.ops", op, f"{a.kind} ops are: {', '.join(allowed)}")
        a.ops = list(dict.fromkeys(a.ops))
    if isinstance(a.p, dict):
        check_schedule(a.p, key="augment.p", steps=cfg.train.steps)
    elif a.p is not None and a.p != "adaptive":
        _check(
            _is_number(a.p) and 0.0 <= a.p <= 1.0,
            "augment.p",
            a.p,
            "a probability in [0, 1], a schedule mapping or adaptive",
        )
        a.p = float(a.p)
    _check(0.0 <= a.target < 1.0, "augment.target", a.target, "r_t's target is in [0, 1) (ADA: 0.6)")
    _check(a.speed > 0, "augment.speed", a.speed, "images for p to move by 1; must be > 0 (ADA: 500000)")
    _check(a.interval >= 1, "augment.interval", a.interval, "steps between adjustments; must be >= 1")
    # task branch kept here (tests/test_tasks.py): the restriction is the augmentation's (a paired D sees
    # cat(T(x), T(y)); its condition would need the same leaf as the image), checked where augment is validated
    if a.penalty == "augmented" and cfg.paired:
        raise ConfigError(
            "augment.penalty: augmented is built for unconditional runs; a paired run takes penalties "
            "w.r.t. the un-augmented image (augment.penalty: input)"
        )


#: seeds are unsigned 64-bit integers (torch.Generator.manual_seed's range)
SEED_MAX = 2**64 - 1


def check_seed(seed: Any, *, key: str) -> int:
    """``seed`` if it is an integer in 0 .. 2**64-1, else a one-line ConfigError naming ``key``."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        raise ConfigError(f"{key}: bad value {seed!r}; a seed is an integer from 0 to 2**64-1 ({SEED_MAX})")
    return seed


def check_data_source(cfg: Config) -> None:
    """A one-line DataError when ``data.root`` names a missing path (or a file where a folder is
    needed); run by ``--dry-run``, which loads no data, and cheap enough for any start."""
    from normgan.errors import DataError

    d = cfg.data
    if not d.root:
        return
    root = Path(d.root)
    folder = d.name != "idx"
    if not root.exists():
        what = "folder" if folder else "IDX file"
        raise DataError(
            f"data.root: {what} '{root}' does not exist (data.name={d.name}); set data.root to an existing {what}"
        )
    if folder and not root.is_dir():
        raise DataError(
            f"data.root: '{root}' is a file, not a folder (data.name={d.name}); set data.root to a folder of images"
        )
    if not folder and root.is_dir():
        raise DataError(
            f"data.root: '{root}' is a folder, not a file (data.name=idx); set data.root to an IDX images file"
        )


LABEL_SAMPLING = ("uniform", "histogram")


def _check_conditioning(cfg: Config) -> bool:
    """True when ``model.generator.conditioning`` or ``model.discriminator.conditioning`` is set (a
    class-conditional run); a one-line ConfigError when the named network has no such option, or
    ``data.label_sampling`` is unknown."""
    from normgan.models.registry import DISCRIMINATORS, GENERATORS, declares

    _check(
        cfg.data.label_sampling in LABEL_SAMPLING,
        "data.label_sampling",
        cfg.data.label_sampling,
        f"choose one of: {', '.join(LABEL_SAMPLING)}",
    )
    out = False
    for key, net, registry in (
        ("model.generator", cfg.model.generator, GENERATORS),
        ("model.discriminator", cfg.model.discriminator, DISCRIMINATORS),
    ):
        if net.conditioning is None:
            continue
        if not declares(registry, net.name, "conditioning"):
            raise ConfigError(
                f"{key}.conditioning: bad value {net.conditioning!r}; {net.name} takes no class condition"
            )
        out = True
    return out


def _resolve_task(cfg: Config) -> None:
    """Resolve ``task: auto`` from ``data.name`` and check that data, models and terms fit the task.

    What differs between the tasks is declared by each (:class:`normgan.tasks.info.TaskInfo`): the datasets
    it fits, its generator's input, and its eval defaults. eval metrics or best metric left at the
    schema's defaults get the task's (a paired run: PSNR/SSIM/L1 on the validation split, best.pt by
    PSNR), written into the resolved config.
    """
    from normgan.data import DATASETS, PAIRED_DATASETS
    from normgan.models.registry import check_models, takes_image_input

    d = cfg.data
    _check(cfg.task in TASK_CHOICES, "task", cfg.task, f"choose one of: {', '.join(TASK_CHOICES)}")
    if d.name not in DATASETS and d.name not in PAIRED_DATASETS:
        names = sorted(DATASETS.names()) + sorted(PAIRED_DATASETS.names())
        raise ConfigError(f"data.name: unknown dataset {d.name!r}; choose one of: {', '.join(names)}")
    conditioned = _check_conditioning(cfg)
    if cfg.task == "auto":
        cfg.task = auto_task(d.name, conditioned=conditioned)
    task = TASK_INFO.get(cfg.task)
    if not task.fits_dataset(d.name):
        raise task.dataset_error(d.name)
    if conditioned != task.conditioned:
        raise task.conditioning_error()
    g_name = cfg.model.generator.name
    if takes_image_input(g_name) != task.image_input:
        raise ConfigError(f"model.generator.name: {g_name} {task.generator_mismatch}")
    c = d.channels or 3  # the source's channels are known only once it is loaded
    # a conditional run's class count is known once its data is loaded: 1 checks the options here
    classes = 1 if conditioned else None
    check_models(
        cfg.model, resolution=d.resolution, channels=c, in_channels=task.config_in_channels(c), classes=classes
    )
    _check(d.direction in DIRECTIONS, "data.direction", d.direction, "use AtoB or BtoA")
    if d.load_size is not None:
        _check(
            d.load_size >= d.resolution,
            "data.load_size",
            d.load_size,
            f"must be >= data.resolution ({d.resolution}); pix2pix jitter loads at 286 and crops 256",
        )
    if d.name in ("aligned", "paired_folders"):
        _check(bool(d.root), "data.root", d.root, f"data.name={d.name} needs data.root (a folder)")
    schema = EvalConfig()
    task.apply_eval_defaults(cfg.eval, schema=(schema.metrics, schema.best_metric))


#: D normalization layers that mix the samples of a batch (per-sample input gradients are then wrong)
BATCH_MIXING_NORMS = ("batch",)


def check_per_sample_penalties(cfg: Config) -> None:
    """Refuse terms that declare ``per_sample_gradients`` (the gradient penalties R1, R2, WGAN-GP,
    DRAGAN) on a discriminator with BatchNorm.

    With BatchNorm in training mode D(x_b) depends on every sample of the batch, so ∇_{x_b} D is not
    the per-sample gradient the penalty is defined on (R1 differs by ~12% at batch 16). A
    discriminator without a ``norm`` option (r3gan: no normalization layer) ignores the field.
    """
    from normgan.models import DISCRIMINATORS
    from normgan.models.registry import declares

    norm, name = cfg.model.discriminator.norm, cfg.model.discriminator.name
    if norm not in BATCH_MIXING_NORMS or (name in DISCRIMINATORS and not declares(DISCRIMINATORS, name, "norm")):
        return
    from normgan.regularizers import TERMS

    for name, spec in (cfg.regularizers or {}).items():
        if isinstance(spec, dict) and spec.get("term") in TERMS and TERMS.get(spec["term"]).per_sample_gradients:
            raise ConfigError(
                f"regularizers.{name}: a gradient penalty needs per-sample gradients, but "
                f"model.discriminator.norm={norm} mixes the samples of a batch; set "
                "model.discriminator.norm=none (or instance/layer)"
            )
