import Postgres
import Rollups

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
        PostgresMigration(version: 3, name: "rollups", sql: """
            -- Adds two string->integer maps key by key: merges errors_by_type counts and quantile sketches (bucket
            -- index -> count), so rollup deltas apply as plain upserts in any order and add up exactly.
            CREATE FUNCTION tw_jsonb_add(a jsonb, b jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
                SELECT COALESCE(jsonb_object_agg(k, n), '{}'::jsonb) FROM (
                    SELECT k, SUM(v::bigint) AS n FROM (
                        SELECT key AS k, value AS v FROM jsonb_each_text(COALESCE(a, '{}'::jsonb))
                        UNION ALL
                        SELECT key, value FROM jsonb_each_text(COALESCE(b, '{}'::jsonb))
                    ) pairs GROUP BY k
                ) sums
            $$;
            -- Series rows: provider = '' and model = '' is the tenant's total.
            \(Granularity.allCases.map(rollupTable).joined(separator: "\n"))
            -- The aggregator's own consumed offsets and data watermark per input partition (DESIGN.md, "Delivery").
            CREATE TABLE aggregator_partitions (
                topic text NOT NULL,
                partition integer NOT NULL,
                next_offset bigint NOT NULL,
                watermark_us bigint NOT NULL DEFAULT 0,
                PRIMARY KEY (topic, partition)
            );
            -- Highest raw (source) offset applied per (input partition, source partition).
            CREATE TABLE aggregator_source_marks (
                topic text NOT NULL,
                partition integer NOT NULL,
                source_partition integer NOT NULL,
                source_offset bigint NOT NULL,
                PRIMARY KEY (topic, partition, source_partition)
            );
            -- 1-minute windows changed and not yet emitted on llm.rollups.v1, per input partition.
            CREATE TABLE rollup_emits (
                topic text NOT NULL,
                partition integer NOT NULL,
                tenant_id text NOT NULL,
                provider text NOT NULL,
                model text NOT NULL,
                window_start timestamptz NOT NULL,
                PRIMARY KEY (topic, partition, tenant_id, provider, model, window_start)
            );
            """),
        PostgresMigration(version: 4, name: "anomalies", sql: """
            -- Written by the query service from llm.anomalies.v1 (idempotent upserts by anomaly_id); read by the
            -- gateway. `body` is the anomaly as published.
            CREATE TABLE anomalies (
                tenant_id text NOT NULL,
                anomaly_id text NOT NULL,
                window_start timestamptz NOT NULL,
                body jsonb NOT NULL,
                updated_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (tenant_id, anomaly_id)
            );
            CREATE INDEX anomalies_tenant_window ON anomalies (tenant_id, window_start);
            """),
        PostgresMigration(version: 5, name: "tenancy", sql: """
            -- Per-tenant limits; NULL means the deployment's default (TW_RATE_LIMIT_*, TW_MONTHLY_EVENT_QUOTA).
            ALTER TABLE tenants
                ADD COLUMN events_per_second integer CHECK (events_per_second >= 0),
                ADD COLUMN requests_per_second integer CHECK (requests_per_second >= 0),
                ADD COLUMN monthly_event_quota bigint CHECK (monthly_event_quota >= 0),
                ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();
            -- expires_at: a rotated key keeps working until then (a grace period for clients to switch).
            ALTER TABLE api_keys
                ADD COLUMN name text NOT NULL DEFAULT '',
                ADD COLUMN expires_at timestamptz;
            -- The second wall (DESIGN.md, "Stores"): the gateway reads tenant data as this role, inside a
            -- transaction that sets tokenwatch.tenant_id, so even a query that forgot its WHERE clause sees only the
            -- caller's rows, and one with the setting missing fails. Roles are cluster-wide: create it once.
            -- Two databases of one cluster migrated at once race on the role (unique_violation in pg_authid, not
            -- duplicate_object) and on the grant: either way the other one made it.
            DO $$ BEGIN
                CREATE ROLE tokenwatch_tenant NOLOGIN NOINHERIT;
            EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
            END $$;
            DO $$ BEGIN
                IF NOT pg_has_role(current_user, 'tokenwatch_tenant', 'MEMBER') THEN
                    EXECUTE format('GRANT tokenwatch_tenant TO %I', current_user);
                END IF;
            EXCEPTION WHEN unique_violation THEN NULL;
            END $$;
            \(tenantTables.map(rowLevelSecurity).joined(separator: "\n"))
            """),
        PostgresMigration(version: 6, name: "detector_settings", sql: """
            -- Per-tenant detector settings, edited through the gateway (as tokenwatch_tenant, under row-level
            -- security) and read by the detector. muted: [{"provider"?, "model"?, "metric"?}].
            CREATE TABLE detector_settings (
                tenant_id text PRIMARY KEY REFERENCES tenants (tenant_id),
                sensitivity double precision NOT NULL DEFAULT 1 CHECK (sensitivity >= 0.25 AND sensitivity <= 4),
                muted jsonb NOT NULL DEFAULT '[]',
                updated_at timestamptz NOT NULL DEFAULT now()
            );
            GRANT SELECT, INSERT, UPDATE ON detector_settings TO tokenwatch_tenant;
            ALTER TABLE detector_settings ENABLE ROW LEVEL SECURITY;
            CREATE POLICY tenant_isolation ON detector_settings TO tokenwatch_tenant
                USING (tenant_id = current_setting('tokenwatch.tenant_id'))
                WITH CHECK (tenant_id = current_setting('tokenwatch.tenant_id'));
            CREATE INDEX anomalies_tenant_updated ON anomalies (tenant_id, updated_at);
            """),
        PostgresMigration(version: 7, name: "tenant_cost_policy", sql: """
            -- Which cost an event keeps when its client sent one (CostPolicy): client_unless_zero, client, price_table.
            ALTER TABLE tenants ADD COLUMN cost_policy text NOT NULL DEFAULT 'client_unless_zero'
                CHECK (cost_policy IN ('client_unless_zero', 'client', 'price_table'));
            """),
        PostgresMigration(version: 8, name: "dead_letters", sql: """
            -- What a tenant's dead letters were, written by the query service from llm.events.dlq.v1: counts per
            -- minute and reason, and the latest samples (bounded per tenant). dead_letter_marks holds, per DLQ
            -- partition, the next offset to apply, moved in the same transaction, so a replayed batch counts nothing twice.
            CREATE TABLE dead_letter_counts (
                tenant_id text NOT NULL,
                window_start timestamptz NOT NULL,
                reason text NOT NULL,
                count bigint NOT NULL,
                PRIMARY KEY (tenant_id, window_start, reason)
            );
            CREATE TABLE dead_letter_samples (
                tenant_id text NOT NULL,
                dlq_partition integer NOT NULL,
                dlq_offset bigint NOT NULL,
                at timestamptz NOT NULL,
                reason text NOT NULL,
                detail text NOT NULL,
                event_id text,
                PRIMARY KEY (tenant_id, dlq_partition, dlq_offset)
            );
            CREATE INDEX dead_letter_samples_recent ON dead_letter_samples (tenant_id, at DESC);
            CREATE TABLE dead_letter_marks (
                topic text NOT NULL,
                partition integer NOT NULL,
                next_offset bigint NOT NULL,
                PRIMARY KEY (topic, partition)
            );
            GRANT SELECT ON dead_letter_counts, dead_letter_samples TO tokenwatch_tenant;
            ALTER TABLE dead_letter_counts ENABLE ROW LEVEL SECURITY;
            CREATE POLICY tenant_isolation ON dead_letter_counts TO tokenwatch_tenant
                USING (tenant_id = current_setting('tokenwatch.tenant_id'));
            ALTER TABLE dead_letter_samples ENABLE ROW LEVEL SECURITY;
            CREATE POLICY tenant_isolation ON dead_letter_samples TO tokenwatch_tenant
                USING (tenant_id = current_setting('tokenwatch.tenant_id'));
            """),
        PostgresMigration(version: 9, name: "cost_nanos", sql: """
            -- Costs are carried in nano-dollars (micro-dollars rounded cheap calls away). Existing sums are scaled;
            -- a sum that had saturated stays the largest value that fits.
            \(Granularity.allCases.map { """
                ALTER TABLE \($0.table) RENAME COLUMN cost_micros TO cost_nanos;
                UPDATE \($0.table) SET cost_nanos = LEAST(cost_nanos, 9223372036854775) * 1000 WHERE cost_nanos <> 0;
                """ }.joined(separator: "\n"))
            """),
        PostgresMigration(version: 10, name: "otlp_ignored_scopes", sql: """
            -- Instrumentation scopes whose GenAI spans a tenant does not count (two instrumentations of one call).
            ALTER TABLE tenants ADD COLUMN otlp_ignored_scopes text[] NOT NULL DEFAULT '{}';
            """),
        PostgresMigration(version: 11, name: "notifications", sql: """
            -- A tenant's notification channels (webhooks signed per Standard Webhooks). The secret is shown once,
            -- at creation, and never returned again.
            CREATE TABLE notification_channels (
                channel_id text PRIMARY KEY,
                tenant_id text NOT NULL,
                name text NOT NULL,
                kind text NOT NULL CHECK (kind IN ('webhook')),
                url text NOT NULL,
                secret text NOT NULL,
                min_severity text NOT NULL CHECK (min_severity IN ('info', 'warning', 'critical')),
                metrics text[] NOT NULL DEFAULT '{}',
                created_at timestamptz NOT NULL DEFAULT now()
            );
            CREATE INDEX notification_channels_tenant ON notification_channels (tenant_id);
            -- The outbox: one row per channel and anomaly revision, written by the query service in the transaction
            -- that stores the anomaly, delivered at least once from here (claimed with FOR UPDATE SKIP LOCKED and a
            -- lease, so replicas never deliver one revision in parallel); the row is also the delivery log.
            CREATE TABLE notification_outbox (
                channel_id text NOT NULL REFERENCES notification_channels ON DELETE CASCADE,
                tenant_id text NOT NULL,
                message_id text NOT NULL,
                body jsonb NOT NULL,
                created_at timestamptz NOT NULL DEFAULT now(),
                attempts integer NOT NULL DEFAULT 0,
                next_attempt_at timestamptz NOT NULL DEFAULT now(),
                delivered_at timestamptz,
                failed_at timestamptz,
                last_status integer,
                last_error text,
                last_latency_ms double precision,
                PRIMARY KEY (channel_id, message_id)
            );
            CREATE INDEX notification_outbox_due ON notification_outbox (next_attempt_at) WHERE delivered_at IS NULL AND failed_at IS NULL;
            CREATE INDEX notification_outbox_log ON notification_outbox (channel_id, created_at DESC);
            GRANT SELECT, INSERT, DELETE ON notification_channels TO tokenwatch_tenant;
            GRANT SELECT, INSERT ON notification_outbox TO tokenwatch_tenant;
            ALTER TABLE notification_channels ENABLE ROW LEVEL SECURITY;
            CREATE POLICY tenant_isolation ON notification_channels TO tokenwatch_tenant
                USING (tenant_id = current_setting('tokenwatch.tenant_id')) WITH CHECK (tenant_id = current_setting('tokenwatch.tenant_id'));
            ALTER TABLE notification_outbox ENABLE ROW LEVEL SECURITY;
            CREATE POLICY tenant_isolation ON notification_outbox TO tokenwatch_tenant
                USING (tenant_id = current_setting('tokenwatch.tenant_id')) WITH CHECK (tenant_id = current_setting('tokenwatch.tenant_id'));
            """),
        PostgresMigration(version: 12, name: "notification_routing", sql: """
            -- Slack and Alertmanager channels; filters by provider and model; a cap per channel per cap window (0:
            -- none); a rotated secret kept, and signed with, until the overlap ends.
            ALTER TABLE notification_channels DROP CONSTRAINT notification_channels_kind_check;
            ALTER TABLE notification_channels ADD CONSTRAINT notification_channels_kind_check CHECK (kind IN ('webhook', 'slack', 'alertmanager'));
            ALTER TABLE notification_channels ADD COLUMN providers text[] NOT NULL DEFAULT '{}';
            ALTER TABLE notification_channels ADD COLUMN models text[] NOT NULL DEFAULT '{}';
            ALTER TABLE notification_channels ADD COLUMN max_per_hour integer NOT NULL DEFAULT 20 CHECK (max_per_hour BETWEEN 0 AND 10000);
            ALTER TABLE notification_channels ADD COLUMN previous_secret text;
            ALTER TABLE notification_channels ADD COLUMN previous_secret_until timestamptz;
            -- What each row tells the channel about which anomaly: the per-channel lifecycle (opened, escalated,
            -- resolved; extent-only revisions are not sent) is read back from here. A row beyond the channel's cap
            -- is kept, suppressed, and counted in the cap window's summary row.
            ALTER TABLE notification_outbox ADD COLUMN anomaly_id text;
            ALTER TABLE notification_outbox ADD COLUMN revision bigint;
            ALTER TABLE notification_outbox ADD COLUMN severity text;
            ALTER TABLE notification_outbox ADD COLUMN previous_severity text;
            ALTER TABLE notification_outbox ADD COLUMN event text;
            ALTER TABLE notification_outbox ADD COLUMN suppressed_at timestamptz;
            CREATE INDEX notification_outbox_anomaly ON notification_outbox (channel_id, anomaly_id, revision DESC) WHERE anomaly_id IS NOT NULL;
            DROP INDEX notification_outbox_due;
            CREATE INDEX notification_outbox_due ON notification_outbox (next_attempt_at) WHERE delivered_at IS NULL AND failed_at IS NULL AND suppressed_at IS NULL;
            GRANT UPDATE (previous_secret, previous_secret_until, secret) ON notification_channels TO tokenwatch_tenant;
            """),
        PostgresMigration(version: 13, name: "threshold_rules", sql: """
            -- Threshold rules beside the learned detector: a metric of a series (or the tenant's total) above or below
            -- a value for N closed minutes raises an alert with the anomalies' lifecycle and channels.
            CREATE TABLE alert_rules (
                rule_id text PRIMARY KEY,
                tenant_id text NOT NULL,
                name text NOT NULL,
                metric text NOT NULL CHECK (metric IN ('request_rate', 'error_rate', 'latency_p95', 'ttft_p95', 'cost_per_request', 'output_tokens_per_request', 'cost_per_hour')),
                provider text,
                model text,
                comparison text NOT NULL CHECK (comparison IN ('above', 'below')),
                threshold double precision NOT NULL,
                for_minutes integer NOT NULL CHECK (for_minutes BETWEEN 1 AND 1440),
                severity text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
                created_at timestamptz NOT NULL DEFAULT now(),
                -- Deleted through the API: the evaluator resolves its open alert, then removes the row.
                deleted_at timestamptz
            );
            CREATE INDEX alert_rules_tenant ON alert_rules (tenant_id);
            -- Each rule's open alert (at most one), written by the query service's evaluator.
            CREATE TABLE rule_alerts (
                rule_id text PRIMARY KEY REFERENCES alert_rules ON DELETE CASCADE,
                tenant_id text NOT NULL,
                alert_id text NOT NULL,
                revision bigint NOT NULL,
                started_at timestamptz NOT NULL,
                last_value double precision
            );
            GRANT SELECT, INSERT ON alert_rules TO tokenwatch_tenant;
            GRANT UPDATE (deleted_at) ON alert_rules TO tokenwatch_tenant;
            GRANT SELECT ON rule_alerts TO tokenwatch_tenant;
            ALTER TABLE alert_rules ENABLE ROW LEVEL SECURITY;
            CREATE POLICY tenant_isolation ON alert_rules TO tokenwatch_tenant
                USING (tenant_id = current_setting('tokenwatch.tenant_id')) WITH CHECK (tenant_id = current_setting('tokenwatch.tenant_id'));
            ALTER TABLE rule_alerts ENABLE ROW LEVEL SECURITY;
            CREATE POLICY tenant_isolation ON rule_alerts TO tokenwatch_tenant USING (tenant_id = current_setting('tokenwatch.tenant_id'));
            """),
        PostgresMigration(version: 14, name: "budgets", sql: """
            -- Spend budgets per tenant and day or month (UTC): notified at chosen percentages and when the forecast
            -- for the period's end exceeds the amount.
            CREATE TABLE budgets (
                budget_id text PRIMARY KEY,
                tenant_id text NOT NULL,
                name text NOT NULL,
                period text NOT NULL CHECK (period IN ('day', 'month')),
                amount_nanos bigint NOT NULL CHECK (amount_nanos > 0),
                notify_percentages integer[] NOT NULL,
                forecast boolean NOT NULL DEFAULT true,
                created_at timestamptz NOT NULL DEFAULT now(),
                deleted_at timestamptz
            );
            CREATE INDEX budgets_tenant ON budgets (tenant_id);
            -- The alerts a budget raised in a period (a percentage reached, or level -1: the forecast over the amount),
            -- each once; resolved when the period ends.
            CREATE TABLE budget_alerts (
                budget_id text NOT NULL REFERENCES budgets ON DELETE CASCADE,
                tenant_id text NOT NULL,
                period_start timestamptz NOT NULL,
                level integer NOT NULL,
                alert_id text NOT NULL,
                resolved boolean NOT NULL DEFAULT false,
                PRIMARY KEY (budget_id, period_start, level)
            );
            GRANT SELECT, INSERT ON budgets TO tokenwatch_tenant;
            GRANT UPDATE (deleted_at) ON budgets TO tokenwatch_tenant;
            GRANT SELECT ON budget_alerts TO tokenwatch_tenant;
            ALTER TABLE budgets ENABLE ROW LEVEL SECURITY;
            CREATE POLICY tenant_isolation ON budgets TO tokenwatch_tenant
                USING (tenant_id = current_setting('tokenwatch.tenant_id')) WITH CHECK (tenant_id = current_setting('tokenwatch.tenant_id'));
            ALTER TABLE budget_alerts ENABLE ROW LEVEL SECURITY;
            CREATE POLICY tenant_isolation ON budget_alerts TO tokenwatch_tenant USING (tenant_id = current_setting('tokenwatch.tenant_id'));
            """),
        PostgresMigration(version: 15, name: "user_totals", sql: """
            -- Exact per-user totals per UTC day (UserTotalsStore), written by the aggregator in the transaction that
            -- writes the rollups; user_id '' holds the events without a user, so a day's rows add up to the tenant's
            -- total.
            CREATE TABLE user_totals_1d (
                tenant_id text NOT NULL,
                day date NOT NULL,
                user_id text NOT NULL,
                requests bigint NOT NULL,
                errors bigint NOT NULL,
                input_tokens bigint NOT NULL,
                output_tokens bigint NOT NULL,
                cached_input_tokens bigint NOT NULL,
                reasoning_tokens bigint NOT NULL,
                cost_nanos bigint NOT NULL,
                PRIMARY KEY (tenant_id, day, user_id)
            );
            \(rowLevelSecurity("user_totals_1d"))
            """),
        PostgresMigration(version: 16, name: "series_dimensions", sql: """
            -- Series gain app, environment and promoted tags (SeriesKey): '' means "all". Existing rows are the {}
            -- and {provider, model} levels, which keep their meaning; the primary keys take the new columns.
            -- Distinct users and sessions (DistinctSketch, HyperLogLog registers {index: rank}) merge by the larger rank.
            CREATE FUNCTION tw_jsonb_max(a jsonb, b jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
                SELECT COALESCE(jsonb_object_agg(k, n), '{}'::jsonb) FROM (
                    SELECT k, MAX(v::integer) AS n FROM (
                        SELECT key AS k, value AS v FROM jsonb_each_text(COALESCE(a, '{}'::jsonb))
                        UNION ALL
                        SELECT key, value FROM jsonb_each_text(COALESCE(b, '{}'::jsonb))
                    ) pairs GROUP BY k
                ) maxima
            $$;
            \(Granularity.allCases.map { g in """
                ALTER TABLE \(g.table) ADD COLUMN app text NOT NULL DEFAULT '', ADD COLUMN environment text NOT NULL DEFAULT '',
                    ADD COLUMN tag_key text NOT NULL DEFAULT '', ADD COLUMN tag_value text NOT NULL DEFAULT '',
                    ADD COLUMN users_hll jsonb NOT NULL DEFAULT '{}', ADD COLUMN sessions_hll jsonb NOT NULL DEFAULT '{}';
                ALTER TABLE \(g.table) DROP CONSTRAINT \(g.table)_pkey;
                ALTER TABLE \(g.table) ADD PRIMARY KEY (tenant_id, window_start, app, environment, provider, model, tag_key, tag_value);
                """ }.joined(separator: "\n"))
            ALTER TABLE rollup_emits ADD COLUMN app text NOT NULL DEFAULT '', ADD COLUMN environment text NOT NULL DEFAULT '',
                ADD COLUMN tag_key text NOT NULL DEFAULT '', ADD COLUMN tag_value text NOT NULL DEFAULT '';
            ALTER TABLE rollup_emits DROP CONSTRAINT rollup_emits_pkey;
            ALTER TABLE rollup_emits ADD PRIMARY KEY (topic, partition, tenant_id, app, environment, provider, model, tag_key, tag_value, window_start);
            -- Room in each page for the next version of a row: window and per-user updates then stay on their page
            -- (HOT) and skip the index writes.
            \((Granularity.allCases.map(\.table) + ["user_totals_1d"]).map { "ALTER TABLE \($0) SET (fillfactor = 70);" }.joined(separator: "\n"))
            -- The tag keys a tenant aggregates (at most 5; others are not aggregated).
            ALTER TABLE tenants ADD COLUMN promoted_tags text[] NOT NULL DEFAULT '{}';
            """),
        PostgresMigration(version: 17, name: "dimension_values", sql: """
            -- The app and environment values each tenant has been admitted under its cardinality cap (the ingestor's
            -- DimensionRegistry); later values are counted as 'other'.
            CREATE TABLE dimension_values (
                tenant_id text NOT NULL,
                dimension text NOT NULL,
                value text NOT NULL,
                first_seen timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (tenant_id, dimension, value)
            );
            """),
        PostgresMigration(version: 18, name: "evidence", sql: """
            -- Per model and minute, the best few calls of each kind (EvidenceSamples: slowest, latest failed, most
            -- expensive), written by the aggregator with the rollups; an anomaly's evidence is read from here.
            CREATE TABLE evidence_samples (
                tenant_id text NOT NULL,
                window_start timestamptz NOT NULL,
                provider text NOT NULL,
                model text NOT NULL,
                kind text NOT NULL,
                event_id text NOT NULL,
                value double precision NOT NULL,
                at timestamptz NOT NULL,
                app text,
                environment text,
                user_id text,
                trace_id text,
                span_id text,
                latency_ms double precision NOT NULL,
                cost_nanos bigint,
                error_type text,
                PRIMARY KEY (tenant_id, window_start, provider, model, kind, event_id)
            );
            \(rowLevelSecurity("evidence_samples"))
            -- Where a tenant's traces open: an http(s) URL with {trace_id} (and optionally {span_id}).
            ALTER TABLE tenants ADD COLUMN trace_url_template text;
            """),
        PostgresMigration(version: 19, name: "faster_jsonb_merges", sql: """
            -- The same merges, walking only the delta (a batch's sketch, usually the smaller side) and looking each of
            -- its keys up in the stored value, which is copied out of its compressed form once (`|| '{}'`), not once a
            -- key. An empty delta returns at once. Results are equal to migration 3's and 16's; on the bench's realistic
            -- workload these merges were most of Postgres's time (`make bench`). Sums stay numeric, as before: a
            -- counter past 2^63 is written and then refused by readers, not an error that would stop the aggregator.
            CREATE OR REPLACE FUNCTION tw_jsonb_add(a jsonb, b jsonb) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$
            DECLARE acc jsonb := COALESCE(a, '{}'::jsonb) || '{}'::jsonb;
            BEGIN
                IF b IS NULL OR b = '{}'::jsonb THEN RETURN acc; END IF;
                RETURN acc || (SELECT jsonb_object_agg(key, value::numeric + COALESCE((acc ->> key)::numeric, 0)) FROM jsonb_each_text(b));
            END $$;
            CREATE OR REPLACE FUNCTION tw_jsonb_max(a jsonb, b jsonb) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$
            DECLARE acc jsonb := COALESCE(a, '{}'::jsonb) || '{}'::jsonb;
            BEGIN
                IF b IS NULL OR b = '{}'::jsonb THEN RETURN acc; END IF;
                RETURN acc || COALESCE((SELECT jsonb_object_agg(key, value::integer) FROM jsonb_each_text(b) WHERE COALESCE((acc ->> key)::integer, -1) < value::integer), '{}'::jsonb);
            END $$;
            -- Sketches and registers past 2 kB are compressed on every update; lz4 does it several times faster than
            -- the default pglz (which was the top of Postgres's profile). A server built without lz4 keeps pglz.
            DO $$ BEGIN
                \(Granularity.allCases.map { g in
                    "ALTER TABLE \(g.table) " + ["errors_by_type", "latency_sketch", "ttft_sketch", "users_hll", "sessions_hll"].map { "ALTER COLUMN \($0) SET COMPRESSION lz4" }.joined(separator: ", ") + ";"
                }.joined(separator: "\n    "))
            EXCEPTION WHEN feature_not_supported THEN NULL;
            END $$;
            """),
        PostgresMigration(version: 20, name: "runtime_role", sql: """
            -- Services may run with a role that cannot change the schema (TW_MIGRATIONS=wait; the migration Job owns
            -- the schema). Such a role is made NOINHERIT and granted tokenwatch_service (every row of the tables
            -- under row-level security, through service_access) and tokenwatch_tenant (which the gateway switches to
            -- for tenant reads); README, "Deploying on Kubernetes", lists the grants.
            DO $$ BEGIN
                CREATE ROLE tokenwatch_service NOLOGIN;
            EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
            END $$;
            DO $$
            DECLARE t regclass;
            BEGIN
                FOR t IN SELECT c.oid::regclass FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                         WHERE c.relrowsecurity AND n.nspname = current_schema()
                           AND NOT EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = 'service_access')
                LOOP
                    EXECUTE format('CREATE POLICY service_access ON %s TO PUBLIC USING (pg_has_role(current_user, %L, %L)) WITH CHECK (pg_has_role(current_user, %L, %L))',
                                   t, 'tokenwatch_service', 'MEMBER', 'tokenwatch_service', 'MEMBER');
                END LOOP;
            END $$;
            """),
        PostgresMigration(version: 21, name: "counter_row_defaults", sql: """
            -- Rows of the multiplying levels keep no distributions: their upserts leave the sketch columns to these
            -- defaults instead of sending five empty objects a row.
            \(Granularity.allCases.map { "ALTER TABLE \($0.table) " + ["errors_by_type", "latency_sketch", "ttft_sketch"].map { "ALTER COLUMN \($0) SET DEFAULT '{}'" }.joined(separator: ", ") + ";" }.joined(separator: "\n"))
            -- The service role's policy asks pg_has_role once a statement (an InitPlan), not once a row.
            DO $$
            DECLARE t regclass;
            BEGIN
                FOR t IN SELECT p.polrelid::regclass FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                         WHERE p.polname = 'service_access' AND n.nspname = current_schema()
                LOOP
                    EXECUTE format('ALTER POLICY service_access ON %s USING ((SELECT pg_has_role(current_user, %L, %L))) WITH CHECK ((SELECT pg_has_role(current_user, %L, %L)))',
                                   t, 'tokenwatch_service', 'MEMBER', 'tokenwatch_service', 'MEMBER');
                END LOOP;
            END $$;
            """),
        PostgresMigration(version: 22, name: "dense_distinct_registers", sql: """
            -- Distinct-id registers with many set are stored dense (DistinctSketch.storedJSON: a JSON string, the
            -- base64 of the 4,096 rank bytes, a seventh of the object's size). The SQL merge reads either form and
            -- returns the sparse object, which readers take as well.
            CREATE OR REPLACE FUNCTION tw_hll_sparse(x jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
                SELECT CASE WHEN jsonb_typeof(x) = 'string' THEN COALESCE((
                    SELECT jsonb_object_agg(i::text, get_byte(r, i))
                    FROM decode(x #>> '{}', 'base64') AS r, generate_series(0, length(r) - 1) AS i
                    WHERE get_byte(r, i) > 0), '{}'::jsonb)
                ELSE x END
            $$;
            CREATE OR REPLACE FUNCTION tw_jsonb_max(a jsonb, b jsonb) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$
            DECLARE acc jsonb := tw_hll_sparse(COALESCE(a, '{}'::jsonb)) || '{}'::jsonb;
            BEGIN
                b := tw_hll_sparse(b);
                IF b IS NULL OR b = '{}'::jsonb THEN RETURN acc; END IF;
                RETURN acc || COALESCE((SELECT jsonb_object_agg(key, value::integer) FROM jsonb_each_text(b) WHERE COALESCE((acc ->> key)::integer, -1) < value::integer), '{}'::jsonb);
            END $$;
            """),
        PostgresMigration(version: 23, name: "user_totals_tenant_view", sql: """
            -- New per-user rows are inserted with COPY (UserTotalsStore.copyText), which Postgres refuses on a table
            -- under row-level security for every role a policy applies to (the services' runtime roles included).
            -- Tenants read the rows through a security-barrier view with the condition the policy had, run with the
            -- owner's rights; tokenwatch_tenant may no longer read the table, so a tenant read naming it fails instead
            -- of seeing other tenants. The view lists the table's columns as of now: a later column needs it replaced.
            DROP POLICY IF EXISTS tenant_isolation ON user_totals_1d;
            DROP POLICY IF EXISTS service_access ON user_totals_1d;
            ALTER TABLE user_totals_1d DISABLE ROW LEVEL SECURITY;
            REVOKE SELECT ON user_totals_1d FROM tokenwatch_tenant;
            \(userTotalsTenantView)
            """),
        PostgresMigration(version: 24, name: "bytewise_key_collation", sql: """
            -- The text columns of the rollup, emit and per-user keys compare bytewise (COLLATE "C"): they hold ids and
            -- names, not prose, and every upsert compares them in the primary key's index, where a linguistic
            -- collation costs a locale-aware comparison each time (a tenth of an upsert's time on a C.UTF-8 cluster,
            -- more under en_US.UTF-8). Only the indexes are rebuilt, not the tables. Policies and views naming a column
            -- are dropped and made again around the change, as Postgres requires.
            \(Granularity.allCases.map { g in """
                DROP POLICY tenant_isolation ON \(g.table);
                ALTER TABLE \(g.table) \(bytewise(["tenant_id"] + SeriesDimension.allCases.map(\.rawValue)));
                \(tenantPolicy(g.table))
                """ }.joined(separator: "\n"))
            ALTER TABLE rollup_emits \(bytewise(["tenant_id"] + SeriesDimension.allCases.map(\.rawValue)));
            DROP VIEW user_totals_1d_tenant;
            ALTER TABLE user_totals_1d \(bytewise(["tenant_id", "user_id"]));
            \(userTotalsTenantView)
            """),
        PostgresMigration(version: 25, name: "packed_quantile_sketches", sql: """
            -- Latency and TTFT sketches are now written packed (QuantileSketch.storedJSON: a JSON string, the base64 of
            -- varint-packed buckets), which these SQL merges would not read: jsonb's || would turn a string and an
            -- object into an array, a wrong sketch without an error. Nothing calls them since the aggregator merges
            -- stored rows itself (RollupStore.write), so they are dropped rather than left to mislead ad-hoc SQL.
            DROP FUNCTION IF EXISTS tw_jsonb_add(jsonb, jsonb);
            DROP FUNCTION IF EXISTS tw_jsonb_max(jsonb, jsonb);
            DROP FUNCTION IF EXISTS tw_hll_sparse(jsonb);
            """),
    ]
}

