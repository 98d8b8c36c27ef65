-- index _outbox_log_item
CREATE INDEX _outbox_log_item ON _outbox_log (outbox_id);

-- index _outbox_state
CREATE INDEX _outbox_state ON _outbox (state, id);

-- index _outbox_thread
CREATE INDEX _outbox_thread ON _outbox (thread_id, state);

-- index attachments_sha256
CREATE INDEX attachments_sha256 ON attachments (sha256);

-- index blobs_run
CREATE INDEX blobs_run ON blobs (sync_run_id);

-- index conversations_group
CREATE INDEX conversations_group ON conversations (group_id, lastDeliveredDateTime);

-- index events_created
CREATE INDEX events_created ON events (created_at);

-- index events_state
CREATE INDEX events_state ON events (state, id);

-- index idx__sqlite_migrations_migration_set_name
CREATE UNIQUE INDEX "idx__sqlite_migrations_migration_set_name"
    ON "_sqlite_migrations" ("migration_set", "name");

-- index post_versions_run
CREATE INDEX post_versions_run ON post_versions (sync_run_id);

-- index posts_change_seq
CREATE INDEX posts_change_seq ON posts (change_seq);

-- index posts_group
CREATE INDEX posts_group ON posts (group_id, receivedDateTime);

-- index posts_sender
CREATE INDEX posts_sender ON posts (sender_address);

-- index posts_thread
CREATE INDEX posts_thread ON posts (thread_id, receivedDateTime);

-- index purged_items_post
CREATE INDEX purged_items_post ON purged_items (post_id);

-- index purged_items_purge
CREATE INDEX purged_items_purge ON purged_items (purge_id);

-- index purged_items_run
CREATE INDEX purged_items_run ON purged_items (sync_run_id);

-- index retention_policies_active
CREATE UNIQUE INDEX retention_policies_active ON retention_policies (coalesce(group_id, '')) WHERE cleared_at IS NULL;

-- index threads_conversation
CREATE INDEX threads_conversation ON threads (conversation_id);

-- index threads_group
CREATE INDEX threads_group ON threads (group_id, lastDeliveredDateTime);

-- table _group_delta
CREATE TABLE _group_delta (
            scope TEXT PRIMARY KEY,
            delta_link TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );

-- table _outbox
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
        );

-- table _outbox_log
CREATE TABLE _outbox_log (
            id INTEGER PRIMARY KEY,
            outbox_id INTEGER NOT NULL REFERENCES _outbox(id),
            at TEXT NOT NULL,
            state TEXT NOT NULL,
            detail TEXT,
            identity TEXT
        );

-- table _sqlite_migrations
CREATE TABLE "_sqlite_migrations" (
   "id" INTEGER PRIMARY KEY,
   "migration_set" TEXT,
   "name" TEXT,
   "applied_at" TEXT
);

-- table _sync_state
CREATE TABLE _sync_state (
        group_id TEXT PRIMARY KEY REFERENCES groups(id),
        watermark TEXT,
        last_incremental_at TEXT,
        last_full_at TEXT,
        early_stop INTEGER NOT NULL DEFAULT 1,
        missed_changes INTEGER NOT NULL DEFAULT 0
    );

-- table access_log_seals
CREATE TABLE access_log_seals (
            sync_run_id INTEGER PRIMARY KEY REFERENCES sync_runs(id),
            sealed_at TEXT NOT NULL,
            rows INTEGER NOT NULL,
            head TEXT NOT NULL
        );

-- table attachments
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
    );

-- table blobs
CREATE TABLE blobs (
        sha256 TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        content BLOB NOT NULL,
        first_seen_at TEXT NOT NULL
    , sync_run_id INTEGER REFERENCES sync_runs(id));

-- table conversations
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
    );

-- table events
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
        );

-- table exports
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
        );

-- table governance_log
CREATE TABLE governance_log (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            record TEXT NOT NULL,
            prev_digest TEXT NOT NULL,
            digest TEXT NOT NULL
        );

-- table groups
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
    );

