"""A tiny name -> factory registry shared by models, losses, norms and terms.

    LOSSES = Registry("loss")

    @LOSSES.register("hinge")
    def hinge(...): ...

    LOSSES.get("hinge")      # -> the function; unknown names raise ConfigError
"""

from __future__ import annotations

from typing import Callable, Dict, Iterator, TypeVar

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

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
