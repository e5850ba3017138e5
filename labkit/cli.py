"""The `labkit` command: start labs, change their settings, send requests, clean up."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from labkit.backend import Engine
from labkit.config import TOPOLOGIES, NginxConfig, check_lab_name, check_pool_directive
from labkit.doctor import examine, facts_from_options
from labkit.errors import ConfigError, LabkitError, LabNotFound
from labkit.images import ensure_images
from labkit.lab import Lab, list_labs, remove_all_labs
from labkit.predict import predict_lab

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_FINDINGS = 3


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = _parser().parse_args(argv)
    try:
        # Checked before any handler: `Lab.attach` connects to the engine before it reads names.
        if getattr(args, "lab", None) is not None:
            check_lab_name(args.lab)
        return int(args.handler(args))
    except ConfigError as error:
        print(f"labkit: refused: {error}", file=sys.stderr)
        return EXIT_USAGE
    except LabkitError as error:
        print(f"labkit: {error}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`labkit status | head -1`); nothing more to say to it.
        sys.stderr.close()
        return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="labkit", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    up = _command(commands, "up", "start a lab (Debian's default configuration)", _up)
    up.add_argument("--topology", choices=TOPOLOGIES, default="pod")
    up.add_argument("--replace", action="store_true", help="replace a running lab of that name")

    apply = _command(commands, "apply", "change pool directives and Nginx settings", _apply)
    apply.add_argument(
        "--pool",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a pool directive, e.g. listen.owner=ubuntu; KEY= removes it",
    )
    apply.add_argument(
        "--nginx",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="fastcgi_pass, user or fastcgi_read_timeout; KEY= restores the default",
    )
    apply.add_argument("--pool-name", default="www")

    request = _command(
        commands, "request", "send a GET through Nginx and explain the answer", _request
    )
    request.add_argument("path", nargs="?", default="/whoami.php")
    request.add_argument("--json", action="store_true", help="print the outcome as one JSON object")

    status = _command(
        commands, "status", "list labs with their age, or show one with --lab", _status
    )
    status.set_defaults(lab=None)
    status.add_argument("--json", action="store_true")

    down = _command(commands, "down", "remove a lab", _down)
    down.add_argument(
        "--all", action="store_true", help="remove every lab on this engine, everyone's"
    )

    _command(commands, "repair", "start again the servers of a lab that stopped", _repair)

    _doctor_command(commands)

    images = commands.add_parser("images", help="manage the lab images")
    image_commands = images.add_subparsers(dest="images_command", required=True)
    build = image_commands.add_parser("build", help="build (or make) the images if missing")
    build.set_defaults(handler=_images_build)
    return parser


def _command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    text: str,
    handler: object,
) -> argparse.ArgumentParser:
    command = commands.add_parser(name, help=text)
    command.add_argument("--lab", default="default", help="the lab's name (default: default)")
    command.set_defaults(handler=handler)
    return command


def _doctor_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    doctor = commands.add_parser(
        "doctor",
        help="predict what Nginx gets from PHP-FPM, from their configuration files",
        description="Exit 0: every fastcgi_pass predicts ok; 3: findings; 1: unreadable input.",
    )
    doctor.add_argument("--nginx", metavar="PATH", help="/etc/nginx or a file")
    doctor.add_argument(
        "--fpm", action="append", metavar="PATH",
        help="/etc/php/8.2/fpm or a file; repeat for each PHP-FPM master (PHP version)",
    )  # fmt: skip
    doctor.add_argument("--nginx-user", metavar="USER[:GROUP]", help="override Nginx's `user`")
    doctor.add_argument("--passwd", default="/etc/passwd", help="the accounts where Nginx runs")
    doctor.add_argument("--group", default="/etc/group", help="the groups where Nginx runs")
    doctor.add_argument("--fpm-passwd", help="PHP-FPM's accounts, when it runs elsewhere")
    doctor.add_argument("--fpm-group", help="PHP-FPM's groups, when it runs elsewhere")
    doctor.add_argument(
        "--topology", choices=TOPOLOGIES, default="pod",
        help="pod: Nginx and PHP-FPM on one host (default); network: separate hosts or containers",
    )  # fmt: skip
    doctor.add_argument("--live", action="store_true", help="also read the sockets on this machine")
    doctor.add_argument("--json", action="store_true", help="print the report as JSON")
    doctor.add_argument(
        "--lab", help="instead of --nginx and --fpm: read a running lab's files and accounts"
    )
    doctor.set_defaults(handler=_doctor)


def _doctor(args: argparse.Namespace) -> int:
    if args.lab is not None:
        if args.nginx or args.fpm:
            raise ConfigError("doctor", "--lab", "used without --nginx and --fpm", args.lab)
        report = predict_lab(Lab.attach(args.lab))
    elif not args.nginx or not args.fpm:
        raise ConfigError("doctor", "--nginx/--fpm", "both given (or --lab NAME)", "missing")
    else:
        facts = facts_from_options(
            args.passwd, args.group, args.fpm_passwd, args.fpm_group, args.topology, args.nginx_user
        )
        report = examine(args.nginx, args.fpm, facts, live=args.live)
    print(report.to_json() if args.json else report.text())
    return 0 if report.ok else EXIT_FINDINGS


def _pairs(items: Sequence[str], option: str) -> dict[str, str | None]:
    pairs: dict[str, str | None] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError("command line", option, "KEY=VALUE", item)
        pairs[key.strip()] = value if value else None
    return pairs


def _up(args: argparse.Namespace) -> int:
    lab = Lab(args.lab, args.topology, progress=lambda line: print(line, file=sys.stderr))
    lab.up(detach=True, replace=args.replace)
    print(f"lab {lab.name} is up ({lab.topology}): {lab.url}")
    return 0


def _apply(args: argparse.Namespace) -> int:
    pool, nginx = _pairs(args.pool, "--pool"), _pairs(args.nginx, "--nginx")
    if not pool and not nginx:
        raise ConfigError("command line", "apply", "at least one --pool or --nginx setting", "none")
    _check_changes(pool, nginx, args.pool_name)
    print(Lab.attach(args.lab).apply(pool=pool, nginx=nginx, pool_name=args.pool_name))
    return 0


def _check_changes(
    pool: dict[str, str | None], nginx: dict[str, str | None], pool_name: str
) -> None:
    """Refuse bad names and values before the engine is contacted.

    Each value is checked on its own; `Lab.apply` checks the whole result again against the
    lab's current configuration (for instance that `listen` is not removed).

    Raises:
        ConfigError: A refused pool directive or Nginx setting.
    """
    for key, value in pool.items():
        if value is not None:
            check_pool_directive(pool_name, key, value)
    NginxConfig().with_changes(nginx)


def _request(args: argparse.Namespace) -> int:
    outcome = Lab.attach(args.lab).request(args.path)
    print(outcome.to_json() if args.json else outcome.summary())
    return 0


def _status(args: argparse.Namespace) -> int:
    if args.lab is not None:
        state = Lab.attach(args.lab).status()
        print(json.dumps(state, indent=2) if args.json else _format_status(state))
        return 0
    labs = list_labs()
    if args.json:
        rows = [
            {"name": i.name, "topology": i.topology, "containers": i.containers,
             "age_seconds": round(i.age_seconds), "session": i.session}
            for i in labs
        ]  # fmt: skip
        print(json.dumps(rows, indent=2))
        return 0
    for info in labs:
        age = f"up {info.age_seconds:.0f}s"
        print(f"{info.name:24} {info.topology:8} {info.containers} containers  {age}")
    if not labs:
        print("no labs")
    return 0


def _format_status(state: dict[str, object]) -> str:
    lines = [f"{key}: {value}" for key, value in state.items() if key != "containers"]
    containers = state.get("containers")
    if isinstance(containers, dict):
        lines += [
            f"  {role}: {s['state']} since {s['started_at']}" for role, s in containers.items()
        ]
    return "\n".join(lines)


def _down(args: argparse.Namespace) -> int:
    if args.all:
        print(f"removed {remove_all_labs()} objects")
        return 0
    removed = Lab(args.lab).down()
    if not removed:
        raise LabNotFound(f"no lab named {args.lab!r} on this engine; `labkit status` lists them")
    print(f"lab {args.lab} removed ({removed} objects)")
    return 0


def _repair(args: argparse.Namespace) -> int:
    lab = Lab.attach(args.lab)
    started = lab.repair()
    print(f"lab {args.lab}: started again {', '.join(started)}" if started else "nothing to repair")
    return 0


def _images_build(args: argparse.Namespace) -> int:
    with Engine() as engine:
        tags = ensure_images(engine, progress=print)
    print(f"images ready: {tags.fpm} {tags.nginx}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
