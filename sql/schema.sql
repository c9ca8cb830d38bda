-- sql/schema.sql - PostgreSQL (L3) schema of shm. Idempotent: safe to apply
-- again on every deploy (psql -v ON_ERROR_STOP=1 -f sql/schema.sql).
--
-- Who writes what
--   messages                           shm-flusher (MSG_* log records)
--   shm_objects, shm_edges             shm-flusher (GRAPH_SET / GRAPH_DROP)
--   shm_marks                          shm-flusher (MARK); cleared by the
--                                      hourly connection cleanup
--   shm_sink_positions                 shm-flusher, in the same transaction
--                                      as the rows it applies
--   communication_website_connections  the connection cleanup (Osuny's table)
--
-- Objects are "TYPE/ID" in libshm; here they are split at the last '/' into
-- object_type and object_id, the way Osuny stores polymorphic references.

-- The seed's table (optimized_persistence.rs), column for column.
-- message_type holds the bare variant name ("Text", "Delete", ...);
-- metadata the seed's MessageMetadata as serde writes it; content_hash the
-- XXH3-64 of the content in hex. room_id compares byte by byte (COLLATE
-- "C"): it is an identifier, pages only ever ask for one room, and its index
-- then neither depends on the OS's locale data (an upgrade of it cannot
-- reorder the index under PostgreSQL) nor calls strcoll on every comparison
-- (3% of the flusher's backend time). A table created before keeps its
-- collation; to move it: ALTER TABLE messages ALTER COLUMN room_id TYPE text
-- COLLATE "C" (rebuilds the room index, under an exclusive lock).
CREATE TABLE IF NOT EXISTS messages (
    id            uuid PRIMARY KEY,
    room_id       text COLLATE "C" NOT NULL,
    user_id       integer     NOT NULL,
    username      text        NOT NULL,
    content       text        NOT NULL,
    message_type  text        NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz,
    metadata      jsonb       NOT NULL DEFAULT
        '{"edited":false,"edit_count":0,"reactions":{},"mentions":[],"attachments":[],"reply_count":0,"last_reply_at":null}',
    content_hash  text        NOT NULL,
    parent_id     uuid,
    thread_id     uuid
);
-- metadata's default is the seed's MessageMetadata::default(): shm-flusher
-- COPYs a new message whose metadata is exactly that without the column, so
-- PostgreSQL does not parse the same jsonb on every row (it checks this
-- default in each such transaction and sends the column if it differs).
-- Tables made before this default had '{}': the block below moves them (and
-- takes the table's lock only then).
DO $$
DECLARE
    want constant jsonb := '{"edited":false,"edit_count":0,"reactions":{},'
        '"mentions":[],"attachments":[],"reply_count":0,"last_reply_at":null}';
BEGIN
    IF (SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d
          JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
         WHERE d.adrelid = 'messages'::regclass AND a.attname = 'metadata')
       IS DISTINCT FROM format('%L::jsonb', want::text) THEN
        EXECUTE format('ALTER TABLE messages ALTER COLUMN metadata'
                       ' SET DEFAULT %L::jsonb', want::text);
    END IF;
END $$;
-- Room pages: newest first, keyset pagination on (created_at, id).
CREATE INDEX IF NOT EXISTS messages_room_created_idx
    ON messages (room_id, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS messages_thread_idx
    ON messages (thread_id) WHERE thread_id IS NOT NULL;

-- Applied log position of each flusher sink, per environment. The PostgreSQL
-- sink updates its row in the same transaction as the rows of a batch, so this
-- table, not the environment's meta, is the truth after a crash: a batch is
-- applied exactly once even if the flusher dies between COMMIT and its own
-- bookkeeping. env_id identifies one L1 environment (one host).
CREATE TABLE IF NOT EXISTS shm_sink_positions (
    env_id      text        NOT NULL,
    sink        text        NOT NULL,
    applied     bigint      NOT NULL CHECK (applied >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (env_id, sink)
);
-- The environment that owns the row (its own UUID, kept in it): a flusher
-- of another environment under the same env_id (a copied config, a
-- recreated environment) is refused instead of taking this position.
ALTER TABLE shm_sink_positions ADD COLUMN IF NOT EXISTS env_uuid uuid;

-- Object graph mirrored from L1 (shm_deps_set). An object is direct (attached
-- to the website: the website itself, pages, posts, categories, events) or
-- indirect (people, organisations, blocks, media). Objects referenced as a
-- dependency but never declared have no row here and count as indirect, but
-- for websites: every object of type 'Communication::Website' is direct,
-- whatever its row says (libshm's rule; an older libshm let one be declared
-- indirect).
CREATE TABLE IF NOT EXISTS shm_objects (
    website_id   uuid        NOT NULL,
    object_type  text        NOT NULL,
    object_id    text        NOT NULL,
    direct       boolean     NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (website_id, object_type, object_id)
);

-- Direct dependencies: object embeds dep. Forward walks use the primary key;
-- backward walks (references) use shm_edges_dep_idx.
CREATE TABLE IF NOT EXISTS shm_edges (
    website_id   uuid NOT NULL,
    object_type  text NOT NULL,
    object_id    text NOT NULL,
    dep_type     text NOT NULL,
    dep_id       text NOT NULL,
    PRIMARY KEY (website_id, object_type, object_id, dep_type, dep_id)
);
CREATE INDEX IF NOT EXISTS shm_edges_dep_idx
    ON shm_edges (website_id, dep_type, dep_id);

-- Objects saved or destroyed since the last connection cleanup: one row per
-- object, the last mark wins. reason: 1 save, 2 destroy. seq is the log
-- sequence number of the mark, so a cleanup round clears exactly the marks it
-- read (DELETE ... WHERE seq <= the seq it saw).
CREATE TABLE IF NOT EXISTS shm_marks (
    website_id   uuid        NOT NULL,
    object_type  text        NOT NULL,
    object_id    text        NOT NULL,
    reason       smallint    NOT NULL CHECK (reason IN (1, 2)),
    marked_at    timestamptz NOT NULL,
    seq          bigint      NOT NULL,
    PRIMARY KEY (website_id, object_type, object_id)
);

-- Osuny's table, as Osuny has it (no unique index on purpose: the cleanup
-- keeps (website, direct source, indirect object) unique on its own).
CREATE TABLE IF NOT EXISTS communication_website_connections (
    id                    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    university_id         uuid        NOT NULL,
    website_id            uuid        NOT NULL,
    indirect_object_type  text        NOT NULL,
    indirect_object_id    uuid        NOT NULL,
    direct_source_type    text,
    direct_source_id      uuid,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS index_communication_website_connections_on_indirect_object
    ON communication_website_connections (indirect_object_type, indirect_object_id);
CREATE INDEX IF NOT EXISTS index_communication_website_connections_on_direct_source
    ON communication_website_connections (direct_source_type, direct_source_id);
CREATE INDEX IF NOT EXISTS index_communication_website_connections_on_university_id
    ON communication_website_connections (university_id);
CREATE INDEX IF NOT EXISTS index_communication_website_connections_on_website_id
    ON communication_website_connections (website_id);

-- The connection cleanup (flusher/cleanup.c, issue 5). Osuny's table above
-- is left exactly as Osuny has it: (website, direct source, indirect object)
-- is kept unique by the writers, not by an index. Every writer of a
-- website's connections first takes pg_advisory_xact_lock(0x73686d63,
-- hashtext(website_id::text)) and inserts with WHERE NOT EXISTS; the cleanup
-- also deletes any duplicate it meets (keeping the smallest id).
--
-- The university each website's new connections belong to (Osuny reads it
-- from communication_websites). Without a row here the cleanup takes the one
-- of the website's existing connections; with neither it only deletes.
CREATE TABLE IF NOT EXISTS shm_websites (
    website_id     uuid PRIMARY KEY,
    university_id  uuid NOT NULL
);
