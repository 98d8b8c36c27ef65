"""The plugin's pages: the thread view, search, attachment downloads and an index.

Every page reads the archive through Datasette's own (read-only) connections, except
search, which opens the archive read-only for ``groupsync.search`` exactly as
``groupsync search`` does. Mail HTML only ever reaches a page through ``html.sanitise``,
and every HTML page carries a Content-Security-Policy that blocks remote loads and any
script but Datasette's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlencode

from datasette.utils import tilde_decode, tilde_encode
from datasette.utils.asgi import Base400, Forbidden, NotFound, Response
from markupsafe import Markup

from .. import access
from .. import search as search_engine
from ..archive import Archive
from ..archive.queries import plugin as queries
from ..archive.values import json_list
from ..errors import GroupsyncError
from ..html import neutralise_bidi, sanitise, sanitise_folded
from .accounts import login_required
from .archives import attachment_url, find_archive, post_anchor, thread_url
from .compat import canned_queries, ensure_can_read
from .security import content_security_policy, page_headers

__all__ = [
    "attachment",
    "content_security_policy",
    "index",
    "css_url",
    "search",
    "table_url",
    "thread",
]

PAGE_SIZE = 20
BLOB_CHUNK = 256 * 1024
INLINE_IMAGES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
_MIME = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MARK = re.compile(r"<(?!/?mark>)")
_STATIC = Path(__file__).with_name("static")

async def _page(
    datasette: Any, request: Any, template: str, context: dict[str, Any], status: int = 200
) -> Response:
    html = await datasette.render_template(template, context, request=request)
    return Response.html(html, status=status, headers=page_headers())


View = Callable[[Any, Any], Awaitable[Response]]


def handled(view: View) -> View:
    """A view whose 404 and 403 are error pages of its own, with the plugin's headers.

    (Datasette's own 404 handler would redirect a path with ``%`` in it to its tilde form.)
    """

    @functools.wraps(view)
    async def inner(datasette: Any, request: Any) -> Response:
        try:
            return await view(datasette, request)
        except Base400 as ex:
            if (isinstance(ex, Forbidden) and request.actor is None
                    and login_required(datasette)):  # fmt: skip
                return Response.redirect(datasette.urls.path("/-/login"))
            context = {"ok": False, "error": ex.args[0] if ex.args else "", "status": ex.status}
            context["title"] = {404: "Not found", 403: "Forbidden"}.get(ex.status, "Error")
            return await _page(datasette, request, "error.html", context, status=ex.status)

    return inner


class AccessLogUnavailable(Base400):
    status = 503


async def _log(
    datasette: Any, request: Any, database: str, action: str, target: str, count: int
) -> None:
    """One access-log row for what this request is about to show; a 503 page instead of
    the content when the row cannot be written (an access is never shown unrecorded)."""
    actor = request.actor if isinstance(request.actor, dict) else None
    who = str(actor.get("id")) if actor and actor.get("id") is not None else "anonymous"
    path = datasette.get_database(database).path
    try:
        await asyncio.to_thread(access.log_access, path, who, action, target, count, "web")
    except access.AccessLogError as ex:
        raise AccessLogUnavailable(str(ex)) from None


def _id(value: str) -> str:
    """An id from the path: tilde-encoded as Datasette writes them (percent also works)."""
    return tilde_decode(unquote(value))


async def _allowed(datasette: Any, request: Any, database: str) -> None:
    await ensure_can_read(datasette, request.actor, database)


async def _readable(datasette: Any, request: Any, names: list[str]) -> list[str]:
    """The archives this actor may read (a 403 if none)."""
    allowed = []
    for name in names:
        try:
            await _allowed(datasette, request, name)
        except Forbidden:
            continue
        allowed.append(name)
    if not allowed:
        raise Forbidden("You may not read this archive.")
    return allowed


@functools.cache
def _static_name() -> str:
    """The name Datasette serves ``static/`` under: the distribution's when the plugin came
    through its entry point, the module's when ``register_plugin`` added it."""
    # Imported here: datasette.plugins imports this plugin while it loads.
    from datasette.plugins import get_plugins

    for plugin in get_plugins():
        if plugin["static_path"] and Path(plugin["static_path"]).resolve() == _STATIC.resolve():
            return str(plugin["name"])
    return "groupsync"


def css_url(datasette: Any) -> str:
    """The stylesheet, served by Datasette from ``static/`` (``/-/static-plugins/...``)."""
    return str(datasette.urls.static_plugins(_static_name(), "groupsync.css"))


def human_size(size: int | None) -> str:
    if size is None:
        return ""
    value = float(size)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{size:,} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size:,} bytes"  # pragma: no cover


