"""DICOM peers (``AE@host:port``), AE titles, and the network error class."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import ConfigError, MedM2GError


class DicomNetworkError(MedM2GError):
    """A DICOM peer could not be reached, refused the association, or did not store everything."""


_AE_OK = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # printable ASCII without backslash (PS3.5 AE VR)
_HOST_OK = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)$")


def validate_ae_title(title: str, what: str = "AE title") -> str:
    """Return ``title`` stripped if it is a valid AE title (1-16 printable ASCII characters, no
    backslash, not blank); :class:`ConfigError` otherwise."""
    t = title.strip()
    if not t or not _AE_OK.match(t):
        raise ConfigError(f"{what} '{title}' is not a valid DICOM AE title",
                          "use 1-16 letters, digits, '-' or '_' (no backslash), e.g. MEDM2G")
    return t


@dataclass(frozen=True)
class Peer:
    """A remote Application Entity: its AE title, host and TCP port."""

    ae_title: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


def parse_peer(spec: str, option: str = "--to") -> Peer:
    """Parse ``AE@host:port`` (IPv6 hosts in brackets: ``AE@[::1]:104``)."""
    example = f"e.g. {option} ORTHANC@127.0.0.1:4242"
    ae, sep, rest = spec.strip().rpartition("@")
    if not sep or not ae:
        raise ConfigError(f"{option} '{spec}' is not AE@host:port", example)
    host, sep, port_s = rest.rpartition(":")
    if not sep or not host or not port_s.isdigit():
        raise ConfigError(f"{option} '{spec}' lacks a port (AE@host:port)", example)
    port = int(port_s)
    if not 1 <= port <= 65535:
        raise ConfigError(f"{option} '{spec}': port {port} is not in 1..65535", example)
    if not _HOST_OK.match(host):
        raise ConfigError(f"{option} '{spec}': '{host}' is not a host name or IP address", example)
    return Peer(validate_ae_title(ae, f"{option} AE title"), host.strip("[]"), port)