extension TokenwatchSchema {
    /// What each service's own role may do, table by table: its runtime credential has these and nothing else (no
    /// DDL, no table it does not use). The roles are `tokenwatch_<service>`, LOGIN NOINHERIT without a password (give
    /// one: `ALTER ROLE ... PASSWORD`, or CloudNativePG's managed roles); each is a member of `tokenwatch_service`
    /// (every row of the tables under row-level security) and the gateway also of `tokenwatch_tenant` (which it
    /// switches to for a caller's reads). Applied after the migrations by the first migrating run of a release and any
    /// run that applied a migration (`privileges`), so a release that uses a table differently changes its grants with
    /// its code; README, "Database roles".
    public static let servicePrivileges: [String: [String: String]] = {
        let rollups = Dictionary(uniqueKeysWithValues: Granularity.allCases.map { ($0.table, "SELECT") })
        let read = "SELECT", write = "SELECT, INSERT, UPDATE", all = "SELECT, INSERT, UPDATE, DELETE"
        let append = "SELECT, INSERT", prune = "SELECT, INSERT, DELETE", clear = "SELECT, DELETE"
        return [
            "gateway": rollups.merging([
                "tenants": write, "api_keys": write, "detector_settings": write, "notification_channels": all, "notification_outbox": append,
                "alert_rules": write, "budgets": write, "rule_alerts": read, "anomalies": read, "evidence_samples": read,
                "dead_letter_counts": read, "dead_letter_samples": read,
            ]) { $1 },
            "ingestor": ["tenants": read, "prices": read, "dimension_values": append],
            "aggregator": Dictionary(uniqueKeysWithValues: Granularity.allCases.map { ($0.table, write) }).merging([
                "aggregator_partitions": write, "aggregator_source_marks": write, "rollup_emits": prune, "user_totals_1d": write,
                "evidence_samples": prune,
            ]) { $1 },
            "detector": rollups.merging(["detector_settings": read]) { $1 },
            "query": rollups.merging([
                "tenants": read, "anomalies": write, "alert_rules": clear, "budgets": clear, "rule_alerts": all, "budget_alerts": write,
                "notification_channels": read, "notification_outbox": write, "dead_letter_counts": write, "dead_letter_marks": write,
                "dead_letter_samples": prune,
            ]) { $1 },
        ]
    }()