def _when(value: str | None) -> str:
    """``2025-03-25T10:02:11Z`` → ``2025-03-25 10:02 UTC``."""
    if not value:
        return ""
    return f"{value[:10]} {value[11:16]} UTC" if len(value) >= 16 else value


def _people(items: list[Any]) -> list[dict[str, str | None]]:
    out = []
    for item in items:
        email = item.get("emailAddress") if isinstance(item, dict) else None
        if isinstance(email, dict):
            out.append({"name": email.get("name"), "address": email.get("address")})
    return out


# -- thread view --------------------------------------------------------------------------

def _attachment(datasette: Any, row: tuple[Any, ...]) -> dict[str, Any]:
    post_id, att_id, kind, name, content_type, size, inline, cid, sha256, text, deleted, have = row
    try:
        meta = json.loads(text) if text else {}
    except ValueError:
        meta = {}
    content_type = (content_type or "").lower() or None
    note = None
    if kind == "referenceAttachment":
        note = "a link to a file kept elsewhere; the archive has no bytes for it"
    elif kind == "itemAttachment":
        note = "an Outlook item; the archive keeps its metadata, not the item"
    elif sha256 is None or have is None:
        note = "its bytes are not in the archive"
    url = attachment_url(datasette, sha256, post_id=post_id) if sha256 and have else None
    return {
        "id": att_id,
        "kind": kind,
        "name": neutralise_bidi(name) if name else "(no name)",
        "content_type": content_type,
        "size": size if size is not None else have,
        "size_text": human_size(size if size is not None else have),
        "inline": bool(inline),
        "content_id": (cid or "").strip("<>") or None,
        "url": url,
        "image": bool(url and content_type in INLINE_IMAGES),
        "source_url": _web_url(meta.get("sourceUrl")) if kind == "referenceAttachment" else None,
        "note": note,
        "deleted_at": deleted,
    }


def _web_url(value: Any) -> str | None:
    """Only http(s) links from archived JSON become hrefs."""
    if isinstance(value, str) and value.strip().lower().startswith(("https://", "http://")):
        return value.strip()
    return None


def _body(
    html: str | None,
    content_type: str | None,
    cids: dict[str, str],
    fallback: dict[str, str],
    *,
    fold: bool = False,
) -> tuple[Markup, set[str]]:
    """A body sanitised, with the inline images it used; ``fold``: quoted earlier text
    folded away (the thread above already shows it)."""
    used: set[str] = set()

    def url(content_id: str) -> str | None:
        key = content_id.lower()
        found = cids.get(key) or fallback.get(key)
        if found:
            used.add(key)
        return found

    clean = sanitise_folded if fold else sanitise
    text = clean(html, attachment_url=url, content_type=content_type or "html")
    return Markup(text), used


def _version(
    row: tuple[Any, ...], cids: dict[str, str], fallback: dict[str, str]
) -> dict[str, Any]:
    _, change_key, modified, text, sha256, run_id, first_seen = row
    try:
        data = json.loads(text)
    except ValueError:
        data = {}
    body = data.get("body") if isinstance(data.get("body"), dict) else {}
    html, _ = _body(body.get("content"), body.get("contentType"), cids, fallback)
    return {
        "change_key": change_key,
        "modified": _when(modified),
        "first_seen": _when(first_seen),
        "sha256": sha256,
        "run_id": run_id,
        "categories": data.get("categories") or [],
        "body": html,
    }


def table_url(
    datasette: Any, database: str, table: str, *, deleted: bool | None = False, **args: str
) -> str:
    """A Datasette table page showing what a groupsync page counts: by default without
    the items deleted upstream (``deleted=True``: only those; ``None``: all)."""
    query = dict(args)
    if deleted is not None:
        query["deleted_at__isnull" if not deleted else "deleted_at__notnull"] = "1"
    return str(datasette.urls.table(database, table)) + "?" + urlencode(query)


