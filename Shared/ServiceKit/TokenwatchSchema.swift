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
        PostgresMigration(version: 2, name: "tenants_keys_prices", sql: """
            CREATE TABLE tenants (
                tenant_id text PRIMARY KEY,
                name text NOT NULL,
                disabled boolean NOT NULL DEFAULT false,
                created_at timestamptz NOT NULL DEFAULT now()
            );
            -- A key is shown once as "tw_<key_id>_<secret>"; only the SHA-256 of the whole key is stored.
            CREATE TABLE api_keys (
                key_id text PRIMARY KEY,
                tenant_id text NOT NULL REFERENCES tenants (tenant_id),
                key_hash bytea NOT NULL,
                scopes text[] NOT NULL DEFAULT '{ingest,query}',
                created_at timestamptz NOT NULL DEFAULT now(),
                revoked_at timestamptz
            );
            CREATE INDEX api_keys_tenant ON api_keys (tenant_id);
            -- Prices in micro-dollars per million tokens. tenant_id '' holds the built-in defaults; a row with a
            -- tenant's id overrides the default for that tenant.
            CREATE TABLE prices (
                tenant_id text NOT NULL DEFAULT '',
                provider text NOT NULL,
                model text NOT NULL,
                input_micros_per_mtok bigint NOT NULL CHECK (input_micros_per_mtok >= 0),
                cached_input_micros_per_mtok bigint NOT NULL CHECK (cached_input_micros_per_mtok >= 0),
                output_micros_per_mtok bigint NOT NULL CHECK (output_micros_per_mtok >= 0),
                updated_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (tenant_id, provider, model)
            );
            """ + BuiltInPrices.insertSQL),
    ]
}
