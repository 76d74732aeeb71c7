"""Finds variant plugins through the `cmnist_zoo` entry-point group and lists or creates variants by name.

Each plugin is loaded on its own: one that fails to import or register is recorded and reported in one line while the
others keep working. ZOO_STRICT_PLUGINS=1 makes such failures fatal (for CI); ZOO_NO_EXTERNAL_PLUGINS=1 loads only the
plugins that ship with cmnist-zoo.
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass, field
from importlib.metadata import entry_points

import pluggy
from pydantic import BaseModel

from cmnist_zoo.config import TrainSettings, ValidationError, describe_errors
from cmnist_zoo.errors import ZooError
from cmnist_zoo.hooks import PROJECT, ZooHooks
from cmnist_zoo.variant import RegisteredVariant, Variant

ENTRY_POINT_GROUP = "cmnist_zoo"
OWN_DISTRIBUTION = "cmnist-zoo"
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


class DuplicateVariantError(ZooError):
    """Two plugins claim one name: saved runs refer to variants by name, so this is never resolved silently."""


@dataclass(frozen=True)
class PluginFailure:
    plugin: str
    distribution: str
    reason: str


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass
class Registry:
    """The loaded plugins and the variants they registered."""

    manager: pluggy.PluginManager = field(default_factory=lambda: _new_manager())
    variants: dict[str, RegisteredVariant] = field(default_factory=dict)
    failures: list[PluginFailure] = field(default_factory=list)
    _origin: dict[str, tuple[str, str]] = field(default_factory=dict)

    def add_plugin(self, plugin: object, name: str, distribution: str = "", version: str = "") -> None:
        """Register a plugin object (a module, usually) and collect its variants."""
        if self.manager.has_plugin(name):  # two entry points of one name: the first keeps it (pluggy's error is long)
            taken_by = self._origin.get(name, ("", ""))[0] or "another plugin"
            self._fail(name, distribution, f"the plugin name {name!r} is already taken by {taken_by}")
            return
        try:  # a hookimpl pluggy refuses (a misspelt argument, say) is that plugin's fault alone
            self.manager.register(plugin, name=name)
        except Exception as exc:
            detail = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())  # pluggy's spans lines
            self._fail(name, distribution, f"registering the plugin failed: {type(exc).__name__}: {detail}")
            return
        self._origin[name] = (distribution, version)
        impl = next((i for i in self.manager.hook.register_variants.get_hookimpls() if i.plugin_name == name), None)
        if impl is None:
            return
        added: list[str] = []

        def register(variant: Variant) -> None:
            self._accept(variant, name)
            added.append(variant.name)

        try:
            impl.function(register=register)
        except Exception as exc:
            for variant_name in added:  # a half-registered plugin is not left behind
                del self.variants[variant_name]
            self.manager.unregister(name=name)
            if isinstance(exc, DuplicateVariantError):
                raise
            self._fail(name, distribution, f"registering variants failed: {exc}")

    def _accept(self, variant: Variant, plugin: str) -> None:
        if not isinstance(variant, Variant):
            raise ZooError(f"plugin {plugin!r} registered {variant!r}, which is not a cmnist_zoo.Variant")
        if not _NAME.match(variant.name):
            raise ZooError(f"plugin {plugin!r} registered the variant name {variant.name!r}; use lower-case letters, "
                           "digits, '-' and '_', starting with a letter")
        if not (isinstance(variant.config, type) and issubclass(variant.config, BaseModel)):
            raise ZooError(f"variant {variant.name!r} of plugin {plugin!r}: config must be a pydantic model class")
        if not callable(variant.build):
            raise ZooError(f"variant {variant.name!r} of plugin {plugin!r}: build must be callable")
        try:
            TrainSettings.model_validate(dict(variant.train_defaults))
        except (ValidationError, TypeError, ValueError) as exc:
            detail = describe_errors(exc, "train_defaults") if isinstance(exc, ValidationError) else str(exc)
            raise ZooError(f"variant {variant.name!r} of plugin {plugin!r}: bad train_defaults: {detail}") from None
        if variant.name in self.variants:
            other = self.variants[variant.name].plugin
            raise DuplicateVariantError(f"the variant name {variant.name!r} is registered by both plugin {other!r} and plugin "
                           f"{plugin!r}; uninstall one of them")
        distribution, version = self._origin.get(plugin, ("", ""))
        self.variants[variant.name] = RegisteredVariant(variant, plugin, distribution, version)

    def _fail(self, plugin: str, distribution: str, reason: str) -> None:
        failure = PluginFailure(plugin, distribution, reason)
        if _env_flag("ZOO_STRICT_PLUGINS"):
            raise ZooError(f"plugin {plugin!r} ({distribution or 'unknown distribution'}) failed: {reason} "
                           "(ZOO_STRICT_PLUGINS is set)")
        self.failures.append(failure)

    def load_entry_points(self) -> None:
        """Load every plugin in the entry-point group, each in isolation."""
        only_own = _env_flag("ZOO_NO_EXTERNAL_PLUGINS")
        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist = ep.dist.name if ep.dist else ""
            version = ep.dist.version if ep.dist else ""
            if only_own and dist != OWN_DISTRIBUTION:
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # any import failure of a third party's code must not stop the others
                self._fail(ep.name, dist, f"import of {ep.value} failed: {type(exc).__name__}: {exc}")
                continue
            self.add_plugin(plugin, ep.name, dist, version)

    def list(self, pattern: str = "*") -> list[RegisteredVariant]:
        """Registered variants whose name matches a shell-style wildcard, sorted by name."""
        return [v for name, v in sorted(self.variants.items()) if fnmatch.fnmatch(name, pattern)]

    def get(self, name: str) -> RegisteredVariant:
        if name not in self.variants:
            known = ", ".join(sorted(self.variants)) or "none"
            raise ZooError(f"unknown variant {name!r}; installed variants: {known} (see `zoo list`)")
        return self.variants[name]


def _new_manager() -> pluggy.PluginManager:
    manager = pluggy.PluginManager(PROJECT)
    manager.add_hookspecs(ZooHooks)
    return manager


_registry: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, loaded once on first use."""
    global _registry
    if _registry is None:
        registry = Registry()
        registry.load_entry_points()
        _registry = registry
    return _registry


def reset_registry() -> None:
    """Forget the loaded plugins so the next call loads them afresh (for tests and long-lived hosts)."""
    global _registry
    _registry = None


def list_variants(pattern: str = "*") -> list[RegisteredVariant]:
    return get_registry().list(pattern)


def get_variant(name: str) -> RegisteredVariant:
    return get_registry().get(name)