    /// The roles and grants of `servicePrivileges` as SQL, applied by the migrator after the migrations.
    public static let privileges: String = {
        var sql = ""
        for (service, tables) in servicePrivileges.sorted(by: { $0.key < $1.key }) {
            let role = "tokenwatch_\(service)"
            sql += """
                DO $$ BEGIN
                    CREATE ROLE \(role) LOGIN NOINHERIT;
                EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
                END $$;
                REVOKE ALL ON ALL TABLES IN SCHEMA public FROM \(role);
                GRANT USAGE ON SCHEMA public TO \(role);
                GRANT SELECT ON tw_schema_migrations, tw_schema_migrations_privileges TO \(role);
                GRANT tokenwatch_service TO \(role);

                """
            if service == "gateway" { sql += "GRANT tokenwatch_tenant TO \(role);\n" }
            for (table, grants) in tables.sorted(by: { $0.key < $1.key }) { sql += "GRANT \(grants) ON \(table) TO \(role);\n" }
        }
        return sql
    }()
}

/// The tables holding tenant data that the gateway reads on a caller's behalf.
private let tenantTables = Granularity.allCases.map(\.table) + ["anomalies"]

/// Row-level security on one tenant table: the `tokenwatch_tenant` role sees the rows of the tenant named by the
/// transaction's `tokenwatch.tenant_id` setting, and nothing else. (The services' own login role owns the tables and
/// is not subject to the policy: the aggregator and query service write every tenant's rows.)
private func rowLevelSecurity(_ table: String) -> String {
    """
    GRANT SELECT ON \(table) TO tokenwatch_tenant;
    ALTER TABLE \(table) ENABLE ROW LEVEL SECURITY;
    \(tenantPolicy(table))
    \(serviceAccess(table))
    """
}