def thread_context(datasette: Any, database: str, data: dict[str, Any]) -> dict[str, Any]:
    """Everything the thread template shows, with every body sanitised."""
    t = data["thread"]
    group_id, thread_id = t[1], t[0]
    attachments: dict[str, list[dict[str, Any]]] = {}
    thread_cids: dict[str, str] = {}
    post_cids: dict[str, dict[str, str]] = {}
    for row in data["attachments"]:
        item = _attachment(datasette, row)
        attachments.setdefault(row[0], []).append(item)
        if item["content_id"] and item["url"]:
            key = item["content_id"].lower()
            post_cids.setdefault(row[0], {})[key] = item["url"]
            thread_cids.setdefault(key, item["url"])
    versions: dict[str, list[tuple[Any, ...]]] = {}
    for row in data["versions"]:
        versions.setdefault(row[0], []).append(row)
    posts = []
    senders: dict[str, dict[str, Any]] = {}
    by_id = {row[0]: row for row in data["posts"]}
    for n, row in enumerate(data["posts"], 1):
        (post_id, change_key, _created, modified, received, categories, body_type, body,
         from_name, from_address, sender_name, sender_address, new_people, reply_to,
         version_count, attachments_note, deleted_at) = row  # fmt: skip
        cids = post_cids.get(post_id, {})
        html, used = _body(body, body_type, cids, thread_cids, fold=True)
        purged = data.get("purged", {}).get(post_id)
        files = attachments.get(post_id, [])
        for item in files:
            item["shown_in_body"] = bool(item["content_id"] and item["content_id"].lower() in used)
        reply = None
        if reply_to:
            target = by_id.get(reply_to)
            reply = {
                "anchor": post_anchor(reply_to) if target else None,
                "who": (target[10] or target[11]) if target else None,
                "when": _when(target[4]) if target else None,
            }
        key = (sender_address or sender_name or "?").lower()
        who = senders.setdefault(
            key, {"name": sender_name, "address": sender_address, "posts": 0, "first": n}
        )
        who["posts"] += 1
        history = [_version(v, cids, thread_cids) for v in versions.get(post_id, [])]
        for v in history:
            v["current"] = v["change_key"] == change_key
        posts.append(
            {
                "n": n,
                "id": post_id,
                "anchor": post_anchor(post_id),
                "sender_name": sender_name or sender_address or "(unknown sender)",
                "sender_address": sender_address,
                "on_behalf": bool(
                    from_address
                    and sender_address
                    and from_address != sender_address
                    and from_address != (t[13] or "").lower()
                ),
                "from_name": from_name,
                "from_address": from_address,
                "received": _when(received),
                "received_iso": received,
                "modified": _when(modified),
                "categories": [c for c in json_list(categories) if isinstance(c, str)],
                "new_participants": _people(json_list(new_people)),
                "body": html,
                "attachments": files,
                "attachments_note": attachments_note,
                "reply": reply,
                "versions": history if len(history) > 1 else [],
                "version_count": version_count,
                "deleted_at": deleted_at,
                "deleted": _when(deleted_at),
                "purged": _when(purged[0]) if purged else None,
                "purge_id": purged[1] if purged else None,
            }
        )
    live = [p for p in posts if not p["deleted_at"]]
    received = [p["received_iso"] for p in posts if p["received_iso"]]
    return {
        "database": database,
        "group_id": group_id,
        "group_name": t[12] or group_id,
        "group_mail": t[13],
        "thread_id": thread_id,
        "topic": t[3] or "(no subject)",
        "is_locked": bool(t[6]),
        "possibly_truncated": bool(t[10]),
        "deleted": _when(t[11]),
        "to": _people(json_list(t[7])),
        "cc": _people(json_list(t[8])),
        "participants": sorted(senders.values(), key=lambda s: s["first"]),
        "posts": posts,
        "post_total": len(posts),
        "post_live": len(live),
        "first": _when(min(received)) if received else "",
        "last": _when(max(received)) if received else "",
        "thread_row_url": datasette.urls.row(database, "threads", tilde_encode(thread_id)),
        "posts_table_url": table_url(
            datasette, database, "posts", thread_id=thread_id, _sort="receivedDateTime"
        ),
        "deleted_posts_url": table_url(
            datasette, database, "posts", deleted=True, thread_id=thread_id,
            _sort="receivedDateTime",
        ),  # fmt: skip
        "all_posts_url": table_url(
            datasette, database, "posts", deleted=None, thread_id=thread_id,
            _sort="receivedDateTime",
        ),  # fmt: skip
        "group_threads_url": table_url(datasette, database, "threads", group_id=group_id),
        "search_url": datasette.urls.path("/-/groupsync/search"),
    }


