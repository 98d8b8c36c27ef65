"""The archive's schema, created and evolved by numbered migrations.

Graph's properties keep Graph's names (``changeKey``, ``lastDeliveredDateTime``); columns
groupsync adds are snake_case (``group_id``, ``first_seen_at``, ``deleted_at``). Nothing is
ever deleted: an item gone upstream gets ``deleted_at``.
"""

from __future__ import annotations

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from .html import to_text

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "applied_migrations",
    "apply_migrations",
    "unknown_migrations",
]

MIGRATIONS = Migrations("groupsync")

_V1 = [
    """
    CREATE TABLE groups (
        id TEXT PRIMARY KEY,
        displayName TEXT,
        description TEXT,
        mail TEXT,
        mailNickname TEXT,
        visibility TEXT,
        groupTypes TEXT,
        createdDateTime TEXT,
        json TEXT NOT NULL,
        first_seen_at TEXT NOT NULL,
        last_seen_at TEXT NOT NULL,
        deleted_at TEXT,
        access_note TEXT
    )
    """,
    """
    CREATE TABLE conversations (
        id TEXT PRIMARY KEY,
        group_id TEXT NOT NULL REFERENCES groups(id),
        topic TEXT,
        hasAttachments INTEGER,
        lastDeliveredDateTime TEXT,
        uniqueSenders TEXT,
        preview TEXT,
        first_seen_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        deleted_at TEXT
    )
    """,
    "CREATE INDEX conversations_group ON conversations (group_id, lastDeliveredDateTime)",
    """
    CREATE TABLE threads (
        id TEXT PRIMARY KEY,
        group_id TEXT NOT NULL REFERENCES groups(id),
        conversation_id TEXT REFERENCES conversations(id),
        topic TEXT,
        hasAttachments INTEGER,
        lastDeliveredDateTime TEXT,
        uniqueSenders TEXT,
        preview TEXT,
        isLocked INTEGER,
        toRecipients TEXT,
        ccRecipients TEXT,
        post_count INTEGER NOT NULL DEFAULT 0,
        possibly_truncated INTEGER NOT NULL DEFAULT 0,
        first_seen_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        deleted_at TEXT
    )
    """,
    "CREATE INDEX threads_group ON threads (group_id, lastDeliveredDateTime)",
    "CREATE INDEX threads_conversation ON threads (conversation_id)",
    """
    CREATE TABLE people (
        address TEXT PRIMARY KEY,
        name TEXT,
        first_seen_at TEXT NOT NULL,
        last_seen_at TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE sync_runs (
        id INTEGER PRIMARY KEY,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        status TEXT NOT NULL,
        mode TEXT NOT NULL,
        groups TEXT,
        identity TEXT,
        requests INTEGER NOT NULL DEFAULT 0,
        throttled INTEGER NOT NULL DEFAULT 0,
        retries INTEGER NOT NULL DEFAULT 0,
        throttle_wait REAL NOT NULL DEFAULT 0,
        retry_wait REAL NOT NULL DEFAULT 0,
        threads_checked INTEGER NOT NULL DEFAULT 0,
        threads_fetched INTEGER NOT NULL DEFAULT 0,
        items_new INTEGER NOT NULL DEFAULT 0,
        items_changed INTEGER NOT NULL DEFAULT 0,
        items_deleted INTEGER NOT NULL DEFAULT 0,
        attachments_new INTEGER NOT NULL DEFAULT 0,
        notes TEXT,
        error TEXT
    )
    """,
    """
    CREATE TABLE posts (
        id TEXT PRIMARY KEY,
        group_id TEXT NOT NULL REFERENCES groups(id),
        conversation_id TEXT REFERENCES conversations(id),
        thread_id TEXT NOT NULL REFERENCES threads(id),
        changeKey TEXT,
        createdDateTime TEXT,
        lastModifiedDateTime TEXT,
        receivedDateTime TEXT,
        hasAttachments INTEGER,
        categories TEXT,
        body_contentType TEXT,
        body_content TEXT,
        from_name TEXT,
        from_address TEXT REFERENCES people(address),
        sender_name TEXT,
        sender_address TEXT REFERENCES people(address),
        newParticipants TEXT,
        in_reply_to_id TEXT,
        version_count INTEGER NOT NULL DEFAULT 1,
        attachments_note TEXT,
        first_seen_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        deleted_at TEXT
    )
    """,
    "CREATE INDEX posts_thread ON posts (thread_id, receivedDateTime)",
    "CREATE INDEX posts_group ON posts (group_id, receivedDateTime)",
    "CREATE INDEX posts_sender ON posts (sender_address)",
    """
    CREATE TABLE post_versions (
        post_id TEXT NOT NULL REFERENCES posts(id),
        changeKey TEXT NOT NULL,
        lastModifiedDateTime TEXT,
        json TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        sync_run_id INTEGER REFERENCES sync_runs(id),
        first_seen_at TEXT NOT NULL,
        PRIMARY KEY (post_id, changeKey)
    )
    """,
    """
    CREATE TABLE blobs (
        sha256 TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        content BLOB NOT NULL,
        first_seen_at TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE attachments (
        post_id TEXT NOT NULL REFERENCES posts(id),
        id TEXT NOT NULL,
        type TEXT NOT NULL,
        name TEXT,
        contentType TEXT,
        size INTEGER,
        isInline INTEGER,
        contentId TEXT,
        lastModifiedDateTime TEXT,
        sha256 TEXT REFERENCES blobs(sha256),
        json TEXT NOT NULL,
        first_seen_at TEXT NOT NULL,
        deleted_at TEXT,
        PRIMARY KEY (post_id, id)
    )
    """,
    "CREATE INDEX attachments_sha256 ON attachments (sha256)",
    """
    CREATE TABLE _sync_state (
        group_id TEXT PRIMARY KEY REFERENCES groups(id),
        watermark TEXT,
        last_incremental_at TEXT,
        last_full_at TEXT,
        early_stop INTEGER NOT NULL DEFAULT 1,
        missed_changes INTEGER NOT NULL DEFAULT 0
    )
    """,
]


