"""qterm technician tools: python -m tools <subcommand> (or tools/qterm <subcommand>).

  build      compile firmware/ and hal/ into build/device/ (manifest, ROMFS image)
  deploy     copy a build to a board: changed files only, verified, switched atomically
  provision  give a board its identity: site, device, a fresh key (kept in a key store)
  validate   check a config file the way the firmware does, every error with its JSON path
  selftest   run the board's self-test (printer, display, buttons, network, broker, ...)
  monitor    live events from a broker, each checked against the device keys
  ticket     the tickets in a printer byte stream (e.g. the simulator's printer.bin) as text
  collect    keep every event of a hall in a database, verified, once (and serve the live page)
  report     the hall's satisfaction report from that database: index.html, CSV, GB/T 39734
  followup   record the follow-up of a bad rating (差评回访), or list the open ones

Exit status: 0 success, 1 failure (device, config, check), 2 usage or missing host tool.
"""
import argparse
import importlib
import sys

COMMANDS = ("build", "deploy", "provision", "validate", "selftest", "monitor", "ticket", "collect",
            "report", "followup")


def _summary(doc):
    return (doc or "").strip().splitlines()[0]


def parser():
    ap = argparse.ArgumentParser(prog="qterm", description=__doc__.split("\n\n")[0],
                                 epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", metavar="<subcommand>")
    for name in COMMANDS:
        mod = importlib.import_module("tools." + name)
        p = sub.add_parser(name, help=_summary(mod.__doc__), description=mod.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(module=mod)
    return ap


def main(argv=None):
    from tools.device import ToolError
    ap = parser()
    args = ap.parse_args(argv)
    if not args.command:
        ap.print_help(sys.stderr)
        return 2
    try:
        return args.module.run(args)
    except ToolError as e:
        print("qterm %s: %s" % (args.command, e), file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        print("qterm %s: interrupted" % args.command, file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
