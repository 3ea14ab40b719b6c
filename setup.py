"""Packaging for uascall (build-system and tool settings live in pyproject.toml)."""

from setuptools import find_packages, setup

setup(
    name="uascall",
    version="0.2.0",
    description=("A blocking, thread-per-call telephony channel API in the style of Aculab "
                 "UAS over DAHDI boards (FXO/FXS, ISDN PRI via libpri), SIP/RTP and a "
                 "simulated DAHDI kernel"),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="GPL-2.0-or-later",
    python_requires=">=3.11",
    packages=find_packages(include=["uascall", "uascall.*"]),
    install_requires=["pyserial>=3.5", "numpy>=1.24", "soxr>=0.3.7",
                      # uascall monitor's terminal view; --metrics's Prometheus text
                      "rich>=13", "prometheus-client>=0.17"],
    extras_require={"test": ["pytest>=7.4", "pytest-xdist>=3.5", "ruff>=0.4",
                             # the vm rig reruns once what failed while its guest was held
                             "pytest-rerunfailures>=16.7",
                             # uascall monitor in a pseudo-terminal, its screen read back
                             "pexpect>=4.8", "pyte>=0.8"]},
    entry_points={
        "console_scripts": ["uascall = uascall.cli:main",
                            # an emulated voice modem on a pty, for trying --backend modem
                            "uascall-modem-emulator = uascall.modem.emulator:main"],
        # Backends by name; another package can add its own under this group.
        "uascall.backends": [
            "dahdi = uascall.dahdi.backend:DahdiBackend",
            "modem = uascall.modem.backend:ModemBackend",
            "sim = uascall.sim.backend:SimBackend",
            "sip = uascall.sip.backend:SipBackend",
        ],
    },
    # The demo's application and its media, found by `uascall demo` after a normal install.
    data_files=[
        ("share/uascall/examples", ["examples/early_media.py", "examples/ivr.py"]),
        ("share/uascall/examples/media", ["examples/media/goodbye.wav"]),
    ],
    classifiers=[
        "Programming Language :: Python :: 3",
        "Operating System :: POSIX :: Linux",
        "Topic :: Communications :: Telephony",
    ],
)
