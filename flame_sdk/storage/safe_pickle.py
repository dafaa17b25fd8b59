"""A restricted unpickler: intermediate data may hold plain data, numpy and pandas objects, nothing that runs.

Unpickling calls whatever the pickle names, so a partner's data (or a pickle another analysis of the project
left in local storage) could run code on this node. ``loads`` resolves only the globals of the allow-list
below (containers, numbers, text, dates, decimals, UUIDs, numpy arrays, scalars and dtypes, pandas frames,
series, indexes, extension arrays, dtypes, timestamps, periods, intervals, offsets) plus what the analysis
allows explicitly, by name or object: ``allow_unpickling(...)`` or the ``FLAME_UNPICKLE_ALLOW`` variable
(comma-separated ``module.name``; ``module.*`` allows a whole module). A pickle naming anything else raises
``UnsafePickleError`` naming it, before anything was called. Modules are imported only when they belong to
an allowed package, so naming a module cannot run its import either.
"""

from __future__ import annotations

import _compat_pickle
import importlib
import io
import os
import pickle
import sys
import threading
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

from flame_sdk.errors import FlameError
from flame_sdk.protocol.env import UNPICKLE_ALLOW

#: What plain data, numpy and pandas objects pickle to, as ``module:qualname``. Older numpy and pandas spell
#: some of them under other module paths (``numpy.core.multiarray``, ``pandas.core.frame``): a global is
#: allowed when it resolves to one of these objects.
ALLOWED_GLOBALS: tuple[str, ...] = (
    "builtins:bool", "builtins:bytearray", "builtins:bytes", "builtins:complex", "builtins:dict", "builtins:float",
    "builtins:frozenset", "builtins:int", "builtins:list", "builtins:object", "builtins:range", "builtins:set",
    "builtins:slice", "builtins:str", "builtins:tuple", "_codecs:encode", "copyreg:_reconstructor",
    "collections:Counter", "collections:OrderedDict", "collections:defaultdict", "collections:deque",
    "datetime:date", "datetime:datetime", "datetime:time", "datetime:timedelta", "datetime:timezone",
    "decimal:Decimal", "fractions:Fraction", "uuid:UUID", "zoneinfo:ZoneInfo",
    "dateutil.relativedelta:relativedelta",
    "numpy:dtype", "numpy:ndarray", "numpy.ma:MaskedArray", "numpy.ma.core:_mareconstruct",
    "numpy._core.multiarray:_reconstruct", "numpy._core.multiarray:scalar", "numpy._core.numeric:_frombuffer",
    "pandas:BooleanDtype", "pandas:Categorical", "pandas:CategoricalDtype", "pandas:CategoricalIndex",
    "pandas:DataFrame", "pandas:DateOffset", "pandas:DatetimeIndex", "pandas:DatetimeTZDtype", "pandas:Float32Dtype",
    "pandas:Float64Dtype", "pandas:Index", "pandas:Int8Dtype", "pandas:Int16Dtype", "pandas:Int32Dtype",
    "pandas:Int64Dtype", "pandas:UInt8Dtype", "pandas:UInt16Dtype", "pandas:UInt32Dtype", "pandas:UInt64Dtype",
    "pandas:Interval", "pandas:IntervalDtype", "pandas:IntervalIndex", "pandas:MultiIndex", "pandas:NA",
    "pandas:NaT", "pandas:Period", "pandas:PeriodDtype", "pandas:PeriodIndex", "pandas:RangeIndex", "pandas:Series",
    "pandas:SparseDtype", "pandas:StringDtype", "pandas:Timedelta", "pandas:TimedeltaIndex", "pandas:Timestamp",
    "pandas.arrays:BooleanArray", "pandas.arrays:DatetimeArray", "pandas.arrays:FloatingArray",
    "pandas.arrays:IntegerArray", "pandas.arrays:IntervalArray", "pandas.arrays:PeriodArray",
    "pandas.arrays:SparseArray", "pandas.arrays:StringArray", "pandas.arrays:TimedeltaArray",
    "pandas._libs.arrays:__pyx_unpickle_NDArrayBacked", "pandas._libs.internals:_unpickle_block",
    "pandas._libs.interval:__pyx_unpickle_IntervalMixin", "pandas._libs.sparse:IntIndex",
    "pandas._libs.sparse:BlockIndex", "pandas._libs.tslibs.nattype:_nat_unpickle",
    "pandas._libs.tslibs.timedeltas:_timedelta_unpickle", "pandas._libs.tslibs.timestamps:_unpickle_timestamp",
    "pandas.core.indexes.base:_new_Index", "pandas.core.indexes.datetimes:_new_DatetimeIndex",
    "pandas.core.indexes.interval:_new_IntervalIndex", "pandas.core.indexes.period:_new_PeriodIndex",
    "pandas.core.indexes.timedeltas:_new_TimedeltaIndex", "pandas.core.internals.managers:BlockManager",
    "pandas.core.internals.managers:SingleBlockManager",
)
#: Modules whose every public class pickles as plain data (pandas' date offsets: ``MonthEnd``, ``Day``...).
ALLOWED_MODULES: frozenset[str] = frozenset({"pandas._libs.tslibs.offsets"})
#: ``getattr(class, name)`` pairs that pickles use for bound class methods (``ZoneInfo._unpickle``).
ALLOWED_ATTRIBUTES: frozenset[tuple[str, str]] = frozenset({("zoneinfo:ZoneInfo", "_unpickle")})
#: Top-level packages whose modules may be imported while unpickling (their import runs library code only).
IMPORTABLE_PACKAGES: frozenset[str] = frozenset({
    "builtins", "_codecs", "copyreg", "collections", "datetime", "decimal", "fractions", "uuid", "zoneinfo",
    "dateutil", "numpy", "pandas",
})

