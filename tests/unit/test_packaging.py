import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _folders(top: Path, package: str) -> set[str]:
    """Every folder under ``top`` that holds a file, as a package name under ``package``."""
    return {
        ".".join([package, *folder.relative_to(top).parts])
        for folder in [top, *top.rglob("*")]
        if folder.is_dir() and folder.name != "__pycache__" and any(p.is_file() for p in folder.iterdir())
    }


def test_every_subpackage_and_the_templates_ship():
    setup = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setup["packages"])
    found = {
        ".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "mailforum").rglob("__init__.py")
    }
    assert found <= listed, f"add {sorted(found - listed)} to [tool.setuptools] packages"
    assert setup["package-dir"]["mailforum.templates"] == "templates"
    assert (ROOT / "templates").is_dir()


def test_data_folders_are_listed_so_setuptools_does_not_warn_about_them():
    """Issue 13: a shipped folder missing from `packages` costs a screenful of warnings
    per folder on every `make run`; listed, each needs its files in package-data."""
    setup = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setup["packages"])
    folders = _folders(ROOT / "mailforum", "mailforum") | _folders(ROOT / "templates", "mailforum.templates")
    assert folders <= listed, f"add {sorted(folders - listed)} to [tool.setuptools] packages"
    data_only = {p for p in folders if not (ROOT.joinpath(*p.split(".")) / "__init__.py").is_file()}
    missing = data_only - set(setup["package-data"])
    assert not missing, f"add {sorted(missing)} to [tool.setuptools.package-data]"