/// The policy showing `tokenwatch_tenant` the rows of the tenant named by `tokenwatch.tenant_id`.
private func tenantPolicy(_ table: String) -> String {
    """
    CREATE POLICY tenant_isolation ON \(table) TO tokenwatch_tenant
        USING (tenant_id = current_setting('tokenwatch.tenant_id'));
    """
}

/// The per-user totals as tenants read them (migration 23): the tenant policy's condition in a security-barrier view.
private let userTotalsTenantView = """
    CREATE VIEW user_totals_1d_tenant WITH (security_barrier) AS
        SELECT * FROM user_totals_1d WHERE tenant_id = current_setting('tokenwatch.tenant_id');
    GRANT SELECT ON user_totals_1d_tenant TO tokenwatch_tenant;
    """

/// `ALTER COLUMN ... TYPE text COLLATE "C"` for each of `columns` (migration 24).
private func bytewise(_ columns: [String]) -> String {
    columns.map { "ALTER COLUMN \($0) TYPE text COLLATE \"C\"" }.joined(separator: ", ")
}

/// Every row to the services' own runtime role (a member of `tokenwatch_service`, NOINHERIT, when the schema's owner
/// is a separate migration role; migration 20): the table owner bypasses row-level security, a runtime role does
/// not. The role is named in the expression, resolved when a query runs, so earlier migrations can state it too; the
/// subselect makes it one InitPlan a statement rather than a call a row (migration 21 alters older policies so).
private func serviceAccess(_ table: String) -> String {
    """
    CREATE POLICY service_access ON \(table) TO PUBLIC
        USING ((SELECT pg_has_role(current_user, 'tokenwatch_service', 'MEMBER'))) WITH CHECK ((SELECT pg_has_role(current_user, 'tokenwatch_service', 'MEMBER')));
    """
}

/// One rollups table (1m, 1h and 1d share the shape).
private func rollupTable(_ granularity: Granularity) -> String {
    """
    CREATE TABLE \(granularity.table) (
        tenant_id text NOT NULL,
        provider text NOT NULL,
        model text NOT NULL,
        window_start timestamptz NOT NULL,
        requests bigint NOT NULL,
        errors bigint NOT NULL,
        errors_by_type jsonb NOT NULL,
        input_tokens bigint NOT NULL,
        output_tokens bigint NOT NULL,
        cached_input_tokens bigint NOT NULL,
        reasoning_tokens bigint NOT NULL,
        cost_micros bigint NOT NULL,
        latency_sketch jsonb NOT NULL,
        ttft_sketch jsonb NOT NULL,
        version bigint NOT NULL DEFAULT 1,
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (tenant_id, window_start, provider, model)
    );
    """
}