_MISSING = object()


class UnsafePickleError(FlameError, pickle.UnpicklingError):
    """A pickle names a global outside the allow-list; nothing in it was called."""


def _spelling(obj: object) -> str:
    return f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', getattr(obj, '__name__', '?'))}"


def _split(name: str) -> tuple[str, str]:
    """``module:qualname``, or ``module.name`` (the last dot splits) -> (module, qualname)."""
    name = name.strip()
    if ":" in name:
        module, _, qualname = name.partition(":")
    else:
        module, _, qualname = name.rpartition(".")
    return module, qualname


def _resolve(module: str, qualname: str) -> object:
    """``module.qualname`` as an object (importing the module), or _MISSING."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numpy 2 warns on its numpy.core aliases
            obj: object = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError, ValueError):
        return _MISSING
    return obj


class Policy:
    """The objects a pickle may name: the built-in allow-list plus what the analysis allowed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objects: dict[int, object] | None = None
        self._names: set[tuple[str, str]] = set()
        self._modules: set[str] = set(ALLOWED_MODULES)

    def _allowed_objects(self) -> dict[int, object]:
        with self._lock:
            if self._objects is None:
                resolved = (_resolve(*_split(name)) for name in ALLOWED_GLOBALS)
                self._objects = {id(obj): obj for obj in resolved if obj is not _MISSING}
            return self._objects

    def allow(self, *items: object) -> None:
        """Allow classes or functions: objects, or names ``module.name`` / ``module:qualname`` (``module.*``
        for every public class of a module)."""
        objects = self._allowed_objects()
        for item in items:
            if isinstance(item, str):
                if item.strip().endswith(".*"):
                    self._modules.add(item.strip()[:-2])
                elif item.strip():
                    self._names.add(_split(item))
            else:
                objects[id(item)] = item

    def find(self, module: str, qualname: str, extra: Iterable[str] = ()) -> object:
        """The allowed object ``module.qualname``; UnsafePickleError otherwise (no module outside the allowed
        packages is imported, nothing is called)."""
        if (module, qualname) == ("builtins", "getattr"):
            return _checked_getattr
        names = self._names | {_split(e) for e in extra if not e.strip().endswith(".*")}
        modules = self._modules | {e.strip()[:-2] for e in extra if e.strip().endswith(".*")}
        named = (module, qualname) in names
        importable = named or module in modules or module in sys.modules \
            or module.split(".", 1)[0] in IMPORTABLE_PACKAGES
        obj = _resolve(module, qualname) if importable else _MISSING
        if obj is not _MISSING:
            known = self._allowed_objects().get(id(obj)) is obj
            public_class = module in modules and isinstance(obj, type) and not qualname.startswith("_")
            if named or known or public_class:
                return obj
        raise UnsafePickleError(
            f"refusing to unpickle {module}.{qualname}: intermediate data may only hold plain data, numpy and "
            f"pandas objects. If the sender is trusted and it is a class of your analysis, allow it with "
            f"flame_sdk.allow_unpickling('{module}:{qualname}') or {UNPICKLE_ALLOW}='{module}:{qualname}'; "
            f"nothing in the data was run")