async def thread(datasette: Any, request: Any) -> Response:
    group_id = _id(request.url_vars["group"])
    thread_id = _id(request.url_vars["thread"])
    names = await _readable(datasette, request, await find_archive(datasette, _db_arg(request)))
    for name in names:
        db = datasette.get_database(name)
        data = await db.execute_fn(
            lambda conn: queries.load_thread(conn, group_id, thread_id)  # noqa: B023
        )
        if data is not None:
            await _log(datasette, request, name, "thread", f"{group_id}/{thread_id}",
                       len(data["posts"]))  # fmt: skip
            context = thread_context(datasette, name, data)
            context["css_url"] = css_url(datasette)
            return await _page(datasette, request, "groupsync_thread.html", context)
    raise NotFound(f"No thread {thread_id} in group {group_id} in this archive.")


def _db_arg(request: Any) -> str | None:
    return request.args.get("db") or None


# -- search -------------------------------------------------------------------------------


def _snippet(text: str | None) -> Markup:
    """groupsync.search's snippets are escaped text with ``<mark>``; keep only that."""
    return Markup(_MARK.sub("&lt;", text or ""))


def _run_search(path: str, index_path: Path, query: str, **options: Any) -> Any:
    with Archive(path, readonly=True) as archive:
        return search_engine.search_threads(archive, index_path, query, **options)


def _run_search_many(sources: list[tuple[str, str, Path]], query: str, **options: Any) -> Any:
    """Several archives (shards) ranked as one: ``(database, path, index)`` each."""
    from ..search.federated import search_threads_archives

    with contextlib.ExitStack() as stack:
        opened = [(name, stack.enter_context(Archive(path, readonly=True)), index)
                  for name, path, index in sources]  # fmt: skip
        return search_threads_archives(opened, query, **options)


def _index_path(datasette: Any, database: str, path: str) -> Path:
    config = datasette.plugin_config("groupsync", database=database) or {}
    configured = config.get("search_index")
    return Path(configured) if configured else search_engine.index_path_for(path)


async def _groups(datasette: Any, database: str) -> list[dict[str, Any]]:
    db = datasette.get_database(database)
    rows = await db.execute(queries.MAILBOX_GROUP_NAMES)
    return [{"id": r[0], "name": r[1] or r[0]} for r in rows.rows]


async def _all_groups(datasette: Any, names: list[str]) -> list[dict[str, Any]]:
    """The groups of every archive served (shards hold different ones), each once."""
    seen: dict[str, dict[str, Any]] = {}
    for name in names:
        for group in await _groups(datasette, name):
            seen.setdefault(group["id"], group)
    return list(seen.values())


def _date(value: str) -> date | None:
    if not _DAY.match(value):
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def _page_number(value: str | None) -> int:
    try:
        return max(1, min(int(value or 1), 10_000))
    except ValueError:
        return 1