@MIGRATIONS(name="001_initial_schema")
def m001_initial_schema(db: Database) -> None:
    for statement in _V1:
        db.execute(statement)


@MIGRATIONS(name="002_post_text_change_seq_fts")
def m002_post_text_change_seq_fts(db: Database) -> None:
    """Plain-text bodies (for snippets and table search), a change sequence the search
    index follows, and SQLite FTS5 on posts and threads for Datasette's own search box."""
    db.execute("ALTER TABLE posts ADD COLUMN body_text TEXT")
    db.execute("ALTER TABLE posts ADD COLUMN change_seq INTEGER")
    db.execute("CREATE INDEX posts_change_seq ON posts (change_seq)")
    rows = db.execute("SELECT rowid, body_content, body_contentType FROM posts").fetchall()
    for seq, (rowid, content, content_type) in enumerate(rows, 1):
        db.execute(
            "UPDATE posts SET body_text = ?, change_seq = ? WHERE rowid = ?",
            (to_text(content, content_type or "html"), seq, rowid),
        )
    tokenize = "unicode61 remove_diacritics 2"
    db.table("posts").enable_fts(
        ["body_text", "sender_name", "sender_address", "from_name"],
        create_triggers=True,
        tokenize=tokenize,
    )
    db.table("threads").enable_fts(["topic", "preview"], create_triggers=True, tokenize=tokenize)


@MIGRATIONS(name="003_outbox")
def m003_outbox(db: Database) -> None:
    """The outbox: writes queued offline, replayed later, each with its history."""
    db.execute(
        """
        CREATE TABLE _outbox (
            id INTEGER PRIMARY KEY,
            action TEXT NOT NULL,
            group_id TEXT NOT NULL,
            conversation_id TEXT,
            thread_id TEXT,
            post_id TEXT,
            topic TEXT,
            body TEXT NOT NULL,
            marker TEXT NOT NULL UNIQUE,
            content_sha256 TEXT,
            state TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT,
            last_error TEXT,
            request_id TEXT,
            identity TEXT,
            created_at TEXT NOT NULL,
            sending_at TEXT,
            sent_at TEXT,
            result TEXT
        )
        """
    )
    db.execute("CREATE INDEX _outbox_state ON _outbox (state, id)")
    db.execute("CREATE INDEX _outbox_thread ON _outbox (thread_id, state)")
    db.execute(
        """
        CREATE TABLE _outbox_log (
            id INTEGER PRIMARY KEY,
            outbox_id INTEGER NOT NULL REFERENCES _outbox(id),
            at TEXT NOT NULL,
            state TEXT NOT NULL,
            detail TEXT,
            identity TEXT
        )
        """
    )
    db.execute("CREATE INDEX _outbox_log_item ON _outbox_log (outbox_id)")


