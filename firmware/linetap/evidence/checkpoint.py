"""Signed checkpoints: the chain's length and head, signed by the box's device key.

A checkpoint is the contract's object (docs/CONTRACT.md, "Evidence")::

    {"id": recorder id, "ts": ISO UTC, "length": chain entries, "head": hash of entry <length>,
     "key": Ed25519 public key (hex), "signature": hex, over
     json.dumps({"id", "ts", "length", "head"}, sort_keys=True, separators=(",", ":"))}

The recorder signs one each time the chain grows (housekeeping, within a second of a call
being chained, so within 10 s of the call's end), publishes it retained on MQTT, puts the
newest in ``status.json`` and in every ``call_ended`` event. Anyone who kept one can later
ask :func:`check` whether this box's chain still holds, unchanged, every entry up to it:
deleting the newest calls with their chain rows (truncation) or rebuilding the chain from
scratch (rewriting) both fail against a checkpoint seen off the box.

Only the signing itself needs the key (:mod:`linetap.sign`, loaded lazily); reading and
checking a checkpoint needs nothing but the standard library (:mod:`.export_verify`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..clock import Clock, iso
from ..index import evidence as db
from ..index.db import Index
from . import EvidenceError, chain
from .export_verify import checkpoint_message, checkpoint_signed, fingerprint

if TYPE_CHECKING:
    from ..sign import DeviceKey

logger = logging.getLogger(__name__)

META_KEY = "checkpoint"  # the newest checkpoint, as JSON, in the index's meta table


@dataclass(frozen=True, slots=True)
class Checkpoint:
    id: str
    ts: str
    length: int
    head: str
    key: str
    signature: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.key)


def sign(key: DeviceKey, *, recorder_id: str, length: int, head: str, now: float) -> Checkpoint:
    """A checkpoint of (length, head) signed now (pure apart from the signature)."""
    body = {"id": recorder_id, "ts": iso(now), "length": length, "head": head}
    return Checkpoint(**body, key=key.public_hex, signature=key.sign_hex(checkpoint_message(body)))


def parse(doc: Any) -> Checkpoint:
    """A checkpoint from its dict, its JSON text, or a file holding the JSON (EvidenceError if not one)."""
    if isinstance(doc, (str, Path)):
        text = str(doc)
        if not text.lstrip().startswith("{"):
            try:
                text = Path(text).read_text(encoding="utf-8")
            except OSError as e:
                raise EvidenceError(f"checkpoint {doc}: {e.strerror or e}") from e
        try:
            doc = json.loads(text)
        except ValueError as e:
            raise EvidenceError(f"not a checkpoint (not JSON): {e}") from e
    if isinstance(doc, dict) and isinstance(doc.get("checkpoint"), dict):
        doc = doc["checkpoint"]  # a call_ended event or a status document holding one
    try:
        cp = Checkpoint(id=str(doc["id"]), ts=str(doc["ts"]), length=doc["length"], head=str(doc["head"]),
                        key=str(doc["key"]), signature=str(doc["signature"]))
    except (KeyError, TypeError) as e:
        raise EvidenceError(f"not a checkpoint: missing {e}") from e
    if not isinstance(cp.length, int) or isinstance(cp.length, bool) or cp.length < 0:
        raise EvidenceError(f"not a checkpoint: length {cp.length!r}")
    return cp


def signature_ok(cp: Checkpoint) -> bool:
    return checkpoint_signed(cp.as_dict())


def check(index: Index, cp: Checkpoint, *, recorder_id: str | None = None,
          device_key_hex: str | None = None) -> list[tuple[str, str]]:
    """What is wrong between this chain and a checkpoint seen off the box, as (kind, detail)
    with kind ``checkpoint`` (the checkpoint itself), ``truncated`` or ``rewritten``; [] = it holds.

    The signature must verify; the chain must still have entry ``cp.length`` with hash
    ``cp.head`` (entries 1..length are then fixed by the hash links, which
    :func:`linetap.evidence.verify.verify` checks). ``recorder_id`` and ``device_key_hex``,
    if given, must match the checkpoint's (a checkpoint of another box proves nothing here).
    """
    problems: list[tuple[str, str]] = []
    if not signature_ok(cp):
        problems.append(("checkpoint", f"the checkpoint's signature does not verify (key {cp.fingerprint}): it was "
                        "altered or not made by a linetap box"))
    if recorder_id is not None and cp.id != recorder_id:
        problems.append(("checkpoint", f"the checkpoint is of box {cp.id!r}, not of this box ({recorder_id!r})"))
    if device_key_hex is not None and cp.key != device_key_hex:
        problems.append(("checkpoint", f"the checkpoint was signed by key {cp.fingerprint}, this box's key is "
                                       f"{fingerprint(device_key_hex)}: the device key was replaced"))
    if cp.length == 0:
        return problems
    length, _ = chain.head(index)
    row = db.chain_entry(index, cp.length)
    if row is None:
        problems.append(("truncated", f"the checkpoint of {cp.ts} covers {cp.length} chain entries, the chain "
                                      f"now has {length}: entries {length + 1}..{cp.length} were removed"))
    elif row["hash"] != cp.head:
        problems.append(("rewritten", f"chain entry {cp.length} has hash {row['hash'][:16]}..., the checkpoint "
                                      f"of {cp.ts} signed {cp.head[:16]}...: the chain up to it was rebuilt or "
                                      "altered"))
    return problems


def latest(index: Index) -> Checkpoint | None:
    """The newest checkpoint this box signed (kept in the index), or None."""
    text = index.get_meta(META_KEY)
    if not text:
        return None
    try:
        return parse(text)
    except EvidenceError:
        return None


def covering(index: Index, seq: int) -> Checkpoint | None:
    """The newest signed checkpoint if it covers chain entry ``seq`` (its ``length`` reaches it), else None.

    Only the newest is kept on the box (``meta``); it covers every entry chained before it was signed,
    so a call is covered about a second after it is chained (housekeeping). With it, a call's proof
    (its entry, the links up to ``length`` and the signature) checks off the box with the device's
    public key alone (:mod:`.export_verify`)."""
    cp = latest(index)
    return cp if cp is not None and cp.length >= seq else None


class Checkpointer:
    """Signs a checkpoint whenever the chain's head moved (housekeeping calls :meth:`tick`
    every second), keeps it in the index and hands it to ``publish`` (the MQTT link, the
    status board)."""

    def __init__(self, index: Index, key: DeviceKey, *, recorder_id: str, clock: Clock,
                 publish: Callable[[Checkpoint], None]) -> None:
        self.index = index
        self.key = key
        self.recorder_id = recorder_id
        self.clock = clock
        self.publish = publish
        self.latest = latest(index)
        if self.latest is not None and (self.latest.key != key.public_hex or self.latest.id != recorder_id):
            self.latest = None  # signed by another key or under another name: sign afresh

    def tick(self) -> Checkpoint | None:
        """A new checkpoint if the chain changed since the last one (else None; the last is republished
        at start so a fresh broker has it)."""
        length, head = chain.head(self.index)
        cp = self.latest
        if cp is None or cp.length != length or cp.head != head:
            cp = sign(self.key, recorder_id=self.recorder_id, length=length, head=head, now=self.clock.wall())
            self.index.set_meta(META_KEY, json.dumps(cp.as_dict(), sort_keys=True))
            self.latest = cp
            logger.debug("checkpoint: %d entries, head %s", length, head[:16])
            self.publish(cp)
            return cp
        return None
