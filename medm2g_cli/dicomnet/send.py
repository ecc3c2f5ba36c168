"""C-STORE SCU: send DICOM files to a peer, several files per association.

The SOP classes and transfer syntaxes of the files are read from their headers and proposed as
presentation contexts (at most 128 per association, the PS3.8 limit; more start another
association). Nothing is lost silently: every file ends up in :attr:`SendReport.sent` or in
:attr:`SendReport.failed` with the reason (peer unreachable, association rejected, SOP class or
transfer syntax refused, a failure status from the peer, not a DICOM file).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from .peer import DicomNetworkError, Peer

MAX_CONTEXTS = 128
# C-STORE warning statuses (the instance was stored): coercion, elements discarded, type mismatch.
_WARNINGS = (0xB000, 0xB006, 0xB007)
_UNCOMPRESSED = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2")  # explicit / implicit VR little endian

Log = Callable[[str], None]


@dataclass
class SendReport:
    """What :func:`send_files` did: files stored by the peer, files not stored and why."""

    peer: str
    sent: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    associations: int = 0
    seconds: float = 0.0
    # set when every failure has one association-level cause (unreachable, rejected, nothing accepted)
    association_error: str | None = None

    @property
    def ok(self) -> bool:
        """True when every file was stored."""
        return not self.failed

    def error(self) -> DicomNetworkError | None:
        """The one-line error for the CLI, or None when everything was sent."""
        if self.ok:
            return None
        n, total = len(self.failed), len(self.failed) + len(self.sent)
        if self.association_error and not self.sent:
            return DicomNetworkError(f"{self.association_error}: none of the {total} file(s) was sent",
                                     "check the peer's AE title, host, port and that it accepts this AE; "
                                     "then send again")
        first = self.failed[0][1]
        return DicomNetworkError(f"{n} of {total} file(s) were not sent to {self.peer} (first: {first})",
                                 "the files not sent are listed above; fix the cause and send them again")

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly report."""
        return {"peer": self.peer, "sent": [str(p) for p in self.sent],
                "failed": [{"file": str(p), "reason": r} for p, r in self.failed],
                "associations": self.associations, "seconds": round(self.seconds, 3), "ok": self.ok}


@dataclass
class _Item:
    path: Path
    sop_class: str
    transfer_syntax: str


def collect_files(inputs: Iterable[Path]) -> list[Path]:
    """Files to send: each file as given, every non-hidden file under each folder (sorted)."""
    out: list[Path] = []
    for p in inputs:
        p = Path(p)
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and not any(
                part.startswith(".") for part in f.relative_to(p).parts))
        elif p.is_file():
            out.append(p)
        else:
            raise InputError(f"'{p}' does not exist", "pass DICOM files or folders holding them")
    if not out:
        raise InputError("no files to send", "pass a folder holding DICOM files, or the files themselves")
    return out


def _header(path: Path) -> _Item | str:
    """The file's SOP class and transfer syntax, or the reason it cannot be sent."""
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    try:
        ds = dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID", "SOPInstanceUID"])
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        return f"not a DICOM file ({' '.join(str(exc).split())[:80]})"
    meta = getattr(ds, "file_meta", None)
    sop = (meta.get("MediaStorageSOPClassUID") if meta is not None else None) or ds.get("SOPClassUID")
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    if not sop or not ts or not ds.get("SOPInstanceUID"):
        return "not a DICOM Part 10 file (no SOP class, SOP instance or transfer syntax in its header)"
    return _Item(path, str(sop), str(ts))


def sop_name(uid: str) -> str:
    """'CT Image Storage (1.2.840...)' or the bare UID when pydicom does not know it."""
    from pydicom.uid import UID

    name = UID(uid).name
    return f"{name} ({uid})" if name and name != uid else uid


def _contexts(items: Sequence[_Item]) -> list[tuple[str, list[str]]]:
    """(SOP class, transfer syntaxes) to propose, in first-seen order. Uncompressed files also offer
    the other uncompressed syntax: pynetdicom converts between them if the peer prefers it."""
    found: dict[str, list[str]] = {}
    for it in items:
        tss = found.setdefault(it.sop_class, [])
        for ts in (it.transfer_syntax, *(_UNCOMPRESSED if it.transfer_syntax in _UNCOMPRESSED else ())):
            if ts not in tss:
                tss.append(ts)
    return list(found.items())


def _unreachable(peer: Peer, timeout: float) -> str | None:
    """Why a TCP connection to the peer fails, or None if it opens (checked only after a failure)."""
    try:
        with socket.create_connection((peer.host, peer.port), timeout=timeout):
            return None
    except OSError as exc:
        return exc.strerror or type(exc).__name__


