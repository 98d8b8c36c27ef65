"""The route table of the simulated Graph v1.0 surface.

Every thread path exists twice, as in Graph: ``/groups/{id}/threads/{id}/...`` and
``/groups/{id}/conversations/{id}/threads/{id}/...``. Handlers of the thread subtree always
receive ``[group, conversation or None, thread, ...]``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import directory, group_delta, mail
from .request import Request, method_not_allowed, unknown_segment
from .responses import Response

if TYPE_CHECKING:
    from .app import Simulator

Handler = Callable[["Simulator", Request, list[Any]], Response]
ANY = "*"
NAMESPACE = "microsoft.graph"


@dataclass(frozen=True)
class Route:
    """A path pattern (``*`` matches one segment) and its handlers by method."""

    pattern: tuple[str, ...]
    methods: dict[str, Handler]
    in_conversation: bool = False

    @property
    def template(self) -> str:
        """The endpoint as the request log names it, e.g. ``/groups/{id}/threads``."""
        return "/" + "/".join("{id}" if s == ANY else s for s in self.pattern)

    def match(self, segments: list[str]) -> list[str] | None:
        """The ``*`` values if ``segments`` fit the pattern (literals case-insensitively)."""
        if len(segments) != len(self.pattern):
            return None
        params = []
        for want, got in zip(self.pattern, segments, strict=True):
            if want == ANY:
                if not got:
                    return None
                params.append(got)
            elif want.lower() != _unalias(got).lower():
                return None
        return params

    def params(self, matched: list[str]) -> list[Any]:
        """Insert the missing conversation id for thread routes outside a conversation."""
        if len(self.pattern) >= 4 and self.pattern[2] == "threads" and not self.in_conversation:
            return [matched[0], None, *matched[1:]]
        return list(matched)


def _unalias(segment: str) -> str:
    """A type-cast segment with Graph's namespace alias spelled out.

    Graph's ``$metadata`` declares ``<Schema Namespace="microsoft.graph" Alias="graph">``, and
    in OData a schema's alias may stand for its namespace in any qualified name (OData CSDL,
    schema ``Alias``), so ``memberOf/graph.group`` is ``memberOf/microsoft.graph.group``.
    msgraph-sdk sends the alias form; the documentation (user-list-memberof) the full one.
    """
    if segment[:6].lower() == "graph.":
        return NAMESPACE + segment[5:]
    return segment


_THREAD_SUBTREE: list[tuple[tuple[str, ...], dict[str, Handler]]] = [
    ((), {"GET": mail.get_thread, "PATCH": mail.update_thread, "DELETE": mail.delete_thread}),
    (("reply",), {"POST": mail.reply_to_thread}),
    (("posts",), {"GET": mail.list_posts}),
    (("posts", ANY), {"GET": mail.get_post}),
    (("posts", ANY, "reply"), {"POST": mail.reply_to_post}),
    (("posts", ANY, "forward"), {"POST": mail.forward_post}),
    (("posts", ANY, "attachments"), {"GET": mail.list_attachments,
                                     "POST": mail.create_attachment}),
    (("posts", ANY, "attachments", ANY), {"GET": mail.get_attachment}),
    (("posts", ANY, "attachments", ANY, "$value"), {"GET": mail.attachment_value}),
]


def _build() -> list[Route]:
    routes = [
        Route(("me",), {"GET": directory.get_me}),
        Route(("me", "memberOf"), {"GET": directory.me_member_of}),
        Route(("me", "memberOf", "microsoft.graph.group"), {"GET": directory.me_member_of_groups}),
        Route(("users", ANY), {"GET": directory.get_user}),
        Route(("users", ANY, "memberOf"), {"GET": directory.user_member_of}),
        Route(("users", ANY, "memberOf", "microsoft.graph.group"),
              {"GET": directory.user_member_of_groups}),
        Route(("groups",), {"GET": directory.list_groups}),
        *_group_delta_routes(),
        Route(("groups", ANY), {"GET": directory.get_group}),
        Route(("groups", ANY, "conversations"),
              {"GET": mail.list_conversations, "POST": mail.create_conversation}),
        Route(("groups", ANY, "conversations", ANY),
              {"GET": mail.get_conversation, "DELETE": mail.delete_conversation}),
        Route(("groups", ANY, "conversations", ANY, "threads"),
              {"GET": mail.list_threads, "POST": mail.create_thread}),
        Route(("groups", ANY, "threads"), {"GET": mail.list_threads, "POST": mail.create_thread}),
    ]
    for suffix, methods in _THREAD_SUBTREE:
        routes.append(Route(("groups", ANY, "threads", ANY, *suffix), methods))
        routes.append(
            Route(("groups", ANY, "conversations", ANY, "threads", ANY, *suffix), methods, True)
        )
    return routes


def _group_delta_routes() -> list[Route]:
    """``/groups/delta``, also as the SDKs spell the function (``delta()``, qualified)."""
    names = ("delta", "delta()", "microsoft.graph.delta", "microsoft.graph.delta()")
    return [Route(("groups", name), {"GET": group_delta.groups_delta}) for name in names]


ROUTES = _build()


def resolve(method: str, segments: list[str]) -> tuple[str, Handler, list[Any]]:
    """The log template, handler and parameters for a request, or Graph's 400/405."""
    for route in ROUTES:
        matched = route.match(segments)
        if matched is None:
            continue
        handler = route.methods.get(method)
        if handler is None:
            raise method_not_allowed(list(route.methods))
        return route.template, handler, route.params(matched)
    raise unknown_segment(_first_unknown(segments))


def template_for(segments: list[str]) -> str:
    """The log template of a path even when the request is refused before routing."""
    for route in ROUTES:
        if route.match(segments) is not None:
            return route.template
    return "/{unknown}"


def _first_unknown(segments: list[str]) -> str:
    """The first segment no route continues with, which Graph names in its error."""
    for depth in range(len(segments)):
        prefix = segments[: depth + 1]
        if not any(Route(r.pattern[: depth + 1], {}).match(prefix) is not None
                   for r in ROUTES if len(r.pattern) > depth):
            return segments[depth]
    return segments[-1] if segments else ""
