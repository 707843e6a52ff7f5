import Foundation
import Testing
import TestSupport

/// Issue 18: the OpenAPI document is held to what the running gateway does by schemathesis (every standard check,
/// with the exclusions listed and explained in deploy/contract/run.sh), so the contract cannot drift again.
@Suite("API contract (schemathesis)", .serialized, .timeLimit(.minutes(10)))
struct ContractTests {
    @Test("schemathesis finds no failure against a running gateway: operator API, tenant API, ingest and OTLP exports")
    func schemathesis() async throws {
        guard let python = ProcessInfo.processInfo.environment["TW_TEST_CONTRACT_PYTHON"] else {
            Issue.record("TW_TEST_CONTRACT_PYTHON is not set; `make test` sets it (deploy/contract/requirements.txt)")
            return
        }
        let run = TestEnvironment.unique("contract")
        let token = "contract-run-admin-token"
        // A stack of its own: the operator run creates, renames and disables tenants it finds, which must not be
        // the tenants of suites running beside it.
        let stack = try PrivateStack.start(run)
        defer { stack.stop() }
        let gateway = try ServiceProcess("gateway", environment: stack.env.merging(["TW_ADMIN_TOKEN": token, "TW_GROUP_PREFIX": run]) { _, new in new })
        try await gateway.waitUntilReady()
        let http = HTTPClient(port: gateway.port)
        let tenant = "\(run)-t"
        #expect(try await http.call("POST", "/v1/admin/tenants", token: token, body: "{\"tenant_id\":\"\(tenant)\"}").status == 201)
        let key = try await http.call("POST", "/v1/admin/tenants/\(tenant)/keys", token: token, body: #"{"name":"contract","scopes":["ingest","query","admin"]}"#)
        let apiKey = try #require(key.json["api_key"] as? String)

        let output = NSTemporaryDirectory() + "tw-\(run)-schemathesis.log"
        defer { try? FileManager.default.removeItem(atPath: output) }
        let child = try ChildProcess(["bash", Subprocess.projectRoot + "/deploy/contract/run.sh", python, "http://127.0.0.1:\(gateway.port)", token, apiKey, "25"],
                                     outputPath: output)
        try await eventually(.seconds(540), "schemathesis to finish", interval: .milliseconds(500)) { child.poll() != nil }
        let log = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
        let summary = log.split(separator: "\n").filter { $0.hasPrefix("== ") || $0.contains(" generated, ") }
        print("schemathesis:\n" + summary.joined(separator: "\n"))
        // Each failure's block (from its "____ METHOD /path ____" header to the summary), not the log's tail.
        var failures: [Substring] = []
        var inFailure = false
        for line in log.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("___") { inFailure = true }
            if line.contains("SUMMARY") { inFailure = false }
            if inFailure { failures.append(line) }
        }
        #expect(child.exitCode == 0, "schemathesis found failures:\n\(failures.joined(separator: "\n").prefix(8000))\n\(log.suffix(2000))")
        #expect(summary.filter { $0.contains(" generated, ") }.count >= 5, "every run reported")
        #expect(!log.contains("Authentication failed"), "the tenant runs authenticated")
        #expect(try gateway.stop() == 0)
    }
}
