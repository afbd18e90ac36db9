-- aimesh's PostgreSQL store, first schema.
--
-- Records are MessagePack with field names (`bytea`, the embedded store's codec); the other
-- columns are only what queries filter, order or cascade on. Ids are UUID v7, so ordering by
-- id is ordering by creation. Deleting a network cascades to its tasks (and their journals),
-- memory items and sessions; kept answers are deleted with it by task id.

CREATE TABLE networks (
    network_id uuid PRIMARY KEY,
    record     bytea NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

-- One row per task: its record as inserted (the journal applies on top of it), and the
-- current status and summary, rewritten with each journaled event, for listings.
CREATE TABLE tasks (
    task_id    uuid PRIMARY KEY,
    network_id uuid NOT NULL REFERENCES networks (network_id) ON DELETE CASCADE,
    status     text NOT NULL,
    record     bytea NOT NULL,
    summary    bytea NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
) WITH (fillfactor = 80);

CREATE INDEX tasks_by_network ON tasks (network_id, task_id);
CREATE INDEX tasks_by_network_status ON tasks (network_id, status, task_id);

-- The journal: a task's events in the order they were made.
CREATE TABLE task_events (
    task_id uuid NOT NULL REFERENCES tasks (task_id) ON DELETE CASCADE,
    seq     integer NOT NULL,
    event   bytea NOT NULL,
    PRIMARY KEY (task_id, seq)
);

-- Shared memory. `item` is one format byte (0 plain, 1 zstd) then the MessagePack item. Which
-- shard holds an item is computed when loading, since the shard count can change.
CREATE TABLE memory_items (
    memory_id  uuid PRIMARY KEY,
    network_id uuid NOT NULL REFERENCES networks (network_id) ON DELETE CASCADE,
    item       bytea NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz
);

CREATE INDEX memory_items_by_network ON memory_items (network_id, memory_id);
CREATE INDEX memory_items_by_expiry ON memory_items (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE sessions (
    network_id uuid NOT NULL REFERENCES networks (network_id) ON DELETE CASCADE,
    session_id text COLLATE "C" NOT NULL,
    record     bytea NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz,
    PRIMARY KEY (network_id, session_id)
);

-- Model answers kept under their idempotency key, `<task id>.<rest>`; `task_id` is that
-- prefix (null for a key without one), so deleting a network's tasks finds their answers.
CREATE TABLE responses (
    key     text PRIMARY KEY,
    task_id uuid,
    body    bytea NOT NULL,
    at      timestamptz NOT NULL
);

CREATE INDEX responses_by_task ON responses (task_id) WHERE task_id IS NOT NULL;
CREATE INDEX responses_by_at ON responses (at);
