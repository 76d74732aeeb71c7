"""The hook specifications plugins implement; the project's whole plugin contract lives here."""

import pluggy

PROJECT = "cmnist_zoo"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class ZooHooks:
    @hookspec
    def register_variants(self, register):
        """Call register(Variant(...)) once for each autoencoder variant this plugin provides."""
