"""``channel.SIP``: custom SIP header fields sent with a call, and those received.

UAS's ``SIPHeaderField`` and the channel's ``SIP`` property: :attr:`ChannelSIP.
HeaderFieldsToSend` are added to the INVITE that :meth:`~uascall.channel.UASCallChannel.call`
sends and to the 200 OK of :meth:`~uascall.channel.UASCallChannel.answer`; as in UAS only
custom ``X-`` fields can be sent, so an application cannot break the signalling by
accident. :meth:`ChannelSIP.request_header_field` reads any field of the INVITE that
started an incoming call. On backends other than SIP nothing is sent and nothing is
received (there is no such thing as a header field on an ISDN or analog line).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from uascall.backref import BackRef
from uascall.errors import ArgumentError

if TYPE_CHECKING:
    from uascall.channel import UASCallChannel

#: RFC 3261's token characters: what UAS allows in a header field name
_NAME = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")


class SIPHeaderField:
    """One header field: a name and one or more values (UAS ``SIPHeaderField``)."""

    def __init__(self, header_field_name: str, header_value: str | None = None) -> None:
        if not isinstance(header_field_name, str) or not _NAME.fullmatch(header_field_name):
            raise ArgumentError(f"SIP header field name {header_field_name!r}; expected "
                                "letters, digits and -.!%*_+`'~ only")
        self._name = header_field_name
        self._values: list[str] = []
        if header_value is not None:
            self.add_value(header_value)

    def __repr__(self) -> str:
        return f"SIPHeaderField({self._name!r}, {self._values!r})"

    def add_value(self, value: str) -> None:
        if not isinstance(value, str) or "\r" in value or "\n" in value or "\0" in value:
            raise ArgumentError(f"SIP header field value {value!r}; expected one line of text")
        self._values.append(value.strip())

    def get_name(self) -> str:
        return self._name

    def get_values(self) -> list[str]:
        return list(self._values)


class ChannelSIP:
    """The ``SIP`` property of a channel (UAS ``channel.SIP``)."""

    _channel: BackRef[UASCallChannel] = BackRef()

    def __init__(self, channel: UASCallChannel) -> None:
        self._channel = channel
        #: fields call() and answer() add to the INVITE / 200 OK (custom X- fields only)
        self.HeaderFieldsToSend: list[SIPHeaderField] = []

    def request_header_field(self, name: str) -> SIPHeaderField | None:
        """The field ``name`` of the INVITE that started this call (any field, compact
        forms and case ignored), or None when it had none or the call is not SIP."""
        values = self._channel._leg.received_header(name)
        if not values:
            return None
        field = SIPHeaderField(name)
        for value in values:
            field.add_value(value)
        return field

    def fields_to_send(self) -> list[tuple[str, str]]:
        """HeaderFieldsToSend as (name, value) pairs; Error naming a field that is not
        a custom ``X-`` field."""
        pairs = []
        for field in self.HeaderFieldsToSend:
            if not isinstance(field, SIPHeaderField):
                raise ArgumentError(f"HeaderFieldsToSend holds {field!r}; expected "
                                    "SIPHeaderField objects")
            if not field.get_name().lower().startswith("x-"):
                raise ArgumentError(f"SIP header field {field.get_name()!r} cannot be sent; "
                                    "expected a custom field whose name starts with X-")
            pairs += [(field.get_name(), value) for value in field.get_values()]
        return pairs
