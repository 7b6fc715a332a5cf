r"""The one table of drift schemes: :func:`register_scheme`, the scheme modules (loaded lazily from two explicit
lists), :func:`make_scheme` / :func:`build_schemes`, ``--schemes`` parsing and :func:`default_schemes`.

**Adding a scheme**: write its module (a :class:`~metacomm.drift.protocol.DriftScheme` subclass registered with
``register_scheme(name, group=...)``) and add the module to :data:`BUILTIN_MODULES` (``group="builtin"``) or
:data:`PACK_MODULES` (a scenario pack's scheme, ``group="pack"``). Nothing else: ``--schemes``, the help text,
the default list and the registry contract test (``tests/drift/test_scheme_contract.py``) read the table.

**The default schemes** of a run (:func:`default_schemes`) are the registered schemes with ``default=True`` whose
``needs`` are met by the scenario and the codec: ``"tracker"`` (the codec carries a meta-learned tracker),
``"linear_tracker"`` (it also carries the fixed-tap tracker trained alongside a PA/phase-noise correction),
``"tx_pa"`` (a segment has a transmitter PA), ``"phase_noise"`` (a segment has receiver phase noise) -- in
registration order.

**Settings**: a scheme's settings are its constructor keywords. The registration gives defaults
(``register_scheme("meta", policy="every-frame")``); a run overrides them per scheme with
``scheme_settings={"retrain": {"every": 5}}`` or on the command line with ``--schemes retrain[every=5]``
(:func:`parse_schemes`).
"""

from __future__ import annotations

import importlib
import inspect
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from metacomm._validation import ConfigError
from metacomm.drift.protocol import DriftScheme

__all__ = ["register_scheme", "scheme_names", "make_scheme", "build_schemes", "parse_schemes", "default_schemes",
           "scheme_entry", "split_items", "SchemeEntry", "NEEDS", "BUILTIN_MODULES", "PACK_MODULES", "GROUPS"]

#: modules whose import registers the built-in schemes, in the order of the help text and the default list
BUILTIN_MODULES = ("metacomm.drift.schemes.adaptive", "metacomm.drift.schemes.tracking", "metacomm.drift.schemes.ls",
                   "metacomm.drift.schemes.model_based", "metacomm.drift.schemes.reference",
                   "metacomm.drift.schemes.ofdm")
#: modules whose import registers the scenario packs' schemes (adversarial, label noise, compression)
PACK_MODULES = ("metacomm.drift.schemes.adversarial", "metacomm.drift.schemes.label_noise",
                "metacomm.drift.schemes.quantized")
GROUPS = ("builtin", "pack")


def has_tx_pa(scenario) -> bool:
    """Whether a segment of ``scenario`` (a loaded DriftScenario) has a transmitter PA."""
    from metacomm.scenarios.drift_track import PA_IMPAIRMENTS
    return any(s.impairment is not None and s.impairment.name in PA_IMPAIRMENTS and s.impairment.position == "tx"
               for s in getattr(scenario, "segments", ()))


def has_phase_noise(scenario) -> bool:
    """Whether a segment of ``scenario`` (a loaded DriftScenario) has receiver Wiener phase noise."""
    return any(s.impairment is not None and s.impairment.name == "phase-noise"
               for s in getattr(scenario, "segments", ()))


#: what a scheme may need to be in the default list: predicate(scenario, codec)
NEEDS: dict[str, Callable[[object, object], bool]] = {
    "tracker": lambda scenario, codec: hasattr(codec, "tracker"),
    "linear_tracker": lambda scenario, codec: hasattr(codec, "linear_tracker"),
    "tx_pa": lambda scenario, codec: scenario is not None and has_tx_pa(scenario),
    "phase_noise": lambda scenario, codec: scenario is not None and has_phase_noise(scenario),
}


