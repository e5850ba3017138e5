"""A widget panel that edits PHP-FPM's listen settings and Nginx's side of them together.

The panel holds no lab logic: its buttons call the `Lab` API (`up`, `apply`, `request`,
`reset`) and show what came back. nbval compares what a cell prints and ignores widgets, so
everything the panel shows is also plain text through `ListenPanel.summary()`.

    panel = ListenPanel(lab)
    panel                                   # the last line of a cell displays it
    panel.pool_fields["listen.owner"].value = "ubuntu"
    panel.apply_button.click()
    print(panel.summary())
"""

from __future__ import annotations

import html
import http.client
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import ipywidgets as widgets

# ipywidgets 8 does not re-export these at its top level; they are the styles Text and HTML use.
from ipywidgets.widgets.widget_string import HTMLStyle, TextStyle

from labkit.config import DEFAULT_SOCKET, NginxConfig, TcpAddress, parse_listen
from labkit.doctor import Report
from labkit.errors import ConfigError, LabkitError
from labkit.lab import ApplyResult, Lab
from labkit.predict import predict_lab, side_by_side
from labkit.probe import Outcome

BADGE_COLOURS = {"green": "#1b7a3a", "red": "#b3261e", "amber": "#a15c00", "grey": "#6b6b6b"}
REQUEST_PATH = "/whoami.php"
# Only the newest build and start lines are kept, so a notebook saves a small widget state.
PROGRESS_LINES = 12
POOL_FIELDS = ("listen", "listen.owner", "listen.group", "listen.mode", "listen.allowed_clients")
NGINX_FIELDS = ("user", "fastcgi_pass")
# What the socket-type switch writes into `listen` and `fastcgi_pass`. In `network` Nginx's
# 127.0.0.1 is Nginx itself, so PHP-FPM listens on every interface and Nginx dials `php`.
SOCKET_SUGGESTIONS = {
    "unix": {"pod": (DEFAULT_SOCKET, f"unix:{DEFAULT_SOCKET}")},
    "tcp": {"pod": ("127.0.0.1:9000", "127.0.0.1:9000"), "network": ("9000", "php:9000")},
}
_PRE = '<pre style="white-space: pre-wrap; margin: 0">{}</pre>'
_FIELD_WIDTH = "32em"
_DESCRIPTION_WIDTH = "11em"


@dataclass(frozen=True)
class _Looks:
    """The layouts and styles that a panel's widgets share.

    A notebook saves every widget model with all its traits. Each widget would otherwise bring
    its own layout and style models; shared, the saved state stays a few dozen small models.
    """

    plain: widgets.Layout
    field: widgets.Layout
    text: TextStyle
    html_style: HTMLStyle
    button_style: widgets.ButtonStyle

    @classmethod
    def create(cls) -> _Looks:
        return cls(
            widgets.Layout(),
            widgets.Layout(width=_FIELD_WIDTH),
            TextStyle(description_width=_DESCRIPTION_WIDTH),
            HTMLStyle(),
            widgets.ButtonStyle(),
        )

    def html(self, value: str = "") -> widgets.HTML:
        return widgets.HTML(value, layout=self.plain, style=self.html_style)

    def row(self, children: Sequence[widgets.Widget]) -> widgets.HBox:
        return widgets.HBox(list(children), layout=self.plain)

    def column(self, children: Sequence[widgets.Widget]) -> widgets.VBox:
        return widgets.VBox(list(children), layout=self.plain)

    def button(
        self, description: str, action: Callable[[], None], **options: str
    ) -> widgets.Button:
        button = widgets.Button(
            description=description, layout=self.plain, style=self.button_style, **options
        )
        button.on_click(lambda _button: action())
        return button


class SettingField:
    """One editable setting: its text box and the message shown beside it.

    An empty box means "remove the directive" for the pool and "labkit's default" for Nginx.
    """

    def __init__(self, key: str, placeholder: str, looks: _Looks | None = None) -> None:
        looks = looks or _Looks.create()
        self.key = key
        self.text = widgets.Text(
            description=key,
            placeholder=placeholder,
            continuous_update=False,
            style=looks.text,
            layout=looks.field,
        )
        self.message = looks.html()
        self.widget = looks.row([self.text, self.message])

    @property
    def value(self) -> str:
        return str(self.text.value)

    @value.setter
    def value(self, value: str) -> None:
        self.text.value = value

    def change(self) -> str | None:
        """Return the value to apply: None for an empty box, else the text exactly as typed."""
        return self.value if self.value.strip() else None

    def show_message(self, text: str) -> None:
        """Show `text` in red beside the box."""
        self.message.value = f'<span style="color: {BADGE_COLOURS["red"]}">{_escape(text)}</span>'

    def clear_message(self) -> None:
        self.message.value = ""


