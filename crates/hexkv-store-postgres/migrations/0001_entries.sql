-- hexkv's schema. Applied at start (store.postgres.migrate = true), once per database, under
-- sqlx's advisory lock, so replicas starting together do not race.

-- The store-wide version: every write takes the next value, so versions are unique, never reused
-- and survive restarts. Gaps are allowed (an insert that turns into an update skips one).
CREATE SEQUENCE hexkv_version AS bigint MINVALUE 1;

-- One row per key. "C" collation orders keys by their UTF-8 bytes, the order listings promise,
-- and lets the primary-key B-tree serve `key >= prefix AND key < successor(prefix)` ranges and
-- cursor pagination as index range scans.
CREATE TABLE hexkv_entries (
    key     text COLLATE "C" PRIMARY KEY,
    value   bytea  NOT NULL,
    version bigint NOT NULL
);
