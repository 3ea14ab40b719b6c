"""Voice modems (V.253 / IS-101 "AT+V" commands): the ``modem`` backend and an emulated
modem for CI (see :mod:`uascall.modem.backend` and :mod:`uascall.modem.emulator`)."""
