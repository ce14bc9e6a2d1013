-- The in-process bus's log: an append-only list of messages and each group's position in it.
CREATE TABLE bus_messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    partition_key TEXT NOT NULL,
    payload BLOB NOT NULL,
    headers TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX bus_messages_topic_seq ON bus_messages (topic, seq);

CREATE TABLE bus_offsets (
    group_name TEXT NOT NULL,
    topic TEXT NOT NULL,
    -- The highest seq this group has acknowledged on this topic.
    acked_seq INTEGER NOT NULL,
    PRIMARY KEY (group_name, topic)
);
