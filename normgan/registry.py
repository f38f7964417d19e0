"""A tiny name -> factory registry shared by models, losses, norms and terms.

    LOSSES = Registry("loss")

    @LOSSES.register("hinge")
    def hinge(...): ...

    LOSSES.get("hinge")      # -> the function; unknown names raise ConfigError
    CONSTRAINTS.build({"kind": "clip", "c": 0.01}, key="constraints.clip", name_key="kind",
                      fixed={"net": "D"})  # lookup, options checked, constructed

``build`` is the one path from a config entry to an object (as timm's ``create_model`` →
entrypoint(**kwargs)): every builder of terms, weight rules, constraints and models goes through it,
so unknown names and options and bad values give the same one-line errors naming the config key.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, Iterator, Mapping, Sequence, TypeVar

from normgan.errors import ConfigError

T = TypeVar("T")


class Registry:
    """Maps config names to components; unknown names give a one-line error listing the choices."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: Dict[str, object] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            return obj

        return decorator

    def get(self, name: str, *, key: str | None = None):
        try:
            return self._entries[name]
        except KeyError:
            where = f"{key}: " if key else ""
            raise ConfigError(
                f"{where}unknown {self.kind} {name!r}; choose one of: {', '.join(sorted(self._entries))}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    # ------------------------------------------------------------------ building from the config

    def lookup(self, spec: Any, *, key: str, name_key: str = "name"):
        """(name, factory) of the config entry ``spec``, a mapping whose ``name_key`` names the entry."""
        if not isinstance(spec, Mapping) or name_key not in spec:
            got = "" if isinstance(spec, Mapping) else f", got {spec!r}"
            raise ConfigError(
                f"{key}: expected a mapping with '{name_key}'{got}; choose one of: {', '.join(self.names())}"
            )
        name = spec[name_key]
        return name, self.get(name, key=f"{key}.{name_key}")

    def create(
        self,
        name: str,
        options: Mapping[str, Any],
        *,
        key: str,
        fixed: Mapping[str, Any] | None = None,
        common: Sequence[str] = (),
        options_key: str | None = None,
    ):
        """Construct entry ``name`` with the user's ``options`` and the caller's ``fixed`` arguments.

        ``options`` are checked against the factory's keyword parameters (an unknown one, or one
        that names a ``fixed`` argument, is a one-line ConfigError listing ``common`` — the entry's
        keys the caller handles — and the allowed options). ``fixed``: arguments the caller supplies
        (a None value leaves the factory's default). ``options_key``: where the options sit below
        ``key`` (``model.generator.options``), when not directly in the entry.

        Errors while constructing become one-line ConfigErrors prefixed with the config key: a
        ConfigError that begins with a parameter's name (``"depth: bad value 9; ..."``) is placed at
        that option (``key.options.depth: ...``), one that begins with a full dotted key
        (``data.resolution: ...``) is kept, and ValueError/TypeError read ``key: message``.
        """
        factory = self.get(name, key=key)
        fixed = dict(fixed or {})
        params = inspect.signature(factory).parameters
        declared = [p for p, v in params.items() if v.kind not in (v.VAR_KEYWORD, v.VAR_POSITIONAL) and p != "self"]
        accepts_any = any(v.kind == v.VAR_KEYWORD for v in params.values())
        where = f"{key}.{options_key}" if options_key else key
        allowed = [p for p in declared if p not in fixed]
        for option in options:
            if option in fixed or (option not in declared and not accepts_any):
                raise ConfigError(
                    f"{where}: unknown option '{option}' for {self.kind} '{name}'; "
                    f"allowed: {', '.join([*common, *allowed]) or 'none'}"
                )
        kwargs = {**options, **{k: v for k, v in fixed.items() if v is not None}}
        try:
            return factory(**kwargs)
        except ConfigError as e:  # the component names its option ("depth: bad value …"); say where it is set
            msg = str(e)
            head = msg.split(":", 1)[0]
            if head in fixed:
                raise ConfigError(f"{key}.{msg}") from None
            if head in options or head in declared:
                raise ConfigError(f"{where}.{msg}") from None
            if "." in head and " " not in head:  # already a full key (data.resolution: …)
                raise
            raise ConfigError(f"{key}: {msg}") from None
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{key}: {e}") from None

    def build(
        self,
        spec: Any,
        *,
        key: str,
        name_key: str = "name",
        fixed: Mapping[str, Any] | None = None,
        common: Sequence[str] = (),
    ):
        """The one builder: config entry → registry lookup → options checked → constructed.

        ``spec`` is a mapping like ``{kind: max_norm, c: 3.0}``; ``name_key`` (here ``kind``) names
        the registered entry, ``common`` are the entry's keys the caller handles (not passed), the
        rest are options (see :meth:`create`).
        """
        name, _ = self.lookup(spec, key=key, name_key=name_key)
        options = {k: v for k, v in spec.items() if k != name_key and k not in common}
        return self.create(
            name, options, key=key, fixed=fixed, common=[name_key, *(c for c in common if c != name_key)]
        )
