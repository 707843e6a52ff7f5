import Postgres

/// The Postgres schema, as versioned migrations every service applies at start (under an advisory lock).
/// Append new versions; never edit an applied one.
public enum TokenwatchSchema {
    public static let migrations: [PostgresMigration] = [
        PostgresMigration(version: 1, name: "baseline", sql: """
            -- Which service instances have started against this database, for operators.
            CREATE TABLE IF NOT EXISTS tw_service_starts (
                service text NOT NULL,
                started_at timestamptz NOT NULL DEFAULT now()
            );
            """),
    ]
}
