"""``.. click-help:: module:attribute``: the ``--help`` text of a click command and its subcommands.

Rendered at build time from the command itself, so the page never drifts from the code.
"""
from __future__ import annotations

import importlib
from typing import Any

import click
from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective


def _help(command: click.Command, name: str, parent: click.Context | None) -> str:
    ctx = click.Context(command, info_name=name, parent=parent, terminal_width=88, max_content_width=88)
    return command.get_help(ctx)


class ClickHelp(SphinxDirective):
    required_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        module_name, _, attribute = self.arguments[0].partition(":")
        command = getattr(importlib.import_module(module_name), attribute)
        program = self.env.config.clickhelp_program
        root = click.Context(command, info_name=program)
        result: list[nodes.Node] = []
        result.append(nodes.literal_block(text=_help(command, program, None), language="text"))
        if isinstance(command, click.Group):
            for name in command.list_commands(root):
                sub = command.get_command(root, name)
                if sub is None or sub.hidden:
                    continue
                section = nodes.section(ids=[f"command-{name}"], names=[f"{program} {name}"])
                section += nodes.title(text=f"{program} {name}")
                section += nodes.literal_block(text=_help(sub, name, root), language="text")
                self.state.document.note_implicit_target(section, section)
                result.append(section)
        return result


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_config_value("clickhelp_program", "htcluster", "env")
    app.add_directive("click-help", ClickHelp)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
