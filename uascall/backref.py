"""A part's reference back to the object it is part of, held weakly.

A channel's players, recorder, detector and SIP fields each hold the channel, and the
channel holds them: with plain references every finished call is a reference cycle, which
only Python's cyclic garbage collector frees. At hundreds of calls a second that is tens
of thousands of objects for each of its full passes to scan, and a pass long enough
(100-300 ms) to hold the engine past overload control's limit. With the way back weak,
a call's objects go as soon as the last strong reference does.
"""

from __future__ import annotations

import weakref
from typing import Any, Generic, TypeVar

from uascall.errors import Error

Owner = TypeVar("Owner")


class BackRef(Generic[Owner]):
    """A descriptor: ``part.attr = owner`` keeps a weak reference; ``part.attr`` returns
    the owner, or raises :class:`~uascall.errors.Error` once it is gone (a part used
    after its owner was dropped is the caller's mistake)."""

    def __set_name__(self, cls: type, name: str) -> None:
        self._slot = f"_{name}_ref"
        self._what = f"{cls.__name__}.{name}"

    def __get__(self, part: Any, cls: type | None = None) -> Owner:
        if part is None:
            return self  # type: ignore[return-value]
        owner = getattr(part, self._slot)()
        if owner is None:
            raise Error(f"{self._what}: the object this belongs to is gone; expected it "
                        "to be kept while its parts are used")
        return owner

    def __set__(self, part: Any, owner: Owner) -> None:
        setattr(part, self._slot, weakref.ref(owner))