async def search(datasette: Any, request: Any) -> Response:
    names = await _readable(datasette, request, await find_archive(datasette, _db_arg(request)))
    database = names[0]
    q = (request.args.get("q") or "").strip()
    group = request.args.get("group") or ""
    after = (request.args.get("after") or "").strip()
    before = (request.args.get("before") or "").strip()
    sort = request.args.get("sort") or "relevance"
    deleted = request.args.get("deleted") == "1"
    page = _page_number(request.args.get("page"))
    groups = await _all_groups(datasette, names)
    context: dict[str, Any] = {
        "database": database,
        "databases": names,
        # ?db= keeps the search to one archive; without it, every archive served (shards)
        "pinned": _db_arg(request) if len(names) == 1 else None,
        "q": q,
        "group": group,
        "after": after,
        "before": before,
        "sort": sort,
        "deleted": deleted,
        "groups": groups,
        "sorts": [("relevance", "best match"), ("date", "newest first")],
        "notes": [],
        "hits": [],
        "total": None,
        "posts": None,
        "suggestion": None,
        "fields": search_engine.field_list(),
        "error": None,
        "page": page,
        "css_url": css_url(datasette),
        "search_url": datasette.urls.path("/-/groupsync/search"),
    }
    status = 200
    problems = [f"{label} must be a date like 2025-03-31" for label, value in (
        ("From", after), ("To", before)) if value and _date(value) is None]  # fmt: skip
    if group and group not in {g["id"] for g in groups}:
        problems.append("no such group in this archive")
    if sort not in {s for s, _ in context["sorts"]}:
        problems.append(f"unknown sort {sort!r}")
    if problems:
        context["error"] = "; ".join(problems)
        return await _page(datasette, request, "groupsync_search.html", context, status=400)
    if q or after or before:
        terms = [q] if q else []
        terms += [f"after:{after}"] if after else []
        # "To" includes its day; the query language's before: is the start of a day
        if before and (day := _date(before)):
            terms.append(f"before:{day + timedelta(days=1)}")
        path = datasette.get_database(database).path
        sources = [(name, datasette.get_database(name).path) for name in names]
        run: Any = functools.partial(_run_search, path, _index_path(datasette, database, path))
        if len(names) > 1:  # the shards of a tenant: one ranking over them all
            run = functools.partial(
                _run_search_many, [(n, p, _index_path(datasette, n, p)) for n, p in sources]
            )
        try:
            results = await asyncio.to_thread(
                run,
                " ".join(terms),
                limit=PAGE_SIZE,
                offset=(page - 1) * PAGE_SIZE,
                group=group or None,
                sort=sort,
                include_deleted=deleted,
                catch_up=False,  # the UI never writes; `groupsync index` or serve does
            )
        except search_engine.QueryError as ex:
            context["error"] = str(ex)
            status = 400
        except GroupsyncError as ex:
            context["error"] = str(ex)
            status = 503
        else:
            target = " ".join(terms) + (f" [group {group}]" if group else "")
            matched = int(getattr(results, "posts", results.total))  # posts, not threads
            for name in names:  # each archive searched keeps its own log
                await _log(datasette, request, name, "search", target, matched)
            context.update(_results(datasette, request, database, results, page))
    return await _page(datasette, request, "groupsync_search.html", context, status=status)


def _sender(sender: Any) -> str:
    if isinstance(sender, dict):
        return str(sender.get("name") or sender.get("address") or "")
    return str(sender or "")


def _results(
    datasette: Any, request: Any, database: str, results: Any, page: int
) -> dict[str, Any]:
    total = int(results.total)  # threads; a page holds PAGE_SIZE threads
    hits = []
    for thread in results.threads:
        hit = thread.hit
        hits.append(
            {
                "url": thread_url(
                    datasette, hit.group_id, hit.thread_id, post_id=hit.post_id,
                    database=getattr(hit, "archive", None) or database,
                ),
                "topic": hit.topic or "(no subject)",
                "group": hit.group_name or hit.group_id,
                "sender": _sender(hit.sender),
                "when": _when(thread.newest_match or hit.receivedDateTime),
                "matching": thread.matching_posts,
                "snippet": _snippet(hit.snippet),
                "attachments": hit.has_attachments,
                "deleted": _when(hit.deleted_at),
            }
        )
    pages = max(1, -(-int(total) // PAGE_SIZE))
    args = {k: request.args.get(k) for k in request.args if k != "page"}
    args = {k: v for k, v in args.items() if v}

    def page_url(n: int) -> str:
        return (
            str(datasette.urls.path("/-/groupsync/search")) + "?" + urlencode({**args, "page": n})
        )

    suggestion = None
    if results.suggestion:
        fixed = {**args, "q": results.suggestion}
        suggestion = {
            "text": results.suggestion,
            "url": str(datasette.urls.path("/-/groupsync/search")) + "?" + urlencode(fixed),
        }
    first = (page - 1) * PAGE_SIZE + 1
    return {
        "hits": hits,
        "total": total,
        "posts": int(results.posts),
        "suggestion": suggestion,
        "notes": list(results.notes),
        "first": first if hits else 0,
        "last": first + len(hits) - 1 if hits else 0,
        "pages": pages,
        "prev_url": page_url(page - 1) if page > 1 else None,
        "next_url": page_url(page + 1) if page < pages else None,
    }


# -- attachment download ------------------------------------------------------------------

def content_disposition(kind: str, name: str) -> str:
    """RFC 6266: an ASCII ``filename`` for old clients, the real name in ``filename*``
    (bidi controls, which would disguise its extension, made ``_``)."""
    name = neutralise_bidi(name, "_")
    ascii_name = re.sub(r"[^A-Za-z0-9._ ()-]", "_", name).strip() or "attachment"
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


def safe_content_type(value: str | None) -> str:
    kind = (value or "").split(";", 1)[0].strip().lower()
    return kind if _MIME.match(kind) else "application/octet-stream"


class BlobResponse(Response):
    """A download streamed from the blobs table, one chunk per round trip to SQLite."""

    def __init__(
        self,
        chunks: Callable[[], AsyncIterator[bytes]],
        *,
        headers: dict[str, str],
        content_type: str,
    ) -> None:
        super().__init__(body=None, status=200, headers=headers, content_type=content_type)
        self._chunks = chunks

    async def asgi_send(self, send: Any) -> None:
        headers = {**self.headers, "content-type": self.content_type}
        await send(
            {
                "type": "http.response.start",
                "status": self.status,
                "headers": [[k.encode("latin-1"), v.encode("latin-1")] for k, v in headers.items()],
            }
        )
        async for chunk in self._chunks():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})