class ListenPanel:
    """Edit a lab's listen settings, apply them, and show what a request then gets.

    Give it a lab (running or not), or a name and topology and it creates the lab, sending
    the lab's start and image-build progress into the panel. The topology only matters when
    the Start button runs: choosing another one there replaces `panel.lab` with a new `Lab` of
    the same name.

    Attributes:
        lab: The lab the buttons drive.
        pool_fields: The pool's settings by directive name (`listen`, `listen.owner`, ...).
        nginx_fields: Nginx's settings: `user` and `fastcgi_pass`.
        last_outcome: The last request's `Outcome`, or None before the first request.
        last_error: The last error the panel showed, or "" after an action that succeeded.
        widget: The panel's root widget, for a notebook to display.
    """

    def __init__(
        self,
        lab: Lab | None = None,
        name: str = "panel",
        topology: str = "pod",
        pool_name: str = "www",
    ) -> None:
        self.pool_name = pool_name
        self.last_outcome: Outcome | None = None
        self.last_prediction: Report | None = None
        self.last_error = ""
        self._applied = ""
        self._progress_lines: list[str] = []
        self._syncing_socket_type = False
        self._looks = _Looks.create()
        self._build_controls()
        self._build_fields()
        self._build_results()
        self.lab = lab if lab is not None else Lab(name, topology, progress=self.add_progress)
        self.topology.value = self.lab.topology
        self.state.value = self._state_text()
        self.load_fields()
        self.widget = self._layout()

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:
        bundle = self.widget._repr_mimebundle_(**kwargs)
        if bundle is not None:
            bundle["text/plain"] = f"ListenPanel for lab {self.lab.name!r} ({self.lab.topology})"
        return bundle

    # The buttons' actions, callable from Python too

    def start(self) -> None:
        """Start (or restart) the lab on the chosen topology, then send a request.

        A lab the panel created sends its start and image-build steps to `progress`.
        """
        # Limitation: a lab given to the panel keeps its own progress callback (`up()` takes none).
        self._run("starting", self._start)

    def apply(self) -> None:
        """Apply every field to the lab, then send a request and show what it got."""
        self._run("applying", self._apply)

    def reset(self) -> None:
        """Return the lab to Debian's default configuration, then send a request."""
        self._run("resetting", self._reset)

    def send_request(self) -> None:
        """Send a request through Nginx without changing anything."""
        self._run("sending a request", self._request)

    def load_fields(self) -> None:
        """Fill every field from the lab's current configuration and clear their messages."""
        pool = self.lab.config.pool(self.pool_name)
        for key, field in self.pool_fields.items():
            field.value = pool.get(key) or ""
        for key, field in self.nginx_fields.items():
            field.value = str(getattr(self.lab.config.nginx, key))
        self._clear_messages()

    def add_progress(self, line: str) -> None:
        """Show one more progress line (the lab's start and image-build steps land here)."""
        self._progress_lines = [*self._progress_lines, line][-PROGRESS_LINES:]
        self.progress.value = _PRE.format(_escape("\n".join(self._progress_lines)))

    def summary(self) -> str:
        """Return what the panel shows, as text: status, cause, log lines, socket, last error."""
        lines = [f"lab {self.lab.name} ({self.lab.topology})"]
        if self._applied:
            lines.append(self._applied)
        if self.last_outcome is None:
            lines.append("no request yet")
        else:
            lines += _outcome_lines(self.last_outcome)
        if self.last_prediction is not None and self.last_outcome is not None:
            lines += side_by_side(self.last_prediction, self.last_outcome).splitlines()
        if self.last_error:
            lines.append(f"error: {self.last_error}")
        return "\n".join(lines)

    # Steps

    def _run(self, doing: str, action: Callable[[], None]) -> None:
        """Run one button's action: buttons off, inside the Output, errors shown, buttons on."""
        self._set_buttons(disabled=True)
        self.state.value = f"lab {self.lab.name}: {doing} ..."
        self.last_error = ""
        self._applied = ""
        self.message.value = ""
        self.output.outputs = ()
        try:
            # The exceptions are caught inside the `with`: in a kernel, Output swallows what
            # leaves it and shows it as a traceback, and a LabkitError deserves plain words.
            with self.output:
                try:
                    action()
                except LabkitError as error:
                    self._show_error(str(error))
                except Exception as error:
                    self._show_error(f"unexpected {type(error).__name__}: {error}")
                    self.output.append_stderr(traceback.format_exc())
        finally:
            self.state.value = self._state_text()
            self._set_buttons(disabled=False)

    def _start(self) -> None:
        if self.topology.value != self.lab.topology:
            self.lab = Lab(self.lab.name, self.topology.value, progress=self.add_progress)
        self._progress_lines = []
        self.add_progress(f"starting lab {self.lab.name} ({self.lab.topology})")
        self.lab.up()
        self.add_progress(f"lab {self.lab.name} is up")
        self._applied = "started with Debian's default configuration"
        self.diff.value = ""
        self.load_fields()
        self._request()

    def _apply(self) -> None:
        self._clear_messages()
        pool = {key: field.change() for key, field in self.pool_fields.items()}
        nginx = {key: field.change() for key, field in self.nginx_fields.items()}
        try:
            result = self.lab.apply(pool=pool, nginx=nginx, pool_name=self.pool_name)
        except ConfigError as error:
            self._show_config_error(error)
            return

        self._show_result(result)
        self.load_fields()
        self._request()

    def _reset(self) -> None:
        self._show_result(self.lab.reset())
        self.load_fields()
        self._request()

    def _request(self) -> None:
        # The doctor predicts from the files alone first; the request then shows the truth.
        self.last_prediction = predict_lab(self.lab, fixes=False)
        self.last_outcome = self.lab.request(REQUEST_PATH)
        self._show_outcome(self.last_outcome)

    # Showing results

    def _show_result(self, result: ApplyResult) -> None:
        self._applied = str(result).partition("\n")[0]
        self.diff.value = _diff_html(result.diff) if result.diff else _PRE.format("no change")

    def _show_outcome(self, outcome: Outcome) -> None:
        colour = BADGE_COLOURS[_badge_colour(outcome.status)]
        self.badge.value = _status_line(outcome.status)
        self.badge.style.background = colour
        cause_lines = _cause_lines(outcome)
        if self.last_prediction is not None:
            cause_lines += side_by_side(self.last_prediction, outcome).splitlines()
        self.cause.value = _PRE.format(_escape("\n".join(cause_lines)))
        self.nginx_log.value = _log_html("Nginx error log", outcome.nginx_log)
        self.fpm_log.value = _log_html("PHP-FPM log", outcome.fpm_log)
        self.socket_listing.value = _log_html("socket (ls -l)", [_socket_text(outcome)])

    def _show_config_error(self, error: ConfigError) -> None:
        fields = self.nginx_fields if error.subject == "nginx" else self.pool_fields
        # Nginx's `user` reports its group part as "user (group part)".
        field = fields.get(error.field.partition(" ")[0])
        given = "nothing" if error.given is None else repr(error.given)
        if field is not None:
            field.show_message(f"must be {error.allowed}, got {given}")
        self._show_error(f"nothing applied, the lab keeps its configuration: {error}")

    def _show_error(self, text: str) -> None:
        self.last_error = text
        self.message.value = (
            f'<div style="color: {BADGE_COLOURS["red"]}">{_PRE.format(_escape(text))}</div>'
        )

    def _state_text(self) -> str:
        where = f" on {self.lab.url}" if self.lab.port else ""
        return f"lab {self.lab.name} ({self.lab.topology}){where}"

    def _clear_messages(self) -> None:
        for field in (*self.pool_fields.values(), *self.nginx_fields.values()):
            field.clear_message()

    def _set_buttons(self, disabled: bool) -> None:
        for button in self._buttons:
            button.disabled = disabled

    # Keeping the socket type and the listen field in step

    def _on_socket_type(self, change: Mapping[str, Any]) -> None:
        if self._syncing_socket_type:
            return
        suggestions = SOCKET_SUGGESTIONS[change["new"]]
        listen, fastcgi_pass = suggestions.get(self.lab.topology, suggestions["pod"])
        self.pool_fields["listen"].value = listen
        self.nginx_fields["fastcgi_pass"].value = fastcgi_pass

    def _on_listen(self, change: Mapping[str, Any]) -> None:
        kind = _socket_kind(change["new"])
        if kind is None or kind == self.socket_type.value:
            return
        self._syncing_socket_type = True
        try:
            self.socket_type.value = kind
        finally:
            self._syncing_socket_type = False
        # Nginx's side follows, so the two ends do not silently disagree after the flip.
        self.nginx_fields["fastcgi_pass"].value = _matching_pass(change["new"], self.lab.topology)

    # Building the widgets

    def _build_controls(self) -> None:
        looks = self._looks
        self.topology = widgets.ToggleButtons(
            options=["pod", "network"], description="topology", layout=looks.plain
        )
        self.start_button = looks.button("Start lab", self.start, icon="play")
        self.apply_button = looks.button("Apply", self.apply, button_style="primary")
        self.request_button = looks.button("Send request", self.send_request)
        self.reset_button = looks.button("Reset to default", self.reset, icon="undo")
        self._buttons = (
            self.start_button,
            self.apply_button,
            self.request_button,
            self.reset_button,
        )
        self.state = widgets.Label(layout=looks.plain)
        self.progress = looks.html()

    def _build_fields(self) -> None:
        self.socket_type = widgets.ToggleButtons(
            options=[("unix socket", "unix"), ("TCP address:port", "tcp")],
            description="socket type",
            style={"description_width": _DESCRIPTION_WIDTH},
            layout=self._looks.plain,
        )
        removed = "empty: directive removed"
        self.pool_fields = {key: SettingField(key, removed, self._looks) for key in POOL_FIELDS}
        defaults = NginxConfig()
        self.nginx_fields = {
            key: SettingField(
                key, f"empty: {getattr(defaults, key)} (labkit's default)", self._looks
            )
            for key in NGINX_FIELDS
        }
        self.socket_type.observe(self._on_socket_type, names="value")
        self.pool_fields["listen"].text.observe(self._on_listen, names="value")

    def _build_results(self) -> None:
        self.badge = widgets.Label(
            "no request yet",
            layout=widgets.Layout(
                padding="2px 12px", margin="4px 8px 4px 0", min_width="190px", width="auto"
            ),
        )
        self.badge.style.background = BADGE_COLOURS["grey"]
        self.badge.style.text_color = "white"
        self.badge.style.font_weight = "bold"
        html = self._looks.html
        self.cause, self.message, self.diff = html(), html(), html()
        self.nginx_log, self.fpm_log, self.socket_listing = html(), html(), html()
        self.output = widgets.Output(layout=self._looks.plain)

    def _layout(self) -> widgets.VBox:
        looks = self._looks
        pool_title = f"<b>PHP-FPM pool <code>{_escape(self.pool_name)}</code></b>"
        return looks.column(
            [
                looks.row([self.topology, self.start_button, self.state]),
                self.progress,
                looks.html(pool_title),
                self.socket_type,
                *(field.widget for field in self.pool_fields.values()),
                looks.html("<b>Nginx</b>"),
                *(field.widget for field in self.nginx_fields.values()),
                looks.row([self.apply_button, self.request_button, self.reset_button]),
                self.message,
                looks.row([self.badge, self.cause]),
                self.nginx_log,
                self.fpm_log,
                self.socket_listing,
                looks.html("<b>What the last apply changed</b>"),
                self.diff,
                self.output,
            ]
        )


