"""``linetap firstboot``: apply the ``linetap.toml`` an installer put on the boot partition.

The work is ``linetap.firstboot``'s, which also stays runnable on its own
(``python -m linetap.firstboot``, as ``linetap-firstboot.service`` runs it): this
command passes the same options on to its ``main``, so both entry points behave alike.
Exit 0 when the file was applied or there was none, 1 when it was rejected (with
``linetap-error.txt`` beside it on the boot partition).
"""

from __future__ import annotations

import argparse

from .base import Command


def cmd_firstboot(args: argparse.Namespace) -> int:
    from .. import firstboot
    argv = ["--boot", str(args.boot), "--data", str(args.data)]
    if args.machine_id is not None:
        argv += ["--machine-id", str(args.machine_id)]
    if args.root is not None:
        argv += ["--root", str(args.root)]
    if args.fault_blink_s is not None:
        argv += ["--fault-blink-s", repr(args.fault_blink_s)]
    return firstboot.main(argv)


def _arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--boot", required=True, metavar="DIR", help="the mounted FAT boot partition")
    sp.add_argument("--data", required=True, metavar="DIR", help="the mounted data partition (data dir)")
    sp.add_argument("--machine-id", metavar="FILE",
                    help="keep this machine id file stable across boots (/etc/machine-id on the box)")
    sp.add_argument("--root", metavar="DIR",
                    help="write the [network] settings, time zone and host name under this root (/ on the box)")
    sp.add_argument("--fault-blink-s", type=float, metavar="S",
                    help="how long the status LED blinks for a rejected file (default 20)")


COMMANDS = (Command("firstboot", "apply linetap.toml from the boot partition (run at boot, before the recorder)",
                    cmd_firstboot, _arguments, config="none"),)
