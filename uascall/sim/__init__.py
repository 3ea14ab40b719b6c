"""The simulated DAHDI kernel: the real :mod:`uascall.dahdi` code runs on it, with no boards."""