def _socket_kind(listen: str) -> str | None:
    """Return `tcp` or `unix` the way PHP-FPM reads a listen value, or None if it is invalid."""
    try:
        target = parse_listen(listen)
    except ConfigError:
        return None
    return "tcp" if isinstance(target, TcpAddress) else "unix"


def _badge_colour(status: int) -> str:
    if 200 <= status < 300:
        return "green"
    if status >= 500:
        return "red"
    return "amber"


def _status_line(status: int) -> str:
    return f"HTTP {status} {http.client.responses.get(status, '')}".rstrip()


def _cause_lines(outcome: Outcome) -> list[str]:
    return [f"{outcome.cause.value}: {outcome.explanation}", *outcome.notes]


def _socket_text(outcome: Outcome) -> str:
    if outcome.socket is None:
        return "no socket file: Nginx passes requests over TCP"
    return outcome.socket.listing()


def _outcome_lines(outcome: Outcome) -> list[str]:
    colour = _badge_colour(outcome.status)
    lines = [f"{_status_line(outcome.status)} ({colour} badge)"]
    lines.append(f"cause: {outcome.cause.value}: {outcome.explanation}")
    lines += [f"nginx: {line}" for line in outcome.nginx_log]
    lines += [f"php-fpm: {line}" for line in outcome.fpm_log]
    lines.append(f"socket: {_socket_text(outcome)}")
    lines += [f"note: {note}" for note in outcome.notes]
    return lines


def _log_html(title: str, lines: tuple[str, ...] | list[str]) -> str:
    body = "\n".join(lines) if lines else "(no lines for this request)"
    return f"<b>{_escape(title)}</b>" + _PRE.format(_escape(body))


def _diff_html(diff: str) -> str:
    colours = {"+": BADGE_COLOURS["green"], "-": BADGE_COLOURS["red"]}
    rows = []
    for line in diff.rstrip("\n").split("\n"):
        colour = None if line.startswith(("+++", "---")) else colours.get(line[:1])
        text = _escape(line)
        rows.append(f'<span style="color: {colour}">{text}</span>' if colour else text)
    return _PRE.format("\n".join(rows))


def _escape(text: str) -> str:
    # Quotes stay as typed: the text sits between tags, never inside an attribute.
    return html.escape(text, quote=False)


def _matching_pass(listen: str, topology: str) -> str:
    """Return the `fastcgi_pass` that reaches a pool listening at `listen`, or "" if unknown."""
    try:
        target = parse_listen(listen)
    except ConfigError:
        return ""
    if isinstance(target, TcpAddress) and topology == "network":
        return f"php:{target.port}"
    return target.nginx_form()
