"""Which files a ``submit_final_result`` call uploads: one per result element, with resolved names."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePath
from typing import Any

from flame_sdk.storage.serialization import check_output_type

#: Extensions that fit each output type; the first one is used for generated names.
EXTENSIONS: dict[str, tuple[str, ...]] = {
    "str": (".txt", ".csv", ".tsv", ".json", ".xml", ".yaml", ".yml"),
    "pickle": (".pkl", ".pickle"),
    "bytes": (".bin", ".gz", ".zip", ".png"),
}


@dataclass(frozen=True)
class FinalFile:
    result: Any
    output_type: str
    filename: str


def generated_name(output_type: str) -> str:
    """``result_<4 hex>_<yymmddHHMMSS><ext>``, as the reference SDK names unnamed results."""
    stamp = datetime.now().strftime("%y%m%d%H%M%S")
    return f"result_{uuid.uuid4().hex[-4:]}_{stamp}{EXTENSIONS[output_type][0]}"


def indexed_name(filename: str, index: int, output_type: str) -> str:
    """``name_<index>.<ext>``; the extension is kept when it fits ``output_type``, else the default one."""
    path = PurePath(filename)
    extension = path.suffix if path.suffix.lower() in EXTENSIONS[output_type] else EXTENSIONS[output_type][0]
    return f"{path.stem}_{index}{extension}"


def _check_filename(name: object) -> str:
    if not isinstance(name, str) or not name.strip() or "/" in name or "\\" in name or name in (".", ".."):
        raise ValueError(f"filename {name!r} is not a plain file name; pass e.g. 'result.txt' or None")
    return name


def _one_per_result(value: list[Any], count: int, what: str) -> list[Any]:
    if len(value) != count:
        raise ValueError(f"{what} has {len(value)} entries but there are {count} results; give one per result")
    return value


def plan_final_files(
    result: Any, output_type: str | list[str], multiple_results: bool, filename: str | list[str] | None
) -> list[FinalFile]:
    """Resolve elements, output types and filenames; raise ValueError naming any mismatch."""
    if not multiple_results:
        types = output_type if isinstance(output_type, list) else [output_type]
        names = filename if isinstance(filename, list) else [filename]
        kind = check_output_type(_one_per_result(types, 1, "output_type list")[0])
        name = _one_per_result(names, 1, "filename list")[0]
        return [FinalFile(result, kind, _check_filename(name) if name is not None else
                          generated_name(kind))]
    if not isinstance(result, (list, tuple)):
        raise ValueError(f"multiple_results=True needs a list or tuple of results, got {type(result).__name__}; "
                         f"pass multiple_results=False to submit it as one file")
    if not result:
        raise ValueError("multiple_results=True was given an empty list: there is nothing to submit")
    count = len(result)
    types = _one_per_result(output_type, count, "output_type list") if isinstance(output_type, list) \
        else [output_type] * count
    types = [check_output_type(kind) for kind in types]
    if isinstance(filename, list):
        names = [_check_filename(n) for n in _one_per_result(filename, count, "filename list")]
        if len(set(names)) != count:
            raise ValueError(f"filename list {filename} repeats a name; give each result its own file name")
    elif filename is not None:
        _check_filename(filename)
        names = [indexed_name(filename, i + 1, kind) for i, kind in enumerate(types)]
    else:
        names = [generated_name(kind) for kind in types]
    return [FinalFile(item, kind, name) for item, kind, name in zip(result, types, names, strict=True)]