@MIGRATIONS(name="004_integrity_events_exports")
def m004_integrity_events_exports(db: Database) -> None:
    """The digest chain over sync runs, the trigger's events, and the exports' audit.

    Each finished run is sealed with ``digest`` = SHA-256 over the previous run's digest and
    the sorted hashes of the post versions and blobs it wrote (``archive.chain_digest``);
    blobs now record the run that first stored them. Blobs stored before this migration are
    attributed to the earliest run that stored a post version carrying them.
    """
    for column in ("digest", "prev_digest", "sealed_at"):
        db.execute(f"ALTER TABLE sync_runs ADD COLUMN {column} TEXT")
    db.execute("ALTER TABLE sync_runs ADD COLUMN digest_items INTEGER")
    db.execute("ALTER TABLE sync_runs ADD COLUMN events INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE blobs ADD COLUMN sync_run_id INTEGER REFERENCES sync_runs(id)")
    db.execute(
        """
        UPDATE blobs SET sync_run_id = (
            SELECT min(v.sync_run_id) FROM attachments AS a
            JOIN post_versions AS v ON v.post_id = a.post_id
            WHERE a.sha256 = blobs.sha256
        )
        """
    )
    db.execute("CREATE INDEX post_versions_run ON post_versions (sync_run_id)")
    db.execute("CREATE INDEX blobs_run ON blobs (sync_run_id)")
    db.execute(
        """
        CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            group_id TEXT NOT NULL REFERENCES groups(id),
            conversation_id TEXT,
            thread_id TEXT NOT NULL,
            post_id TEXT NOT NULL UNIQUE,
            sync_run_id INTEGER REFERENCES sync_runs(id),
            json TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending',
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            created_at TEXT NOT NULL,
            last_attempt_at TEXT,
            delivered_at TEXT
        )
        """
    )
    db.execute("CREATE INDEX events_state ON events (state, id)")
    db.execute("CREATE INDEX events_created ON events (created_at)")
    db.execute(
        """
        CREATE TABLE exports (
            id INTEGER PRIMARY KEY,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            status TEXT NOT NULL,
            identity TEXT,
            os_user TEXT,
            format TEXT NOT NULL,
            out TEXT NOT NULL,
            filters TEXT,
            groups INTEGER NOT NULL DEFAULT 0,
            posts INTEGER NOT NULL DEFAULT 0,
            attachments INTEGER NOT NULL DEFAULT 0,
            files INTEGER NOT NULL DEFAULT 0,
            bytes INTEGER NOT NULL DEFAULT 0,
            chain_digest TEXT,
            manifest_sha256 TEXT,
            error TEXT
        )
        """
    )


@MIGRATIONS(name="005_events_without_hook_output")
def m005_events_without_hook_output(db: Database) -> None:
    """Earlier versions kept the tail of a failed hook's stderr in ``events.last_error``,
    which Datasette serves; a hook may print a secret. Keep groupsync's own words only."""
    db.execute(
        "UPDATE events SET last_error = substr(last_error, 1, instr(last_error, ': ') - 1) "
        "WHERE last_error LIKE 'the hook exited with status %: %'"
    )