def _association_failure(assoc: Any, peer: Peer, rejection: dict[str, str], timeout: float) -> str:
    if assoc.is_rejected:
        why = rejection.get("reason", "no reason given")
        return f"DICOM peer {peer} rejected the association ({why})"
    refused = list(getattr(assoc, "rejected_contexts", []) or [])
    if refused and not assoc.accepted_contexts:
        names = sorted({sop_name(str(cx.abstract_syntax)) for cx in refused})
        return f"DICOM peer {peer} refused every SOP class / transfer syntax offered ({', '.join(names[:3])})"
    down = _unreachable(peer, timeout)
    if down:
        return f"cannot reach DICOM peer {peer} ({down})"
    return f"DICOM peer {peer} aborted the association"


def send_files(files: Sequence[Path], peer: Peer, *, calling_ae: str = "MEDM2G", timeout: float = 30.0,
               log: Log | None = None) -> SendReport:
    """C-STORE ``files`` to ``peer``; returns a :class:`SendReport` (never raises for network trouble)."""
    from pynetdicom import AE, evt

    t0 = time.perf_counter()
    rep = SendReport(str(peer))
    items: list[_Item] = []
    for f in files:
        h = _header(Path(f))
        if isinstance(h, str):
            rep.failed.append((Path(f), h))
        else:
            items.append(h)
    contexts = _contexts(items)
    assoc_errors: set[str] = set()
    for start in range(0, len(contexts), MAX_CONTEXTS):
        chunk = dict(contexts[start:start + MAX_CONTEXTS])
        ae = AE(ae_title=calling_ae)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
        ae.connection_timeout = timeout
        for sop, tss in list(chunk.items()):
            try:
                ae.add_requested_context(sop, tss)
            except ValueError as exc:  # a malformed UID in a file's header
                del chunk[sop]
                rep.failed += [(it.path, f"invalid SOP class or transfer syntax UID ({' '.join(str(exc).split())[:80]})")
                               for it in items if it.sop_class == sop]
        todo = [it for it in items if it.sop_class in chunk]
        if not todo:
            continue
        rejection: dict[str, str] = {}

        def on_acse(event: Any, rejection: dict[str, str] = rejection) -> None:
            prim = event.primitive
            if getattr(prim, "result", None) in (1, 2):  # A-ASSOCIATE-RJ
                rejection["reason"] = f"{prim.reason_str}; {prim.result_str}"

        assoc = ae.associate(peer.host, peer.port, ae_title=peer.ae_title,
                             evt_handlers=[(evt.EVT_ACSE_RECV, on_acse)])
        rep.associations += 1
        if not assoc.is_established:
            why = _association_failure(assoc, peer, rejection, min(timeout, 5.0))
            assoc_errors.add(why)
            rep.failed += [(it.path, why) for it in todo]
            if log:
                log(why)
            continue
        try:
            accepted = {(str(cx.abstract_syntax), str(cx.transfer_syntax[0])) for cx in assoc.accepted_contexts}
            accepted_sops = {sop for sop, _ in accepted}
            for i, it in enumerate(todo):
                if it.sop_class not in accepted_sops:
                    rep.failed.append((it.path, f"peer refused SOP class {sop_name(it.sop_class)}"))
                    continue
                if (it.sop_class, it.transfer_syntax) not in accepted and it.transfer_syntax not in _UNCOMPRESSED:
                    rep.failed.append((it.path, f"peer refused transfer syntax {sop_name(it.transfer_syntax)}"))
                    continue
                if not assoc.is_established:
                    rep.failed += [(x.path, f"association with {peer} ended early") for x in todo[i:]]
                    break
                try:
                    status = assoc.send_c_store(it.path)
                except (ValueError, AttributeError, OSError) as exc:
                    rep.failed.append((it.path, f"could not send: {' '.join(str(exc).split())[:120]}"))
                    continue
                code = int(status.get("Status", -1)) if status else -1
                if code == 0 or code in _WARNINGS:
                    rep.sent.append(it.path)
                elif code == -1:
                    rep.failed.append((it.path, f"no response from {peer} (timeout or aborted association)"))
                else:
                    comment = str(status.get("ErrorComment", "") or "").strip()
                    rep.failed.append((it.path, f"peer answered status 0x{code:04X}" + (f" ({comment})" if comment else "")))
        finally:
            if assoc.is_established:
                assoc.release()
    if rep.failed and len(assoc_errors) == 1 and all(r in assoc_errors for _, r in rep.failed):
        rep.association_error = next(iter(assoc_errors))
    rep.seconds = time.perf_counter() - t0
    return rep
