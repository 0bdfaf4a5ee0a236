"""A name -> builder registry; one instance each for models, features and augmentations."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sertk.errors import SertkError


@dataclass(frozen=True)
class Entry:
    name: str
    builder: Callable[..., Any]
    summary: str
    paper: str


class Registry:
    """Maps names to builders: ``@REG.register("name", summary=..., paper=...)``."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, summary: str = "", paper: str = ""
                 ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def deco(builder: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            doc = (builder.__doc__ or "").strip().splitlines()
            self._entries[name] = Entry(name, builder, summary or (doc[0] if doc else ""), paper)
            return builder

        return deco

    def get(self, name: str) -> Entry:
        if name not in self._entries:
            known = ", ".join(sorted(self._entries))
            raise SertkError(f"unknown {self.kind} {name!r}; known: {known}")
        return self._entries[name]

    def build(self, name: str, **cfg: Any) -> Any:
        entry = self.get(name)
        try:
            return entry.builder(**cfg)
        except TypeError as exc:
            raise SertkError(f"bad options for {self.kind} {name!r}: {exc}") from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: str) -> bool:
        return name in self._entries
