"""The evidence commands: verify, hold, release, export, erase, decrypt, keygen.

Each returns the exit code: 0 done, 1 failed (verify found problems, a recording is
still being recorded); every other failure is raised and ``linetap.cli.errors`` says
it in one line (a file that does not decrypt, an unknown call: exit 1; a bad argument:
exit 2).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from ..config import Config
from .base import Command, call_id_arg, load_config
from .errors import EXIT_FAIL, EXIT_OK, CliError, UsageError

SEALED_ID_RE = re.compile(r"_(\d+)\.[a-z0-9]+\.sealed$")


def _index(cfg: Config) -> Any:
    from ..index.db import open_index
    data_dir = Path(cfg.recorder.data_dir)
    if not (data_dir / "index.db").is_file():
        raise CliError(f"no index at {data_dir / 'index.db'}: has the recorder run with this config?")
    return open_index(data_dir)


# --- commands -----------------------------------------------------------------

def cmd_hold(args: argparse.Namespace) -> int:
    from ..evidence import hold
    cfg = load_config(args)
    index = _index(cfg)
    try:
        placed = hold.hold(index, args.call_id, reason=args.reason)
    finally:
        index.close()
    print(f"call {args.call_id} is on legal hold" + ("" if placed else " (already)"))
    return EXIT_OK


def cmd_release(args: argparse.Namespace) -> int:
    from ..evidence import hold
    cfg = load_config(args)
    index = _index(cfg)
    try:
        released = hold.release(index, args.call_id)
    finally:
        index.close()
    print(f"call {args.call_id}: legal hold released" if released else f"call {args.call_id} was not on hold")
    return EXIT_OK


def _device_key_hex(data_dir: Path) -> str | None:
    """The box's public key, if this user may read the key file (else the checkpoint's own key is used)."""
    from .. import sign
    try:
        return sign.load(sign.key_path(data_dir)).public_hex
    except sign.SigningError:
        return None


def cmd_verify(args: argparse.Namespace) -> int:
    from ..evidence import EvidenceError, checkpoint
    from ..evidence.verify import verify
    cfg = load_config(args)
    against = None
    if args.checkpoint is not None:
        try:
            against = checkpoint.parse(args.checkpoint)
        except EvidenceError as e:
            raise UsageError(f"--checkpoint: {e}") from e
    index = _index(cfg)
    try:
        report = verify(index, cfg.recorder.data_dir, rehash=not args.quick, against=against,
                        recorder_id=cfg.recorder.id, device_key_hex=_device_key_hex(Path(cfg.recorder.data_dir)))
    finally:
        index.close()
    if args.json:
        print(json.dumps({"ok": report.ok, "recordings": report.recordings, "files_checked": report.files_checked,
                          "chain": {"entries": report.entries, "head_seq": report.head_seq,
                                    "head_hash": report.head_hash},
                          "problems": [{"kind": p.kind, "call_id": p.call_id, "path": p.path, "detail": p.detail}
                                       for p in report.problems]}))
    else:
        for p in report.problems:
            print(p)
        state = "intact" if report.ok else f"{len(report.problems)} problem(s)"
        if against is not None and report.ok:
            state += f", and holds every entry up to the checkpoint of {against.ts} ({against.length} entries, " \
                     f"key {against.fingerprint})"
        print(f"{report.recordings} recordings, {report.files_checked} files checked, chain of {report.entries} "
              f"entries (head {report.head_seq} {report.head_hash[:16]}): {state}")
    return EXIT_OK if report.ok else EXIT_FAIL


def cmd_export(args: argparse.Namespace) -> int:
    from ..evidence.export import export_call
    cfg = load_config(args)
    if args.key is not None and not Path(args.key).is_file():
        raise UsageError(f"--key: {args.key}: no such file")
    index = _index(cfg)
    try:
        res = export_call(index, cfg.recorder.data_dir, args.call_id, Path(args.to),
                          key_path=Path(args.key) if args.key else None, recorder_id=cfg.recorder.id)
    finally:
        index.close()
    for f in res.files:
        print(f)
    return EXIT_OK


def cmd_erase(args: argparse.Namespace) -> int:
    from ..evidence.erase import erase_number
    from ..evidence.erasure_requests import normalize_number  # the web's erase form checks numbers the same way
    try:
        number = normalize_number(args.number)
    except ValueError as e:
        raise UsageError(f"--number: {e}, not {args.number!r}") from None
    cfg = load_config(args)
    index = _index(cfg)
    try:
        res = erase_number(index, cfg.recorder.data_dir, number)
    finally:
        index.close()
    print(f"erased {len(res.erased)} recording(s) with caller number {number}"
          + (f": {', '.join(map(str, res.erased))}" if res.erased else ""))
    if res.cleared:
        print(f"cleared it from {len(res.cleared)} other call(s) where it was the forwarded-from number or a "
              f"call-waiting caller: {', '.join(map(str, res.cleared))}")
    if res.held:
        print(f"kept {len(res.held)} on legal hold: {', '.join(map(str, res.held))} (release them, then erase again)")
    if res.recording:
        print(f"kept {len(res.recording)} still being recorded: {', '.join(map(str, res.recording))} "
              "(erase again once they end)")
    return EXIT_OK if not res.recording else EXIT_FAIL


def cmd_decrypt(args: argparse.Namespace) -> int:
    from .. import crypto
    src, key, out = Path(args.file), Path(args.key), Path(args.out)
    if not src.is_file():
        raise UsageError(f"FILE: {src}: no such file")
    if not key.is_file():
        raise UsageError(f"--key: {key}: no such file")
    if out.exists():
        raise UsageError(f"--out: {out} already exists; not overwriting")
    cfg = load_config(args) if args.config else None
    res = crypto.decrypt_file(src, out, key)
    if cfg is not None:
        # On the box (or with a copy of its index): the read is audited.
        from ..evidence import audit
        m = SEALED_ID_RE.search(src.name)
        index = _index(cfg)
        try:
            audit.record(index, "decrypt", int(m.group(1)) if m else None, detail=f"{src.name} -> {out}")
        finally:
            index.close()
    print(f"{out}: {res.bytes} bytes, sha256 {res.sha256}"
          + ("" if res.complete else " (the recording was cut by a crash: this is its valid prefix, "
             "everything that had reached the disk)"))
    return EXIT_OK


def cmd_keygen(args: argparse.Namespace) -> int:
    from .. import crypto
    pub, key = crypto.generate_keypair(Path(args.out))
    print(f"public key:  {pub}   -> copy to the recorder, set [storage] encrypt_to = \"{pub.name}\" (its path)")
    print(f"private key: {key}   -> keep it OFF the recorder; without it no recording can be decrypted")
    print("both are age keys: without linetap, decrypt with the age tool and unseal.py (see the README)")
    return EXIT_OK


# --- registration -------------------------------------------------------------


def _call_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("call_id", type=call_id_arg, metavar="CALL_ID")


def _hold_arguments(sp: argparse.ArgumentParser) -> None:
    _call_arguments(sp)
    sp.add_argument("--reason", help="why (kept with the hold)")


def _verify_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--json", action="store_true", help="one JSON document")
    sp.add_argument("--quick", action="store_true", help="compare file sizes only, do not re-hash")
    sp.add_argument("--checkpoint", metavar="FILE|JSON",
                    help="a signed checkpoint seen off the box (MQTT linetap/<id>/checkpoint): fail unless the chain "
                         "still holds, unchanged, every entry up to it")


def _export_arguments(sp: argparse.ArgumentParser) -> None:
    _call_arguments(sp)
    sp.add_argument("--to", required=True, metavar="DIR", help="directory to write the export into")
    sp.add_argument("--key", metavar="PRIVATE_KEY", help="also write the decrypted audio (encrypted stores)")


def _erase_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--number", required=True, metavar="DIGITS")


def _decrypt_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("file", metavar="FILE")
    sp.add_argument("--key", required=True, metavar="PRIVATE_KEY")
    sp.add_argument("--out", required=True, metavar="FILE")


def _keygen_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--out", required=True, metavar="DIR")


COMMANDS = (
    Command("verify", "re-hash every recording and check the tamper-evidence chain", cmd_verify, _verify_arguments),
    Command("hold", "put a recording on legal hold (exempt from every deletion)", cmd_hold, _hold_arguments),
    Command("release", "lift a legal hold", cmd_release, _call_arguments),
    Command("export", "export a recording with its metadata and chain proof", cmd_export, _export_arguments),
    Command("erase", "privacy request: delete every recording of a caller number", cmd_erase, _erase_arguments),
    # With -c the decryption is audited in that box's index; without, it runs anywhere (off the box).
    Command("decrypt", "decrypt a .sealed recording (age stream or older sealed file) with the off-box private key",
            cmd_decrypt, _decrypt_arguments,
            config="optional"),
    Command("keygen", "make an age key pair for [storage] encrypt_to", cmd_keygen, _keygen_arguments,
            config="optional"),
)