@MIGRATIONS(name="006_retention_holds")
def m006_retention_holds(db: Database) -> None:
    """Retention policies and legal holds as rows, the purges they led to with a tombstone
    per purged item, and the governance log: every policy set or cleared, hold created or
    released and purge finished, each record chained to the one before by its digest."""
    db.execute(
        """
        CREATE TABLE retention_policies (
            id INTEGER PRIMARY KEY,
            group_id TEXT REFERENCES groups(id),
            keep TEXT NOT NULL,
            set_by TEXT NOT NULL,
            set_at TEXT NOT NULL,
            cleared_by TEXT,
            cleared_at TEXT
        )
        """
    )
    db.execute(
        "CREATE UNIQUE INDEX retention_policies_active "
        "ON retention_policies (coalesce(group_id, '')) WHERE cleared_at IS NULL"
    )
    db.execute(
        """
        CREATE TABLE legal_holds (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            groups TEXT,
            query TEXT,
            from_date TEXT,
            to_date TEXT,
            custodians TEXT,
            note TEXT,
            created_by TEXT NOT NULL,
            created_at TEXT NOT NULL,
            released_by TEXT,
            released_at TEXT
        )
        """
    )
    db.execute(
        """
        CREATE TABLE purges (
            id INTEGER PRIMARY KEY,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            status TEXT NOT NULL,
            actor TEXT NOT NULL,
            policies TEXT,
            holds TEXT,
            posts INTEGER NOT NULL DEFAULT 0,
            versions INTEGER NOT NULL DEFAULT 0,
            blobs INTEGER NOT NULL DEFAULT 0,
            bytes INTEGER NOT NULL DEFAULT 0,
            items_sha256 TEXT
        )
        """
    )
    db.execute(
        """
        CREATE TABLE purged_items (
            id INTEGER PRIMARY KEY,
            purge_id INTEGER NOT NULL REFERENCES purges(id),
            kind TEXT NOT NULL,
            post_id TEXT,
            changeKey TEXT,
            sha256 TEXT NOT NULL,
            size INTEGER NOT NULL,
            sync_run_id INTEGER,
            policy_id INTEGER,
            purged_at TEXT NOT NULL
        )
        """
    )
    db.execute("CREATE INDEX purged_items_purge ON purged_items (purge_id)")
    db.execute("CREATE INDEX purged_items_run ON purged_items (sync_run_id)")
    db.execute("CREATE INDEX purged_items_post ON purged_items (post_id)")
    db.execute("ALTER TABLE posts ADD COLUMN purged_at TEXT")
    db.execute("ALTER TABLE posts ADD COLUMN purge_id INTEGER REFERENCES purges(id)")
    db.execute(
        """
        CREATE TABLE governance_log (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            record TEXT NOT NULL,
            prev_digest TEXT NOT NULL,
            digest TEXT NOT NULL
        )
        """
    )


@MIGRATIONS(name="007_group_delta")
def m007_group_delta(db: Database) -> None:
    """Where ``sync --all`` left off in Graph's ``/groups/delta``: the deltaLink to follow
    next time, so that only new, changed and removed groups are read (issue 16)."""
    db.execute(
        """
        CREATE TABLE _group_delta (
            scope TEXT PRIMARY KEY,
            delta_link TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )
        """
    )


@MIGRATIONS(name="008_access_log")
def m008_access_log(db: Database) -> None:
    """The access log lives in ``<db>.access`` (chained row by row); each finished sync run
    seals its newest row here, so deleting the log's newest rows (or the whole file) before
    that seal is caught by ``verify``."""
    db.execute(
        """
        CREATE TABLE access_log_seals (
            sync_run_id INTEGER PRIMARY KEY REFERENCES sync_runs(id),
            sealed_at TEXT NOT NULL,
            rows INTEGER NOT NULL,
            head TEXT NOT NULL
        )
        """
    )


SCHEMA_VERSION = len(MIGRATIONS._migrations)


def apply_migrations(db: Database) -> None:
    """Bring an archive of any earlier version up to ``SCHEMA_VERSION``, transactionally."""
    MIGRATIONS.apply(db)


def applied_migrations(db: Database) -> list[str]:
    """The groupsync migrations recorded in an archive, oldest first (read only)."""
    return [m.name for m in MIGRATIONS.applied(db)]


def unknown_migrations(db: Database) -> list[str]:
    """Migrations an archive records that this version does not have: a newer groupsync
    wrote it, and this one must not guess at its schema."""
    known = {m.name for m in MIGRATIONS._migrations}
    return [name for name in applied_migrations(db) if name not in known]
