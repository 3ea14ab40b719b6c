"""Far ends for analog ports: the exchange behind an FXO port, the phone behind an FXS port.

On a looped pair of spans configured by :func:`analog_loop_conf`, channel *n* of span 1 is
``fxoks`` (an exchange's line card, or our FXS port facing a phone) and channel *n* of
span 2 is ``fxsks`` (a phone or a PBX's line port: our FXO port). Both far ends here drive
real DAHDI channels through :mod:`uascall.dahdi.device`, so they run on the simulated
kernel and on the real driver alike.
"""

from __future__ import annotations


def analog_loop_conf(channels: int = 24, *, law: str = "ulaw") -> str:
    """system.conf for one dahdi_dynamic_loc pair of analog ports: channels
    1..``channels`` fxoks (span 1), the next ``channels`` fxsks (span 2), wired 1 to 1."""
    if not 1 <= channels <= 48:
        raise ValueError(f"{channels} channels; expected 1..48")
    last = 2 * channels
    lines = [
        f"# {channels} analog lines looped: fxoks (exchange side) <-> fxsks (phone side)",
        f"dynamic=loc,1:0,{channels},0",
        f"dynamic=loc,1:1,{channels},0",
        f"fxoks=1-{channels}",
        f"fxsks={channels + 1}-{last}",
    ]
    if law == "alaw":
        lines.append(f"alaw=1-{last}")
    elif law != "ulaw":
        raise ValueError(f"law {law!r}; expected 'alaw' or 'ulaw'")
    lines += ["loadzone=us", "defaultzone=us", ""]
    return "\n".join(lines)
