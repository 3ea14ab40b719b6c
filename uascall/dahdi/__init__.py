"""The DAHDI backend: channel devices through /dev/dahdi ioctls and ISDN PRI through libpri.

Importing this package loads nothing: libpri is loaded by :mod:`uascall.dahdi.libpri` on
first use, so analog-only and simulated set-ups work without it.
"""
