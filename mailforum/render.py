"""Jinja2 templates for outgoing mail: one Environment per list, built once.

Templates live in ``templates/`` at the top of the project. A list may override any
of them: ``[outbound] templates`` names a folder, and ``<folder>/<list>/<name>`` wins
over ``templates/<name>`` (then ``<folder>/<name>`` for a site-wide override).
Undefined variables are errors (StrictUndefined), so a typo in a template fails the
first render instead of sending blank text to thousands of people. Only ``.html.j2``
templates autoescape; text templates are mail bodies, where escaping would show as
``&amp;``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2


def _builtin_templates() -> Path:
    """The shipped templates: inside the package when installed from a wheel, else the checkout's."""
    installed = Path(__file__).resolve().parent / "templates"
    return installed if installed.is_dir() else Path(__file__).resolve().parent.parent / "templates"


BUILTIN = _builtin_templates()


def _autoescape(name: str | None) -> bool:
    return bool(name) and str(name).endswith((".html.j2", ".html"))


class Renderer:
    """Renders named templates for a list, with the list's overrides first."""

    def __init__(self, override_dir: str | Path | None = None, builtin: Path = BUILTIN) -> None:
        self._override = Path(override_dir) if override_dir else None
        self._builtin = builtin
        self._envs: dict[str, jinja2.Environment] = {}

    def environment(self, list_name: str) -> jinja2.Environment:
        env = self._envs.get(list_name)
        if env is None:
            search: list[Path] = []
            if self._override is not None:
                search += [self._override / list_name, self._override]
            search.append(self._builtin)
            env = jinja2.Environment(
                loader=jinja2.FileSystemLoader([str(p) for p in search]),
                undefined=jinja2.StrictUndefined,
                autoescape=_autoescape,
                keep_trailing_newline=True,
                trim_blocks=True,
                lstrip_blocks=True,
            )
            self._envs[list_name] = env
        return env

    def render(self, list_name: str, template: str, context: dict[str, Any]) -> str:
        return self.environment(list_name).get_template(template).render(context)
