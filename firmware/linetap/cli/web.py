"""``linetap web``: the web interface (HTTPS by default; ``--insecure-http`` behind a reverse proxy or in tests)."""

from __future__ import annotations

import argparse
import getpass
import importlib
import re
import sys

from .base import Command, load_config
from .errors import EXIT_OK, UsageError


def listen_arg(text: str) -> tuple[str, int]:
    m = re.fullmatch(r"\[?([0-9A-Za-z.:-]*?)\]?:([0-9]{1,5})", text)
    if not m or not 0 < int(m.group(2)) < 65536:
        raise argparse.ArgumentTypeError(f"must be HOST:PORT, e.g. 0.0.0.0:8443, not {text!r}")
    return m.group(1) or "0.0.0.0", int(m.group(2))


def return_big_allocations_to_the_kernel(threshold_bytes: int = 1 << 20) -> bool:
    """Each argon2 check allocates 19 MiB (web/passwords.py). glibc's malloc raises its mmap threshold
    after the first such block is freed, so later ones come from the heap and stay resident: the web
    process would keep ~20 MB it uses for 0.1 s per login. A fixed threshold (``M_MMAP_THRESHOLD``)
    makes every block of 1 MiB or more its own mapping, unmapped when freed. False where there is no
    glibc (nothing to do)."""
    import ctypes
    import ctypes.util
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(-3, threshold_bytes))  # -3: M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        return False


def import_index_without_numpy() -> None:
    """Import the index adapter without loading numpy (17 MB resident).

    sqlite-utils imports numpy if it is installed, only to store numpy values, which the web
    interface never writes; a process that only serves pages then carries numpy for nothing.
    Hiding it while sqlite-utils is imported leaves sqlite-utils without numpy support in this
    process; numpy itself still loads on first real use (a proof bundle's export reads the audio).
    """
    if "numpy" in sys.modules or "sqlite_utils" in sys.modules:
        return
    sys.modules["numpy"] = None  # type: ignore[assignment]  # import numpy -> ImportError
    try:
        importlib.import_module("linetap.index.db")  # imports sqlite_utils
    finally:
        del sys.modules["numpy"]


def cmd_web(args: argparse.Namespace) -> int:
    return_big_allocations_to_the_kernel()
    import_index_without_numpy()
    if args.hash_password:
        from ..web.passwords import hash_password
        print(hash_password(_password_twice()))
        return EXIT_OK
    if not args.config:
        raise UsageError("-c/--config is required")
    from ..index.db import open_index
    from ..web import app, service, tls

    cfg = load_config(args)
    host, port = args.listen or listen_arg(cfg.web.listen)
    state = service.web_dir(cfg)
    state.mkdir(mode=0o750, parents=True, exist_ok=True)
    certfile = keyfile = None
    fp = None
    if not args.insecure_http:
        if cfg.web.tls_cert and cfg.web.tls_key:
            certfile, keyfile = cfg.web.tls_cert, cfg.web.tls_key
        else:
            certfile, keyfile = tls.self_signed(state, cfg.recorder.id)
        fp = tls.fingerprint(certfile)
        tls.remember_fingerprint(state, fp)
    index = open_index(cfg.recorder.data_dir)
    try:
        token = service.first_admin(index, cfg, state)
        if token:
            print(f"linetap web: no admin yet: log in as 'admin' with the setup token {token}", file=sys.stderr)
        svc = service.WebService(cfg, index, secret=service.box_secret(state), state_dir=state, fingerprint=fp)
        print(f"linetap web: {'https' if certfile else 'http'}://{host}:{port}/"
              + (f" (certificate SHA-256 {fp})" if fp else ""), file=sys.stderr, flush=True)
        app.serve(svc, host=host, port=port, certfile=str(certfile) if certfile else None,
                  keyfile=str(keyfile) if keyfile else None)
    finally:
        index.close()
    return EXIT_OK


def _password_twice() -> str:
    """A new password: asked twice on a terminal, or two equal lines of stdin."""
    if sys.stdin.isatty():
        first, second = getpass.getpass("New password: "), getpass.getpass("Again: ")
    else:
        first, second = sys.stdin.readline().rstrip("\n"), sys.stdin.readline().rstrip("\n")
    if first != second:
        raise UsageError("the two passwords differ")
    if len(first) < 8:
        raise UsageError("password: at least 8 characters")
    return first


def _arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--listen", type=listen_arg, metavar="HOST:PORT", help="default: web.listen")
    sp.add_argument("--insecure-http", action="store_true",
                    help="plain HTTP (behind a TLS reverse proxy, or in tests)")
    sp.add_argument("--hash-password", action="store_true",
                    help="print the argon2 hash of a password (for web.admin_password_hash) and exit")


COMMANDS = (Command("web", "the web interface: find, play and download calls", cmd_web, _arguments,
                    config="optional"),)