@dataclass(frozen=True)
class SchemeEntry:
    """One row of the table: the class, its registration keywords, group, default flag and needs."""

    name: str
    cls: type
    kwargs: dict
    group: str
    default: bool
    needs: tuple[str, ...]
    seq: int = 0

    @property
    def rank(self) -> tuple[int, int]:
        """Listing order: the scheme module's place in the module lists (others after them), then registration
        order -- the same whichever module was imported first."""
        mods = BUILTIN_MODULES + PACK_MODULES
        mod = self.cls.__module__
        return (mods.index(mod) if mod in mods else len(mods), self.seq)

    def setting_names(self) -> tuple[str, ...]:
        """The constructor keywords a run may set (``--schemes NAME[key=value]``)."""
        sig = inspect.signature(self.cls.__init__)
        return tuple(p.name for p in list(sig.parameters.values())[2:]
                     if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))


_REGISTRY: dict[str, SchemeEntry] = {}
_loaded = False


def register_scheme(name: str, *, group: str = "builtin", default: bool = False, needs: Sequence[str] = (),
                    **kwargs) -> Callable[[type[DriftScheme]], type[DriftScheme]]:
    """Class decorator: register ``cls`` as scheme ``name``; ``make_scheme(name)`` builds ``cls(name, **kwargs)``.

    ``group``: ``"builtin"`` or ``"pack"``; ``default``: in the default list when ``needs`` (keys of
    :data:`NEEDS`) are met. One class may be registered under several names with different ``kwargs``. Raises
    ConfigError for a malformed or taken name, an unknown group or need, or a class that is not a
    :class:`DriftScheme` implementing ``decide``."""
    if not isinstance(name, str) or not name or any(c in name for c in ",[]= ") or name != name.strip():
        raise ConfigError("name", f"a scheme name is a non-empty string without commas, brackets, '=' or spaces, "
                                  f"got {name!r}")
    if group not in GROUPS:
        raise ConfigError("group", f"unknown group {group!r}; allowed: {', '.join(GROUPS)}")
    bad = [n for n in needs if n not in NEEDS]
    if bad:
        raise ConfigError("needs", f"unknown need {bad[0]!r}; allowed: {', '.join(NEEDS)}")

    def deco(cls):
        if not (isinstance(cls, type) and issubclass(cls, DriftScheme)):
            raise ConfigError("scheme", f"{cls!r} is not a DriftScheme subclass")
        if cls.decide is DriftScheme.decide:
            raise ConfigError("scheme", f"{cls.__name__} does not implement decide(signals)")
        if name in _REGISTRY:
            raise ConfigError("name", f"scheme {name!r} is already registered ({_REGISTRY[name].cls.__name__})")
        _REGISTRY[name] = SchemeEntry(name, cls, dict(kwargs), group, bool(default), tuple(needs), len(_REGISTRY))
        return cls

    return deco


def _load() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for mod in BUILTIN_MODULES + PACK_MODULES:
            importlib.import_module(mod)


def scheme_names(group: str | None = None) -> tuple[str, ...]:
    """Registered scheme names in registration order (built-ins first, then the packs', then any registered
    later); ``group`` selects one group."""
    _load()
    if group is not None and group not in GROUPS:
        raise ConfigError("group", f"unknown group {group!r}; allowed: {', '.join(GROUPS)}")
    return tuple(e.name for e in _ordered() if group is None or e.group == group)


def _ordered() -> list[SchemeEntry]:
    return sorted(_REGISTRY.values(), key=lambda e: e.rank)


def scheme_entry(name: str, field: str = "schemes") -> SchemeEntry:
    """The table row of ``name`` (ConfigError naming ``field`` and listing the names otherwise)."""
    _load()
    if name not in _REGISTRY:
        raise ConfigError(field, f"unknown scheme {name!r}; allowed: {', '.join(scheme_names())}")
    return _REGISTRY[name]


