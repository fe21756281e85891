"""Check a device config file exactly as the firmware will: every error with its JSON path.

The checks are the firmware's own: firmware.config.validate (the same code that runs on the
board at boot) and, when the config has a "board" section, hal.esp32.board.validate_board
(pins, UARTs, button names). Exit 0 only for a config the firmware accepts; 1 with every
error listed otherwise; 2 when the file cannot be read.
"""
import json
import os

from firmware import config as fwconfig
from tools.device import ToolError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def add_arguments(p):
    p.add_argument("config", metavar="CONFIG", help="config file (JSON)")
    p.add_argument("--json", action="store_true", help="print the errors as JSON ({path, message} list)")


def board_validator():
    """hal.esp32.board_check.validate_board: the firmware's own check (machine-free module)."""
    from hal.esp32.board_check import validate_board
    return validate_board


def load(path):
    """The parsed JSON of path; ToolError naming the file and the place of a syntax error."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ToolError("cannot read %s: %s" % (path, e.strerror or e), 2)
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ToolError("%s: not UTF-8 text (byte %d)" % (path, e.start))
    except ValueError as e:
        raise ToolError("%s: not valid JSON: %s" % (path, e))


def check(cfg):
    """[(json_path, message)] for cfg: the firmware validator plus the board section."""
    errors = list(fwconfig.validate(cfg))
    if isinstance(cfg, dict) and "board" in cfg:
        errors += board_validator()(cfg["board"])
    return errors


def run(args):
    cfg = load(args.config)
    errors = check(cfg)
    if args.json:
        print(json.dumps({"file": args.config, "ok": not errors,
                          "errors": [{"path": p, "message": m} for p, m in errors]},
                         ensure_ascii=False, indent=1))
        return 1 if errors else 0
    if errors:
        for p, m in errors:
            print("%s: %s: %s" % (args.config, p, m))
        print("%s: %d error(s): the firmware would refuse this config" % (args.config, len(errors)))
        return 1
    print("%s: OK (site %s, device %s, %d service(s), %d counter(s)%s)" % (
        args.config, cfg["site"], cfg["device"], len(cfg["services"]), len(cfg["counters"]),
        ", board checked" if "board" in cfg else ", default board wiring"))
    return 0
