"""The steps of ``init_app`` and of finding an app's state, shared by the Flask and the Quart extensions.

Both extensions register an app the same way: refuse a second registration
(:func:`refuse_second`), read and check the ``HYPERTABLE_*`` keys
(:func:`app_settings`), build the main cluster and the binds, closing what was
built if a later one fails (:func:`build_state`), register the query
recorders when ``HYPERTABLE_RECORD_QUERIES`` is on (:func:`record_calls`),
and later find the state again (:func:`state_of`).  Only the classes built
(blocking or ``htcluster.aio``), the app context and the hooks differ; they
are passed in.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, MutableMapping, Optional

from ..errors import ConfigError
from .commands import EXTENSION_KEY
from .config import Settings, check_app_config, read_settings, set_defaults
from .routing import listeners_of

__all__ = ["app_settings", "build_state", "record_calls", "refuse_second", "state_of"]


def refuse_second(extensions: Mapping[str, Any], app_name: str) -> None:
    """Refuse an app that already has a Hypertable extension.

    :param extensions: the app's ``app.extensions``.
    :param app_name: the app's name, for the message.
    :raises RuntimeError: ``app.extensions['hypertable']`` exists.
    """
    if EXTENSION_KEY in extensions:
        raise RuntimeError(f"a Hypertable extension is already registered on app {app_name!r}; "
                           "call init_app once per app")


def app_settings(config: MutableMapping[str, Any], *, hosts_required: bool) -> Settings:
    """Check the app's own ``HYPERTABLE_*`` keys, fill in the defaults, return the checked :class:`Settings`.

    :param config: the app's ``app.config``; defaults are put in with ``setdefault``.
    :param hosts_required: refuse a config that names no broker.
    :raises ConfigError: a value is invalid, or no broker is configured (with ``hosts_required``).
    :warns ConfigWarning: an unknown ``HYPERTABLE_*`` key, a ``*_MSECS`` value below 100.
    """
    check_app_config(config, hosts_required=hosts_required)
    set_defaults(config)
    return read_settings(config)


def build_state(make_main: Callable[[], Any], make_bind: Callable[[str, Settings], Any],
                settings: Settings, close: Callable[[Any], None]) -> Any:
    """Build an app's state: the main cluster, then one per ``HYPERTABLE_BINDS`` entry.

    :param make_main: builds the main cluster's state (it has a ``binds`` dict).
    :param make_bind: builds the state of bind ``name`` from its settings.
    :param settings: the app's settings (``settings.binds``).
    :param close: closes a state's routing objects without awaiting (called
        when a bind cannot be built, so nothing built is left open).
    :returns: the main state, its ``binds`` filled in.
    :raises ConfigError: a bind's routing class refused an option.
    """
    state = make_main()
    try:
        for name, bind in settings.binds.items():
            state.binds[name] = make_bind(name, bind)
    except BaseException:
        close(state)
        raise
    return state


def record_calls(state: Any, make_recorder: Callable[[Optional[str]], Any]) -> None:
    """Register a query recorder on every cluster of ``state`` (``HYPERTABLE_RECORD_QUERIES``).

    :param state: the app's state (its :meth:`every` lists the clusters).
    :param make_recorder: returns the listener of bind ``name`` (``None``: the main cluster).
    :raises ConfigError: a routing object has no event listeners.
    """
    for cluster in state.every():
        registry = listeners_of(cluster.cluster)
        if registry is None:
            raise ConfigError(f"HYPERTABLE_RECORD_QUERIES: the {cluster.settings.strategy!r} routing "
                              "object has no event listeners (htcluster.events) to record from")
        registry.register(make_recorder(cluster.bind_name))


def state_of(owner: object, app: Any, enter: str = "with app.app_context():") -> Any:
    """Return what ``owner`` registered on ``app`` (``app.extensions['hypertable']``).

    :param owner: the extension asking.
    :param app: the app given, or the current app; ``None`` when there is no app context.
    :param enter: how the framework's users enter an app context, for the message.
    :raises RuntimeError: no app (outside an app context), or the extension is not registered on the app.
    """
    if app is None:
        raise RuntimeError("Hypertable used outside of an application context: use it in a request, "
                           f"a CLI command, or inside '{enter}'")
    state = app.extensions.get(EXTENSION_KEY)
    if state is None or state.owner is not owner:
        raise RuntimeError(f"this Hypertable extension is not registered on app {app.name!r}: "
                           "call ht.init_app(app) first")
    return state
