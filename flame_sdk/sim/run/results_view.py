"""Final results on disk: ``<results>/<analysis id>/<file>``; shown as tables when they are CSV."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pandas as pd


def save(results_dir: Path, analysis_id: str, files: list[tuple[str, bytes]]) -> list[Path]:
    """Write result files of one analysis; return their paths."""
    folder = results_dir / analysis_id
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, content in files:
        path = folder / Path(name).name
        path.write_bytes(content)
        paths.append(path)
    return paths


def as_table(content: bytes) -> pd.DataFrame | None:
    """Parse CSV text into a DataFrame, or None when the content is not tabular."""
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return None
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < 2 or "," not in lines[0]:
        return None
    try:
        frame = pd.read_csv(io.StringIO(text))
    except (pd.errors.ParserError, ValueError):
        return None
    return frame.convert_dtypes() if frame.shape[1] > 1 else None


def render(content: bytes) -> str:
    """Human view of a result: a table for CSV, indented JSON, text, or a size for binary data."""
    table = as_table(content)
    if table is not None:
        with pd.option_context("display.max_rows", 200, "display.max_columns", 50, "display.width", 160):
            return str(table.to_string(index=False))
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return f"<{len(content)} bytes of binary data>"
    try:
        return json.dumps(json.loads(text), indent=2)
    except ValueError:
        return text


def print_file(path: Path) -> None:
    print(f"== {path.name} ==")
    print(render(path.read_bytes()))


def show(results_dir: Path, analysis: str | None, file: str | None, out: str | None) -> int:
    """The ``flame-sim results`` command."""
    if not results_dir.is_dir():
        print(f"no results folder at {results_dir}; run `flame-sim run ...` first")
        return 1
    runs = sorted(p for p in results_dir.iterdir() if p.is_dir())
    if analysis is None:
        for run in runs:
            names = sorted(f.name for f in run.iterdir())
            print(f"{run.name}: {', '.join(names) or '(no files)'}")
        return 0
    matches = [r for r in runs if r.name.startswith(analysis)]
    if len(matches) != 1:
        print(f"analysis {analysis!r} matches {len(matches)} result folders: {[m.name for m in matches]}")
        return 1
    files = sorted(matches[0].iterdir())
    chosen = [f for f in files if file is None or f.name == file]
    if not chosen:
        print(f"no file {file!r} in {matches[0]}; files: {[f.name for f in files]}")
        return 1
    for path in chosen:
        if out:
            Path(out).mkdir(parents=True, exist_ok=True)
            print(shutil.copy2(path, Path(out) / path.name))
        else:
            print_file(path)
    return 0
