"""Settings the built-in variants share. No torch here: `zoo list` imports every plugin's settings."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

Width = Annotated[int, Field(ge=1, le=1024)]
ConvWidths = tuple[Width, Width, Width]


def widths_field():
    return Field((64, 48, 32), description="filters of the three conv blocks (each 1..1024)")
