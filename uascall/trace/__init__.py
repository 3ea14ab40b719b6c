"""Traces of what uascall sends and receives, for Wireshark.

- :mod:`uascall.trace.taps`: the taps at the two I/O seams (devices, UDP), on every engine;
- :mod:`uascall.trace.device`: the device seam's tap, a DeviceIO;
- :mod:`uascall.trace.pcapng`: pcapng blocks and packets, written and read back;
- :mod:`uascall.trace.tracer`: a trace file written by a thread of its own;
- :mod:`uascall.trace.command`: ``--trace`` and its options for the ``uascall`` command.

This package imports nothing but its own ``taps`` module until asked: the engine imports
that one.
"""
