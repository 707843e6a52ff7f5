import Events
import Foundation
import Logging
import Postgres
import Testing
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// What k8s/components/cloudnative-pg relies on (issue 17): the services work through PgBouncer in transaction
/// mode, where consecutive transactions of one client may run on different server connections and nothing of a
/// session carries over. A real PgBouncer (Debian's) in front of the stack's Postgres, with two server connections
/// per role (one role per service) for eight client connections per service.
@Suite("Behind PgBouncer in transaction mode", .serialized, .timeLimit(.minutes(4)))
struct PoolerTests {
    @Test("all five services on their own roles through PgBouncer in transaction mode (2 server connections a role for 8 clients a service): exact totals per app and per user, tenant reads under row-level security, settings written; the migrations straight to Postgres")
    func transactionPooling() async throws {
        let db = try await ServiceRolesDatabase.create("pool")
        let job = try ServiceProcess("query", environment: ["TW_POSTGRES_URL": db.ownerURL, "TW_MIGRATIONS": "only"])
        #expect(job.waitForExit(timeout: .seconds(60)) == 0, "the migration run, on a session of its own: \(job.log.suffix(2000))")
        let bouncer = try PgBouncer(database: db.name, roles: ServiceRolesDatabase.services.map { "tokenwatch_\($0)" }, poolSize: 2)

        let adminToken = "pool-admin-token-0123456789"
        let env = try TestEnvironment.pipelineEnvironment(run: db.name, extra: ["TW_MIGRATIONS": "wait", "TW_ADMIN_TOKEN": adminToken, "TW_POSTGRES_POOL_SIZE": "8"])
        let services = try ServiceRolesDatabase.services.map {
            try ServiceProcess($0, environment: env.merging(["TW_POSTGRES_URL": try db.url(for: $0, hostPort: "127.0.0.1:\(bouncer.port)")]) { $1 })
        }
        for service in services { try await service.waitUntilReady(timeout: .seconds(60)) }
        let http = HTTPClient(port: services[0].port)
        let tenant = "\(db.name)-t"
        let created = try await http.call("POST", "/v1/admin/tenants", token: adminToken, body: #"{"tenant_id":"\#(tenant)"}"#)
        let key = try #require(created.json["api_key"] as? String, "\(created.status) \(created.body)")
        // Tenant-scoped settings: the gateway switches to the tenant role within each transaction.
        let adminKey = try #require(try await http.call("POST", "/v1/admin/tenants/\(tenant)/keys", token: adminToken, body: #"{"scopes":["admin","query"]}"#).json["api_key"] as? String)
        let put = try await http.call("PUT", "/v1/detector/settings", token: adminKey, body: #"{"sensitivity":2}"#)
        #expect(put.status == 200, "\(put.body)")
        #expect(try await http.call("GET", "/v1/detector/settings", token: key).json["sensitivity"] as? Double == 2)

        // 600 events over 3 apps (the ingestor's dimension registry takes a transaction lock per new app) and
        // 7 users, in batches posted concurrently.
        let now = EventTimestamp.now().microsecondsSinceEpoch
        var perApp: [String: Int] = [:], perUser: [String: Int] = [:]
        var batches: [String] = []
        for b in 0..<6 {
            var lines: [String] = []
            for i in 0..<100 {
                let n = b * 100 + i
                let app = "app-\(n % 3)", user = "user-\(n % 7)"
                perApp[app, default: 0] += 1
                perUser[user, default: 0] += 1
                let ts = EventTimestamp(microsecondsSinceEpoch: now - Int64(60 + n % 50) * 1_000_000).rfc3339
                lines.append(#"{"event_id":"p\#(n)","timestamp":"\#(ts)","provider":"openai","model":"gpt-4o","input_tokens":10,"output_tokens":2,"latency_ms":100,"status":"ok","app":"\#(app)","user_id":"\#(user)"}"#)
            }
            batches.append("[" + lines.joined(separator: ",") + "]")
        }
        try await withThrowingTaskGroup(of: Int.self) { group in
            for body in batches { group.addTask { try await http.call("POST", "/v1/events", token: key, body: body).status } }
            for try await status in group { #expect(status == 202) }
        }
        let expectedApps = perApp
        try await eventually(.seconds(60), "every event in the per-app rollups") {
            let items = try await http.call("GET", "/v1/breakdown?by=app&from=\(EventTimestamp(microsecondsSinceEpoch: now - 3_600_000_000).rfc3339)", token: key).json["items"] as? [[String: Any]] ?? []
            let counted = Dictionary(items.compactMap { item in (item["app"] as? String).map { ($0, ((item["values"] as? [String: Any])?["requests"] as? Int) ?? -1) } }) { a, _ in a }
            return counted == expectedApps
        }
        let day = String(EventTimestamp(microsecondsSinceEpoch: now).rfc3339.prefix(10))
        let next = String(EventTimestamp(microsecondsSinceEpoch: now + 86_400_000_000).rfc3339.prefix(10))
        let users = try await http.call("GET", "/v1/users?from=\(day)&to=\(next)&limit=100", token: key).json
        let counted = Dictionary(((users["items"] as? [[String: Any]]) ?? []).compactMap { item in
            (item["user_id"] as? String).map { ($0, ((item["values"] as? [String: Any])?["requests"] as? Int) ?? -1) }
        }) { a, _ in a }
        #expect(counted == perUser, "per-user totals exact: \(users)")

        // Multiplexed: never more server connections than the pools, for up to 40 client connections.
        let servers: Int64 = try await db.admin.query("SELECT count(*)::bigint AS n FROM pg_stat_activity WHERE datname = \(db.name) AND usename LIKE 'tokenwatch\\_%'")[0].decode("n")
        #expect(servers <= 10, "\(servers) server connections: at most 2 for each service's role")
        for service in services {
            for problem in ["permission denied", "prepared statement", "unsupported startup parameter", "current transaction is aborted"] {
                #expect(!service.log.contains(problem), "\(service.name): \(problem): \(service.log.suffix(1500))")
            }
            #expect(try service.stop() == 0, "\(service.name) stops cleanly")
        }
        try await db.drop()
    }
}

/// Debian's PgBouncer on loopback in transaction mode, in front of the stack's Postgres, for one database and role;
/// stopped when dropped. (PgBouncer refuses to run as root: under root it runs as the images' uid 10001.)
final class PgBouncer: @unchecked Sendable {
    let port: Int
    let dir: String
    private let process: ChildProcess

    init(database: String, roles: [String], poolSize: Int) throws {
        let url = try TestEnvironment.postgresURL()
        let target = try #require(url.firstMatch(of: /@([^:\/]+):(\d+)\//))
        self.port = try ServiceProcess.freePort()
        self.dir = NSTemporaryDirectory() + "tw-pgbouncer-\(database)"
        try FileManager.default.createDirectory(atPath: self.dir, withIntermediateDirectories: true)
        // What components/cloudnative-pg's Pooler sets: transaction mode, and the services' startup options dropped.
        let ini = """
            [databases]
            \(database) = host=\(target.1) port=\(target.2) dbname=\(database)
            [pgbouncer]
            listen_addr = 127.0.0.1
            listen_port = \(self.port)
            unix_socket_dir =
            auth_type = trust
            auth_file = \(self.dir)/users.txt
            pool_mode = transaction
            default_pool_size = \(poolSize)
            max_client_conn = 200
            ignore_startup_parameters = extra_float_digits,options
            pidfile = \(self.dir)/pgbouncer.pid

            """
        try ini.write(toFile: self.dir + "/pgbouncer.ini", atomically: true, encoding: .utf8)
        try roles.map { "\"\($0)\" \"\"\n" }.joined().write(toFile: self.dir + "/users.txt", atomically: true, encoding: .utf8)
        var launcher: [String] = []
        if getuid() == 0 {
            for path in [self.dir, self.dir + "/pgbouncer.ini", self.dir + "/users.txt"] { chown(path, 10001, 10001) }
            launcher = ["setpriv", "--reuid=10001", "--regid=10001", "--clear-groups"]
        }
        self.process = try ChildProcess(launcher + ["/usr/sbin/pgbouncer", self.dir + "/pgbouncer.ini"], outputPath: self.dir + "/pgbouncer.log")
        let deadline = ContinuousClock.now + .seconds(10)
        while !self.log.contains("process up") {
            if let code = self.process.poll() { throw Subprocess.Failed(description: "pgbouncer exited with \(code): \(self.log)") }
            guard ContinuousClock.now < deadline else { throw Subprocess.Failed(description: "pgbouncer did not start: \(self.log)") }
            usleep(50_000)
        }
    }

    var log: String { (try? String(contentsOfFile: self.dir + "/pgbouncer.log", encoding: .utf8)) ?? "" }

    deinit {
        kill(self.process.pid, SIGTERM)
        try? FileManager.default.removeItem(atPath: self.dir)
    }
}