-- table legal_holds
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
        );

-- table people
CREATE TABLE people (
        address TEXT PRIMARY KEY,
        name TEXT,
        first_seen_at TEXT NOT NULL,
        last_seen_at TEXT NOT NULL
    );

-- table post_versions
CREATE TABLE post_versions (
        post_id TEXT NOT NULL REFERENCES posts(id),
        changeKey TEXT NOT NULL,
        lastModifiedDateTime TEXT,
        json TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        sync_run_id INTEGER REFERENCES sync_runs(id),
        first_seen_at TEXT NOT NULL,
        PRIMARY KEY (post_id, changeKey)
    );

-- table posts
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
    , body_text TEXT, change_seq INTEGER, purged_at TEXT, purge_id INTEGER REFERENCES purges(id));

-- table posts_fts
CREATE VIRTUAL TABLE "posts_fts" USING FTS5 (
    "body_text", "sender_name", "sender_address", "from_name",
    tokenize='unicode61 remove_diacritics 2',
    content="posts"
);

-- table purged_items
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
        );

-- table purges
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
        );

-- table retention_policies
CREATE TABLE retention_policies (
            id INTEGER PRIMARY KEY,
            group_id TEXT REFERENCES groups(id),
            keep TEXT NOT NULL,
            set_by TEXT NOT NULL,
            set_at TEXT NOT NULL,
            cleared_by TEXT,
            cleared_at TEXT
        );

-- table sync_runs
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
    , digest TEXT, prev_digest TEXT, sealed_at TEXT, digest_items INTEGER, events INTEGER NOT NULL DEFAULT 0);

-- table threads
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
    );

-- table threads_fts
CREATE VIRTUAL TABLE "threads_fts" USING FTS5 (
    "topic", "preview",
    tokenize='unicode61 remove_diacritics 2',
    content="threads"
);

-- trigger posts_ad
CREATE TRIGGER "posts_ad" AFTER DELETE ON "posts" BEGIN
  INSERT INTO "posts_fts" ("posts_fts", rowid, "body_text", "sender_name", "sender_address", "from_name") VALUES('delete', old.rowid, old."body_text", old."sender_name", old."sender_address", old."from_name");
END;

-- trigger posts_ai
CREATE TRIGGER "posts_ai" AFTER INSERT ON "posts" BEGIN
  INSERT INTO "posts_fts" (rowid, "body_text", "sender_name", "sender_address", "from_name") VALUES (new.rowid, new."body_text", new."sender_name", new."sender_address", new."from_name");
END;

-- trigger posts_au
CREATE TRIGGER "posts_au" AFTER UPDATE ON "posts" BEGIN
  INSERT INTO "posts_fts" ("posts_fts", rowid, "body_text", "sender_name", "sender_address", "from_name") VALUES('delete', old.rowid, old."body_text", old."sender_name", old."sender_address", old."from_name");
  INSERT INTO "posts_fts" (rowid, "body_text", "sender_name", "sender_address", "from_name") VALUES (new.rowid, new."body_text", new."sender_name", new."sender_address", new."from_name");
END;

-- trigger threads_ad
CREATE TRIGGER "threads_ad" AFTER DELETE ON "threads" BEGIN
  INSERT INTO "threads_fts" ("threads_fts", rowid, "topic", "preview") VALUES('delete', old.rowid, old."topic", old."preview");
END;

-- trigger threads_ai
CREATE TRIGGER "threads_ai" AFTER INSERT ON "threads" BEGIN
  INSERT INTO "threads_fts" (rowid, "topic", "preview") VALUES (new.rowid, new."topic", new."preview");
END;

-- trigger threads_au
CREATE TRIGGER "threads_au" AFTER UPDATE ON "threads" BEGIN
  INSERT INTO "threads_fts" ("threads_fts", rowid, "topic", "preview") VALUES('delete', old.rowid, old."topic", old."preview");
  INSERT INTO "threads_fts" (rowid, "topic", "preview") VALUES (new.rowid, new."topic", new."preview");
END;