def make_scheme(name: str, settings: Mapping | None = None, field: str = "schemes") -> DriftScheme:
    """A fresh scheme object by registered name, with the registration's keywords overridden by ``settings``
    (ConfigError naming ``field`` for an unknown name or setting, listing the allowed ones)."""
    e = scheme_entry(name, field)
    settings = dict(settings or {})
    allowed = e.setting_names()
    bad = [k for k in settings if k not in allowed]
    if bad:
        raise ConfigError(field, f"scheme {name!r} has no setting {bad[0]!r}; allowed: "
                                 f"{', '.join(allowed) or 'none'}")
    try:
        return e.cls(name, **{**e.kwargs, **settings})
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:
        raise ConfigError(field, f"scheme {name!r}: {err}") from None


def build_schemes(names: Sequence[str], settings: Mapping[str, Mapping] | None = None) -> list[DriftScheme]:
    """The scheme objects of a run, in result-row order: each named scheme (with ``settings[name]``) followed by
    its companions."""
    settings = settings or {}
    out: list[DriftScheme] = []
    for nm in names:
        s = make_scheme(nm, settings.get(nm))
        out.append(s)
        out.extend(s.companions())
    return out


def split_items(text: str) -> list[str]:
    """A ``--schemes`` string split at the commas outside brackets: ``"a,b[x=1,y=2]"`` -> ``["a", "b[x=1,y=2]"]``."""
    items, depth, cur = [], 0, ""
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
        else:
            cur += ch
    items.append(cur)
    return items


def _parse_item(item: str, field: str) -> tuple[str, dict]:
    name, sep, rest = item.partition("[")
    name = name.strip()
    if not sep:
        return name, {}
    if not rest.endswith("]"):
        raise ConfigError(field, f"{item!r}: settings are NAME[key=value,key=value]")
    out = {}
    for kv in rest[:-1].split(","):
        key, eq, val = kv.partition("=")
        if not eq or not key.strip():
            raise ConfigError(field, f"{item!r}: settings are NAME[key=value,key=value]")
        try:
            out[key.strip()] = json.loads(val)
        except ValueError:
            out[key.strip()] = val.strip()
    return name, out


def parse_schemes(text: str | Sequence[str], field: str = "schemes") -> tuple[list[str], dict[str, dict]]:
    """``"meta,retrain[every=5,steps=50],genie"`` (or a sequence of such items) -> ``(names without duplicates,
    {name: settings})``; every name registered and every setting one of the scheme's constructor keywords
    (values are JSON where they parse, else strings). ConfigError naming ``field`` otherwise."""
    names_all = scheme_names()
    raw = split_items(text) if isinstance(text, str) else list(text)
    items = [s.strip() for s in raw if isinstance(s, str) and s.strip()]
    if not isinstance(text, str) and any(not isinstance(s, str) for s in text):
        raise ConfigError(field, f"expected scheme names (strings), got {list(text)!r}")
    if not items:
        raise ConfigError(field, f"give at least one scheme; allowed: {', '.join(names_all)}")
    names: list[str] = []
    settings: dict[str, dict] = {}
    for it in items:
        nm, st = _parse_item(it, field)
        if nm not in names_all:
            raise ConfigError(field, f"unknown scheme {nm!r}; allowed: {', '.join(names_all)}")
        if st:
            allowed = _REGISTRY[nm].setting_names()
            bad = [k for k in st if k not in allowed]
            if bad:
                raise ConfigError(field, f"scheme {nm!r} has no setting {bad[0]!r}; allowed: "
                                         f"{', '.join(allowed) or 'none'}")
            settings.setdefault(nm, {}).update(st)
        if nm not in names:
            names.append(nm)
    return names, settings


def default_schemes(scenario=None, codec=None) -> list[str]:
    """The default scheme list of a run of ``scenario`` (a loaded DriftScenario, or None) with ``codec`` (or
    None): every ``default=True`` scheme whose needs both meet (module docstring) and that decides the scenario's
    kind of link (``scenario.link_kind``: ``"block"`` unless the scenario says otherwise, e.g. ``"ofdm"``), in
    registration order."""
    _load()
    link = getattr(scenario, "link_kind", "block")
    return [e.name for e in _ordered() if e.default and link in getattr(e.cls, "links", ("block",))
            and all(NEEDS[need](scenario, codec) for need in e.needs)]
