import Foundation
import Testing
import TestSupport

/// HTTPS to the gateway with curl (the test's HTTP client cannot be given a private CA on Linux).
struct HTTPSClient {
    let port: Int
    let caFile: String

    /// Status and body; status 0 when no TLS connection could be made.
    func call(_ method: String, _ path: String, token: String? = nil, body: String? = nil) throws -> (status: Int, body: String) {
        var arguments = ["curl", "-sS", "--max-time", "10", "--cacert", self.caFile, "-X", method, "-w", "\n%{http_code}"]
        if let token { arguments += ["-H", "Authorization: Bearer \(token)"] }
        if let body { arguments += ["-H", "Content-Type: application/json", "--data-binary", body] }
        arguments.append("https://localhost:\(self.port)\(path)")
        let (_, output) = try Subprocess.output(arguments)
        let status = Int(output.split(separator: "\n").last ?? "") ?? 0
        return (status, String(output.split(separator: "\n", omittingEmptySubsequences: false).dropLast().joined(separator: "\n")))
    }
}

@Suite("TLS everywhere and secrets kept out of logs", .serialized, .timeLimit(.minutes(3)))
struct TLSAndSecretsTests {
    @Test("the gateway serves HTTPS and reaches Redis and Postgres over verified TLS; no secret appears in logs, metrics or answers")
    func tlsAndSecrets() async throws {
        let run = TestEnvironment.unique("tls")
        let ca = try TestEnvironment.require("TW_TEST_TLS_CA_FILE")
        let adminToken = "admin-SECRET-\(UUID().uuidString)"
        let pgPassword = "pg-SECRET-\(UUID().uuidString)"
        let kafkaPassword = "kafka-SECRET-\(UUID().uuidString)"
        let pgPort = try TestEnvironment.postgresURL().split(separator: ":").last!.split(separator: "/").first!
        let env = [
            "TW_TOPIC_RAW": "\(run)-raw", "TW_TOPIC_EVENTS": "\(run)-events", "TW_TOPIC_DLQ": "\(run)-dlq", "TW_GROUP_PREFIX": run,
            "TW_ADMIN_TOKEN": adminToken, "TW_LOG_LEVEL": "trace",
            "TW_TLS_CERT_FILE": try TestEnvironment.require("TW_TEST_TLS_CERT_FILE"), "TW_TLS_KEY_FILE": try TestEnvironment.require("TW_TEST_TLS_KEY_FILE"),
            "TW_REDIS_URL": try TestEnvironment.require("TW_TEST_REDIS_TLS_URL"), "TW_REDIS_TLS_CA_FILE": ca,
            // The local Postgres trusts loopback, so the password is sent but not needed: it must still never show.
            "TW_POSTGRES_URL": "postgresql://tokenwatch:\(pgPassword)@localhost:\(pgPort)/tokenwatch?sslmode=verify-full&sslrootcert=\(ca)",
            "TW_KAFKA_PROPERTIES": "sasl.username=tokenwatch,sasl.password=\(kafkaPassword)",
        ]
        for topic in ["raw", "events", "dlq"] { try MockBrokerControl.createTopic("\(run)-\(topic)", partitions: 2) }
        let gateway = try ServiceProcess("gateway", environment: env)
        let ingestor = try ServiceProcess("ingestor", environment: env)
        try await ingestor.waitUntilReady()
        let https = HTTPSClient(port: gateway.port, caFile: ca)
        try await eventually(.seconds(60), "gateway ready over HTTPS") { try https.call("GET", "/readyz").status == 200 }

        // Plain HTTP on the HTTPS port gets no answer; HTTPS with the wrong CA is refused by the client.
        #expect(await gateway.get("/healthz") == nil)
        #expect(try HTTPSClient(port: gateway.port, caFile: "/etc/ssl/certs/ca-certificates.crt").call("GET", "/healthz").status == 0)

        var answers: [String] = []
        let created = try https.call("POST", "/v1/admin/tenants", token: adminToken, body: #"{"tenant_id":"\#(run)-t"}"#)
        #expect(created.status == 201)
        let key = try #require(((try? JSONSerialization.jsonObject(with: Data(created.body.utf8))) as? [String: Any])?["api_key"] as? String)
        let forged = "tw_" + String(key.dropFirst(3).prefix(16)) + "_" + String(repeating: "0", count: 64)
        for (token, path) in [(adminToken + "x", "/v1/admin/tenants"), (key, "/v1/tenant"), (forged, "/v1/tenant"), (key + "0", "/v1/tenant")] {
            answers.append(try https.call("GET", path, token: token).body)
        }
        let ingest = try https.call("POST", "/v1/events", token: key, body: "[\(validEvent("\(run)-1")),{\"event_id\":\"\(key)\"}]")
        #expect(ingest.status == 202)
        answers.append(ingest.body)
        answers.append(try https.call("GET", "/metrics").body)
        answers.append(await ingestor.get("/metrics")?.body ?? "")

        #expect(try gateway.stop() == 0)
        #expect(try ingestor.stop() == 0)
        let logs = gateway.log + ingestor.log
        #expect(logs.contains("http.tls=true"), "the gateway logged that it serves TLS")
        for (name, secret) in [("admin token", adminToken), ("Postgres password", pgPassword), ("Kafka password", kafkaPassword),
                               ("API key secret", String(key.suffix(64))), ("forged key", String(forged.suffix(64)))] {
            #expect(!logs.contains(secret), "\(name) in the logs")
            for answer in answers { #expect(!answer.contains(secret) || (name == "API key secret" && answer == ingest.body), "\(name) in an answer") }
        }
    }

    @Test("the private-ca component's settings, files mounted as the Secret would be, let a service run as the image's user verify Postgres and Redis; another CA is refused")
    func privateCAComponent() async throws {
        // The component's ConfigMap literals (KEY=/etc/tokenwatch/ca/FILE) with the mount point moved to a folder
        // holding the stack's private CA under each file name, readable as the Secret volume makes them (0444).
        let component = try String(contentsOfFile: Subprocess.projectRoot + "/k8s/components/private-ca/kustomization.yaml", encoding: .utf8)
        let literals = component.split(separator: "\n").compactMap { line -> (String, String)? in
            let text = line.trimmingCharacters(in: .whitespaces)
            guard text.hasPrefix("- "), let eq = text.firstIndex(of: "="), text.contains("/etc/tokenwatch/ca/") || text.contains("PGSSLMODE") else { return nil }
            return (String(text[text.index(text.startIndex, offsetBy: 2)..<eq]), String(text[text.index(after: eq)...]))
        }
        #expect(Set(literals.map(\.0)) == ["PGSSLMODE", "PGSSLROOTCERT", "TW_KAFKA_SSL_CA_FILE", "TW_REDIS_TLS_CA_FILE"], "\(literals)")
        let ca = try TestEnvironment.require("TW_TEST_TLS_CA_FILE")
        let pgPort = try TestEnvironment.postgresURL().split(separator: ":").last!.split(separator: "/").first!
        func start(trusting caFile: String) throws -> (ServiceProcess, String) {
            let mount = NSTemporaryDirectory() + "tw-ca-" + UUID().uuidString.prefix(8)
            try FileManager.default.createDirectory(atPath: mount, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
            var env = ["TW_REDIS_URL": try TestEnvironment.require("TW_TEST_REDIS_TLS_URL"),
                       // No sslrootcert in the URL: libpq takes PGSSLMODE and PGSSLROOTCERT from the environment, as in the pods.
                       "TW_POSTGRES_URL": "postgresql://tokenwatch@localhost:\(pgPort)/tokenwatch",
                       "HOME": "/nonexistent"]  // the image user's home (Dockerfile); libpq looks for client certificates there
            for (key, value) in literals {
                guard value.hasPrefix("/etc/tokenwatch/ca/") else { env[key] = value; continue }
                let path = mount + "/" + value.dropFirst("/etc/tokenwatch/ca/".count)
                if !FileManager.default.fileExists(atPath: path) { try FileManager.default.copyItem(atPath: caFile, toPath: path) }
                try FileManager.default.setAttributes([.posixPermissions: 0o444], ofItemAtPath: path)
                env[key] = path
            }
            // The image's user (Dockerfile: 10001), not root: the files must be readable to it as mounted.
            return (try ServiceProcess("query", environment: env, launcher: ["setpriv", "--reuid=10001", "--regid=10001", "--clear-groups"]), mount)
        }
        let (trusted, mount) = try start(trusting: ca)
        defer { try? FileManager.default.removeItem(atPath: mount) }
        try await trusted.waitUntilReady(timeout: .seconds(60))
        let status = try String(contentsOfFile: "/proc/\(trusted.pid)/status", encoding: .utf8)
        #expect(status.split(separator: "\n").contains { $0.hasPrefix("Uid:") && $0.split(separator: "\t").dropFirst().allSatisfy { $0 == "10001" } }, "runs as uid 10001")
        #expect(try trusted.stop() == 0)

        let (untrusted, otherMount) = try start(trusting: "/etc/ssl/certs/ca-certificates.crt")
        defer { try? FileManager.default.removeItem(atPath: otherMount) }
        try await eventually(.seconds(60), "the untrusted certificate refused") { untrusted.log.contains("certificate verify failed") }
        #expect(await untrusted.get("/readyz")?.status != 200)
        _ = try? untrusted.stop(signal: SIGKILL)
    }
}
