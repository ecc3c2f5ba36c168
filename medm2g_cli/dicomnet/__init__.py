"""DICOM networking: send instances to a peer (C-STORE SCU) and run a Storage SCP node.

Pure networking on pynetdicom and pydicom: nothing here imports torch. The node's inference step is
a callback the command supplies (:mod:`medm2g_cli.commands.dicom_node`).
"""

from __future__ import annotations

from .peer import DicomNetworkError, Peer, parse_peer, validate_ae_title

__all__ = ["DicomNetworkError", "Peer", "parse_peer", "validate_ae_title"]
