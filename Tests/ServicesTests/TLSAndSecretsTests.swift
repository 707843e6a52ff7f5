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
}
