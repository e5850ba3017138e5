"""Shell scripts that test, install and reload configuration inside a lab container.

Each script does its whole job in one `docker exec`: the files travel inside the script as
base64, so no file copy is needed, and a rejected configuration is removed before the script
exits. Copies and execs cost tens of milliseconds each on a busy engine, so one exec per
apply keeps an apply close to the bare reload it stands for.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence

# Exit statuses the scripts use beyond the tools' own.
TEST_FAILED = 10
RELOAD_TIMEOUT = 11
TEST_FAILED_MARK = "labkit: configuration test failed"

_NGINX_WORKER = "nginx: worker process"
# A reload waits at most this many 10 ms steps for the old worker to stop accepting.
_RELOAD_STEPS = 3000


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def write_files(files: Mapping[str, str]) -> list[str]:
    """Return shell lines that write each file (creating its directory) from inline base64."""
    lines = []
    for path, text in sorted(files.items()):
        encoded = base64.b64encode(text.encode()).decode()
        directory = path.rpartition("/")[0] or "/"
        lines.append(
            f"mkdir -p {_quote(directory)} && printf %s {encoded} | base64 -d > {_quote(path)}"
        )
    return lines


def _test_block(command: Sequence[str], candidates: Sequence[str]) -> list[str]:
    cleanup = "rm -rf " + " ".join(_quote(p) for p in sorted(candidates))
    return [
        " ".join(_quote(part) for part in command) + " 2>&1; code=$?",
        cleanup,
        f"if [ $code -ne 0 ]; then echo {_quote(TEST_FAILED_MARK)}; exit {TEST_FAILED}; fi",
    ]


def test_and_install(
    test_command: Sequence[str],
    candidates: Mapping[str, str],
    cleanup: Sequence[str],
    install: Mapping[str, str] | None,
    remove: Sequence[str] = (),
    signal: str | None = None,
) -> str:
    """Return a script: write candidates, test them, and if accepted install the real files.

    Args:
        test_command: `php-fpm8.2 -t -y ...` or `nginx -t -c ...` naming the candidate.
        candidates: Files the test reads.
        cleanup: Candidate files and directories to remove after the test, pass or fail.
        install: Real files to write once the test passed; None tests only.
        remove: Files to delete on install (a pool dropped from the model).
        signal: A signal to send the container's main process after installing.
    """
    lines = ["set -u", *write_files(candidates), *_test_block(test_command, cleanup)]
    if install is None:
        return "\n".join(lines) + "\n"
    lines += write_files(install)
    if remove:
        lines.append("rm -f " + " ".join(_quote(p) for p in sorted(remove)))
    if signal:
        lines.append(f"kill -{signal} 1")
    return "\n".join(lines) + "\n"


def install_files(install: Mapping[str, str], remove: Sequence[str] = ()) -> str:
    """Return a script that writes files and deletes others, testing nothing (for rollback)."""
    lines = ["set -eu", *write_files(install)]
    if remove:
        lines.append("rm -f " + " ".join(_quote(p) for p in sorted(remove)))
    return "\n".join(lines) + "\n"


def reload_nginx_and_wait() -> str:
    """Return script lines that reload Nginx and wait until its old workers stop accepting.

    A reload returns at once; for a moment old and new workers share the listening socket, so
    a request can still reach the old configuration. An old worker renames itself
    "nginx: worker process is shutting down" once it has closed its listening sockets.
    """
    return (
        "\n".join(
            [
                f"old=$(pgrep -x -f {_quote(_NGINX_WORKER)} | sort)",
                "kill -HUP 1",
                "step=0",
                f"while [ $step -lt {_RELOAD_STEPS} ]; do",
                f"  now=$(pgrep -x -f {_quote(_NGINX_WORKER)} | sort)",
                '  if [ -n "$now" ] && [ -z "$(printf \'%s\\n%s\\n\' "$old" "$now" | sed \'/^$/d\' '
                '| sort | uniq -d)" ]; then exit 0; fi',
                "  sleep 0.01; step=$((step + 1))",
                "done",
                "echo 'labkit: the old Nginx worker kept accepting after the reload'",
                f"exit {RELOAD_TIMEOUT}",
            ]
        )
        + "\n"
    )
