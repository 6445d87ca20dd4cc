"""A tab's inputs, declared once: an ordered table of (name, component).

The event's input list, the handler's signature (from which Gradio names the public API's parameters) and the
keyword arguments the tab's `to_request(**values)` receives all come from this one table, so reordering or adding
a widget cannot shift a value into the wrong parameter:

    table = InputTable([("init_image", init_image), ("strength", strength)], controls.fields(), ui.shared_fields())
    event(table.handler(run), table.components, ...)   # run(values: dict) receives {"init_image": ..., ...}
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

NO_DEFAULT = inspect.Parameter.empty


@dataclass(frozen=True)
class Input:
    name: str  # the public API parameter name and the key in the values dict
    component: Any
    api_default: Any = NO_DEFAULT  # a default in the signature lets API callers leave the parameter out


class InputTable:
    def __init__(self, *groups: Iterable[Input | tuple]):
        self.inputs: list[Input] = [row if isinstance(row, Input) else Input(*row) for group in groups for row in group]
        names = [row.name for row in self.inputs]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"input names must be unique, repeated: {repeated}")
        defaults = [row.api_default is not NO_DEFAULT for row in self.inputs]
        if any(defaults) and not all(defaults[defaults.index(True):]):
            raise ValueError("inputs with an API default must come after every input without one")

    @property
    def names(self) -> list[str]:
        return [row.name for row in self.inputs]

    @property
    def components(self) -> list[Any]:
        return [row.component for row in self.inputs]

    def handler(self, run: Callable[[dict[str, Any]], Iterator]) -> Callable[..., Iterator]:
        """A generator function taking the table's values positionally (as Gradio calls it) under the table's
        names (as Gradio's API describes it); it calls run({name: value})."""
        names = self.names

        def handler(*values):
            yield from run(dict(zip(names, values)))

        handler.__name__ = getattr(run, "__name__", "handler")
        handler.__signature__ = inspect.Signature([
            inspect.Parameter(row.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=row.api_default)
            for row in self.inputs])
        return handler
