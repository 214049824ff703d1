"""``%ollama ui``: the notebook apps, started with the magic's settings."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

from .base import APP, Context, LineCommand, ServerArgs, bind, connect

#: The apps ``%ollama ui`` opens (the first is the default).
UI_APPS = ("playground", "models", "compare")


@dataclass(frozen=True, kw_only=True)
class UiArgs(ServerArgs):
    app: str = UI_APPS[0]
    model: list[str] = field(default_factory=list)
    out: str | None = None


def ui_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "app",
        metavar="APP",
        nargs="?",
        default=UI_APPS[0],
        choices=UI_APPS,
        help="playground (the default: try a model), models (pull, load, unload, delete, "
        "see what is loaded) or compare (one prompt, two to four models)",
    )
    p.add_argument(
        "-m",
        "--model",
        action="append",
        default=[],
        metavar="NAME",
        help="model to start with; for compare, one per column (repeatable), with flags "
        "if you like: -m 'qwen3 --think low'",
    )
    p.add_argument("-o", "--out", metavar="NAME", help="also keep the app in this variable")


def run_ui(ctx: Context, args: UiArgs) -> Any:
    """Open an app; it is returned (so shown, and kept with ``-o``)."""
    try:
        from .. import widgets

        widgets.require()
    except ImportError:
        print("The apps need ipywidgets: pip install 'ollama-magic[widgets]'")
        return None
    if not ctx.in_kernel():
        print("The apps are widgets: open them in a notebook (JupyterLab, Notebook, VS Code).")
        return None
    with connect(ctx, args) as checked:  # the address and timeouts: one line if bad
        connect_timeout, timeout = checked.timeout
    assert connect_timeout is not None and timeout is not None  # the magic's are numbers
    host = args.host or ctx.host or None
    defaults = ctx.defaults()  # what %config OllamaMagics sets, as the apps' starting values
    app: Any
    if args.app == "models":
        app = widgets.ModelManager(host, timeout=timeout, connect_timeout=connect_timeout)
    elif args.app == "compare":
        app = widgets.Compare(
            args.model or None,
            host,
            system=defaults.system,
            keep_alive=defaults.keep_alive,
            think=defaults.think,
            options=dict(defaults.options),
            timeout=timeout,
            connect_timeout=connect_timeout,
        )
    else:
        app = widgets.Playground(
            args.model[0] if args.model else defaults.model or None,
            host,
            timeout=timeout,
            connect_timeout=connect_timeout,
            show_thinking=defaults.show_thinking,
            system=defaults.system,
            keep_alive=defaults.keep_alive,
            think=defaults.think,
            options=dict(defaults.options),
        )
    bind(ctx, args.out, app)
    return app


UI = LineCommand(
    "ui",
    "apps in the notebook: a Playground, a model manager, a side-by-side comparison",
    UiArgs,
    ui_arguments,
    run_ui,
    first=APP,
    epilog="The apps need ipywidgets (pip install 'ollama-magic[widgets]') and a notebook. "
    "In Python: from ollama_magic.widgets import Playground, ModelManager, Compare",
)