def _checked_getattr(obj: object, name: str) -> object:
    if (_spelling(obj), name) in ALLOWED_ATTRIBUTES:
        return getattr(obj, name)
    raise UnsafePickleError(f"refusing to unpickle getattr({_spelling(obj)}, {name!r}): pickles may only use "
                            f"{sorted(ALLOWED_ATTRIBUTES)}; nothing in the data was run")


_POLICY = Policy()


def allow_unpickling(*items: object) -> None:
    """Trust more classes or functions in intermediate data, process-wide: objects, or names ``module.name``
    / ``module:qualname`` (``module.*`` for every public class of a module). Only for senders you trust."""
    _POLICY.allow(*items)


def env_allowed(env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The names ``FLAME_UNPICKLE_ALLOW`` lists (comma-separated)."""
    text = (os.environ if env is None else env).get(UNPICKLE_ALLOW, "")
    return tuple(name.strip() for name in text.split(",") if name.strip())


class _ViewReader(io.RawIOBase):
    """Reads a buffer in place (``io.BytesIO`` would copy a bytearray or memoryview first)."""

    def __init__(self, payload: bytes | bytearray | memoryview) -> None:
        super().__init__()
        self._view = memoryview(payload).cast("B")
        self._pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        count = min(len(target), len(self._view) - self._pos)
        target[:count] = self._view[self._pos : self._pos + count]
        self._pos += count
        return count


def _reader(payload: bytes | bytearray | memoryview) -> io.BufferedReader:
    return io.BufferedReader(_ViewReader(payload), buffer_size=64 * 1024)


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: io.BufferedReader, extra: tuple[str, ...], buffers: Iterable[Any] | None = None) -> None:
        super().__init__(data, buffers=buffers)
        self._extra = extra

    def find_class(self, module: str, name: str) -> Any:
        if module not in sys.modules:  # Python 2 spellings, as pickle.Unpickler maps them (fix_imports)
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        return _POLICY.find(module, name, self._extra)


def loads(payload: bytes | bytearray | memoryview, allow: Iterable[str] = (),
          buffers: Iterable[Any] | None = None) -> Any:
    """Unpickle with the allow-list, plus ``allow`` and what ``FLAME_UNPICKLE_ALLOW`` lists; ``buffers``: the
    stream's out-of-band buffers (pickle protocol 5).

    ``UnsafePickleError`` for a refused global; ``pickle.UnpicklingError`` naming the cause for anything else
    that is not a readable pickle (truncated, corrupted, or objects that do not rebuild)."""
    try:
        return _Unpickler(_reader(payload), (*env_allowed(), *allow), buffers).load()
    except UnsafePickleError:
        raise
    except (Exception, RecursionError) as exc:  # garbage makes pickle raise nearly anything
        raise pickle.UnpicklingError(f"intermediate data is not a readable pickle ({type(exc).__name__}: "
                                     f"{str(exc)[:200]}); it was truncated or corrupted, or written by an "
                                     f"incompatible library version") from None