async def attachment(datasette: Any, request: Any) -> Response:
    sha256 = request.url_vars["sha256"]
    if not _SHA256.match(sha256):
        raise NotFound("An attachment URL ends in the SHA-256 of its bytes (64 hex digits).")
    post_id = request.args.get("post") or None
    names = await _readable(datasette, request, await find_archive(datasette, _db_arg(request)))
    for name in names:
        db = datasette.get_database(name)
        found = (
            await db.execute(queries.BLOB, {"post_id": post_id, "sha256": sha256})
        ).first()
        if found is None:
            continue
        rowid, size, file_name, content_type = found
        await _log(datasette, request, name, "download", sha256, 1)
        kind = safe_content_type(content_type)
        disposition = "inline" if kind in INLINE_IMAGES else "attachment"

        async def chunks(
            db: Any = db, rowid: int = rowid, size: int = size
        ) -> AsyncIterator[bytes]:
            for offset in range(0, size, BLOB_CHUNK):
                yield await db.execute_fn(
                    lambda conn, o=offset: queries.read_blob_chunk(conn, rowid, o, BLOB_CHUNK)
                )

        headers = {
            "Content-Disposition": content_disposition(disposition, file_name or sha256),
            "Content-Length": str(size),
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
            "Cross-Origin-Resource-Policy": "same-origin",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "private, max-age=86400",
            "ETag": f'"{sha256}"',
        }
        return BlobResponse(chunks, headers=headers, content_type=kind)
    raise NotFound(f"No attachment with SHA-256 {sha256} in this archive.")


# -- index ------------------------------------------------------------------------------

async def index(datasette: Any, request: Any) -> Response:
    names = await _readable(datasette, request, await find_archive(datasette, _db_arg(request)))
    archives = []
    for name in names:
        db = datasette.get_database(name)
        rows = (await db.execute(queries.GROUP_SUMMARIES)).rows
        archives.append(
            {
                "name": name,
                "url": datasette.urls.database(name),
                "groups": [
                    {
                        "name": r[1] or r[0],
                        "visibility": r[2],
                        "deleted": _when(r[3]),
                        "threads": r[4],
                        "posts": r[5],
                        "last": _when(r[6]),
                        "url": table_url(datasette, name, "threads", group_id=r[0]),
                        "threads_url": table_url(datasette, name, "threads", group_id=r[0]),
                        "posts_url": table_url(datasette, name, "posts", group_id=r[0]),
                        "search_url": str(datasette.urls.path("/-/groupsync/search"))
                        + "?"
                        + urlencode({"group": r[0], "sort": "newest", "after": "1970-01-01"}),
                    }
                    for r in rows
                ],
                "queries": [
                    {"title": title, "url": datasette.urls.query(name, key)}
                    for key, title in await canned_queries(datasette, name, request.actor)
                ],
            }
        )
    context = {
        "archives": archives,
        "css_url": css_url(datasette),
        "search_url": datasette.urls.path("/-/groupsync/search"),
    }
    return await _page(datasette, request, "groupsync_index.html", context)

