"""Build plugins.zip for an Airflow that takes its plugins as one archive (MWAA style).

The zip holds everything under plugins/ (the `mailtrace` package, the `mailtrace_ui.py` entry point,
`.airflowignore`) with the repository's sql/ and templates/ beside them at its root, where
`mailtrace.paths` looks for them:

    python -m devtools.plugins_zip dist/plugins.zip      # or: make plugins-zip
"""

from __future__ import annotations

import argparse
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def _members(root: Path) -> list[Path]:
    return sorted(
        path
        for path in root.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    )


def build_plugins_zip(target: Path, repo_root: Path = REPO_ROOT) -> list[str]:
    """Write the archive to `target`; return the names it holds."""
    target.parent.mkdir(parents=True, exist_ok=True)
    sources = [(repo_root / "plugins", path) for path in _members(repo_root / "plugins")]
    sources += [(repo_root, path) for folder in ("sql", "templates") for path in _members(repo_root / folder)]
    names = []
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        for base, path in sources:
            name = path.relative_to(base).as_posix()
            bundle.write(path, name)
            names.append(name)
    return names


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("target", type=Path, nargs="?", default=REPO_ROOT / "dist" / "plugins.zip")
    args = parser.parse_args()
    names = build_plugins_zip(args.target)
    print(f"{args.target}: {len(names)} files")


if __name__ == "__main__":
    main()
