"""cmnist-zoo: a plugin-based zoo of autoencoders for handwritten Chinese numerals.

Plugin authors need only two names from here: `hookimpl` to mark their hook and `Variant` to describe what they
register. Importing this package stays cheap (no torch), so `zoo list` and `zoo --help` are quick.
"""

from cmnist_zoo.hooks import hookimpl
from cmnist_zoo.variant import Variant

__version__ = "0.1.0"
__all__ = ["Variant", "hookimpl", "__version__"]
