"""The public API matches the FLAME Python Core SDK docs: every documented method, parameter and default."""

from __future__ import annotations

import ast
import inspect
import os
import re
from pathlib import Path

import pytest

import flame
import flame_sdk
from flame_sdk import AsyncFlameCoreSDK, FlameCoreSDK

_DOCS_PATH = Path("shared") / "reference" / "flame-core-sdk-docs.txt"
#: Where the docs are when the checkout is not beside them (then a missing file fails instead of skipping).
DOCS_VARIABLE = "FLAME_CORE_SDK_DOCS"
#: The docs sit beside the repository (as in CI: the clone and ``shared`` are siblings), or beside a folder
#: above it (a worktree): the first parent that has them.
DOCS = Path(os.environ[DOCS_VARIABLE]) if os.environ.get(DOCS_VARIABLE) else next(
    (p / _DOCS_PATH for p in Path(__file__).resolve().parents if (p / _DOCS_PATH).exists()), _DOCS_PATH)


def documented_signatures() -> dict[str, list[tuple[str, object]]]:
    """{method name: [(parameter, default or inspect.Parameter.empty), ...]} parsed from the docs."""
    text = DOCS.read_text()
    found: dict[str, list[tuple[str, object]]] = {}
    for match in re.finditer(r"^(\w+)\(", text, flags=re.M):
        name, start, depth = match.group(1), match.end(), 1
        end = start
        while depth and end < len(text):
            depth += {"(": 1, ")": -1}.get(text[end], 0)
            end += 1
        params_src = text[start:end - 1]
        try:
            tree = ast.parse(f"def {name}({params_src}): pass")
        except SyntaxError:
            continue  # an example call, not a signature
        args = tree.body[0].args
        is_signature = text[end:end + 3] == " ->" if not args.args else all(a.annotation for a in args.args)
        if not is_signature:
            continue
        defaults = [inspect.Parameter.empty] * (len(args.args) - len(args.defaults)) + [
            ast.literal_eval(d) for d in args.defaults
        ]
        found[name] = [(a.arg, d) for a, d in zip(args.args, defaults, strict=True)]
    return found


@pytest.mark.skipif(not DOCS.exists() and not os.environ.get(DOCS_VARIABLE),
                    reason=f"the FLAME docs are not beside the repository (set {DOCS_VARIABLE} to the file)")
@pytest.mark.parametrize("sdk_class", [FlameCoreSDK, AsyncFlameCoreSDK])
def test_every_documented_method_has_the_documented_parameters_and_defaults(sdk_class: type) -> None:
    documented = documented_signatures()
    assert len(documented) >= 30, sorted(documented)
    for name, params in documented.items():
        if name == "FlameCoreSDK":
            target = FlameCoreSDK.__init__ if sdk_class is FlameCoreSDK else AsyncFlameCoreSDK.create
        else:
            target = getattr(sdk_class, name, None)
            assert target is not None, f"{sdk_class.__name__} lacks documented method {name}"
            assert inspect.iscoroutinefunction(target) == (sdk_class is AsyncFlameCoreSDK), name
        actual = [p for p in inspect.signature(target).parameters.values()
                  if p.name != "self" and p.kind is not inspect.Parameter.KEYWORD_ONLY]
        assert [p.name for p in actual] == [p for p, _ in params], name
        for (pname, default), parameter in zip(params, actual, strict=True):
            assert parameter.default == default, f"{name}({pname}=...): {parameter.default!r} != {default!r}"


def test_import_paths_of_the_docs():
    assert flame.FlameCoreSDK is flame_sdk.FlameCoreSDK is FlameCoreSDK
    assert flame_sdk.AsyncFlameCoreSDK is AsyncFlameCoreSDK
