"""Jinja2, in one place: the templates of outgoing mail and of the web.

Templates live in ``templates/`` at the top of the project, and every environment
is built here by ``environment`` with the same rules: undefined variables are errors
(StrictUndefined), so a typo in a template fails the first render instead of sending
blank text to thousands of people or showing it on a page; block tags leave no blank
lines. The two kinds of template differ only where they must:

- **Mail** (``Renderer``): one environment per list. A list may override any template:
  ``[outbound] templates`` names a folder, and ``<folder>/<list>/<name>`` wins over
  ``templates/<name>`` (then ``<folder>/<name>`` for a site-wide override). Only
  ``.html.j2`` (and ``.html``) templates autoescape; text templates are mail bodies,
  where escaping would show as ``&amp;``. A trailing newline is kept.
- **Web** (``WebTemplates``): ``templates/web/``, no overrides. Every template
  autoescapes (``.html`` pages and the ``.atom`` feed); the caller passes the filters
  its pages use and a ``finalize`` applied to every printed value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2


def _builtin_templates() -> Path:
    """The shipped templates: inside the package when installed from a wheel, else the checkout's."""
    installed = Path(__file__).resolve().parent / "templates"
    return installed if installed.is_dir() else Path(__file__).resolve().parent.parent / "templates"


BUILTIN = _builtin_templates()


def environment(
    search: Sequence[Path], autoescape: bool | Callable[[str | None], bool], **options: Any
) -> jinja2.Environment:
    """A Jinja2 environment over the folders in ``search`` (first match wins), with this
    project's rules (StrictUndefined, trim_blocks, lstrip_blocks) and ``options`` on top."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(p) for p in search]),
        undefined=jinja2.StrictUndefined,
        autoescape=autoescape,
        trim_blocks=True,
        lstrip_blocks=True,
        **options,
    )


def _autoescape(name: str | None) -> bool:
    return bool(name) and str(name).endswith((".html.j2", ".html"))


class Renderer:
    """Renders named mail templates for a list, with the list's overrides first."""

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
            env = environment(search, _autoescape, keep_trailing_newline=True)
            self._envs[list_name] = env
        return env

    def render(self, list_name: str, template: str, context: dict[str, Any]) -> str:
        return self.environment(list_name).get_template(template).render(context)


class WebTemplates:
    """The web's templates (``web/…`` under ``templates/``), every one autoescaped."""

    def __init__(
        self,
        filters: Mapping[str, Callable[..., Any]],
        finalize: Callable[[Any], Any],
        builtin: Path = BUILTIN,
    ) -> None:
        self.builtin = builtin
        self._env = environment(
            [builtin],
            jinja2.select_autoescape(["html", "atom", "xml"], default_for_string=True, default=True),
            finalize=finalize,
        )
        self._env.filters.update(filters)

    def render(self, template: str, values: Mapping[str, Any]) -> str:
        return self._env.get_template(template).render(values)
