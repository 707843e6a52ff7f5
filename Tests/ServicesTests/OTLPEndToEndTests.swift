import Events
import Foundation
import Testing
import TestSupport

/// What `deploy/otel/llm_client.py live` reports: the calls it made and the spans the SDK recorded.
struct OTLPClientRun: Decodable {
    struct Call: Decodable {
        let model: String
        let input: Int64?
        let output: Int64?
        let status: Int?
    }

    struct Span: Decodable {
        let start_unix_nano: UInt64
        let end_unix_nano: UInt64
        let llm: Bool
    }

    let calls: [Call]
    let spans: [Span]
}

@Suite("OTLP end to end", .serialized, .timeLimit(.minutes(4)))
struct OTLPEndToEndTests {
    @Test("an openai app instrumented by OpenTelemetry exports to the gateway; the calls show up in the rollups once, even when every export is sent twice")
    func liveExport() async throws {
        let python = try TestEnvironment.require("TW_TEST_OTEL_PYTHON")
        let run = TestEnvironment.unique("otlp")
        let token = "otlp-e2e-admin-token-012345"
        let env = try TestEnvironment.pipelineEnvironment(run: run, topics: ["raw", "events", "dlq", "rollups"], extra: ["TW_ADMIN_TOKEN": token])
        let processes = try ["gateway", "ingestor", "aggregator"].map { try ServiceProcess($0, environment: env) }
        for process in processes { try await process.waitUntilReady() }
        let http = HTTPClient(port: processes[0].port)
        let tenant = "\(run)-t"
        let created = try await http.call("POST", "/v1/admin/tenants", token: token, body: #"{"tenant_id":"\#(tenant)"}"#)
        let key = try #require(created.json["api_key"] as? String)

        // Two applications as users run them: OpenLLMetry exporting protobuf, the OpenTelemetry instrumentation
        // exporting JSON; every export is sent twice, as an exporter retry would.
        let script = Subprocess.projectRoot + "/deploy/otel/llm_client.py"
        var runs: [OTLPClientRun] = []
        for (protocolName, instrumentation) in [("protobuf", "openllmetry"), ("json", "otel")] {
            let out = NSTemporaryDirectory() + "tw-otlp-\(run)-\(protocolName).json"
            defer { try? FileManager.default.removeItem(atPath: out) }
            let result = try Subprocess.output([python, script, "live", "--endpoint", "http://127.0.0.1:\(processes[0].port)", "--key", key,
                                                "--protocol", protocolName, "--instrumentation", instrumentation, "--export-twice", "--run", "\(run)-\(protocolName)", "--out", out])
            try #require(result.status == 0, "\(result.output)")
            runs.append(try JSONDecoder().decode(OTLPClientRun.self, from: Data(contentsOf: URL(fileURLWithPath: out))))
        }

        // The ground truth per model, from what the stub answered and the spans the SDK timed.
        struct Truth { var requests: Int64 = 0, errors: Int64 = 0, input: Int64 = 0, output: Int64 = 0, latencies: [Double] = [] }
        var truth: [String: Truth] = [:]
        for r in runs {
            let llmSpans = r.spans.filter(\.llm)
            try #require(llmSpans.count == r.calls.count)
            for (call, span) in zip(r.calls, llmSpans) {
                truth[call.model, default: Truth()].requests += 1
                if call.status != nil { truth[call.model]!.errors += 1 }
                truth[call.model]!.input += call.input ?? 0
                truth[call.model]!.output += call.output ?? 0
                truth[call.model]!.latencies.append(Double(span.end_unix_nano - span.start_unix_nano) / 1e6)
            }
        }
        let totalRequests = truth.values.reduce(0) { $0 + $1.requests }

        let from = EventTimestamp(microsecondsSinceEpoch: EventTimestamp.now().microsecondsSinceEpoch - 3_600_000_000).rfc3339
        let path = "/v1/breakdown?by=model&order=requests&limit=100&from=\(from)"
        try await eventually(.seconds(60), "all \(totalRequests) calls in the rollups") {
            let reply = try await http.call("GET", path, token: key)
            return ((reply.json["totals"] as? [String: Any])?["requests"] as? Int).map(Int64.init) ?? 0 >= totalRequests
        }
        let reply = try await http.call("GET", path, token: key)
        let totals = try #require(reply.json["totals"] as? [String: Any])
        #expect((totals["requests"] as? Int).map(Int64.init) == totalRequests, "retried exports counted once")
        let items = try #require(reply.json["items"] as? [[String: Any]])
        #expect(Set(items.compactMap { $0["model"] as? String }) == Set(truth.keys))
        for item in items {
            let model = try #require(item["model"] as? String)
            let expected = try #require(truth[model])
            let values = try #require(item["values"] as? [String: Any])
            #expect(item["provider"] as? String == "openai")
            #expect((values["requests"] as? Int).map(Int64.init) == expected.requests, "\(model)")
            #expect((values["errors"] as? Int).map(Int64.init) == expected.errors, "\(model)")
            #expect((values["input_tokens"] as? Int).map(Int64.init) == expected.input, "\(model)")
            #expect((values["output_tokens"] as? Int).map(Int64.init) == expected.output, "\(model)")
            // Latency from span start and end: every percentile within the calls' range (1% sketch error).
            let latency = try #require(values["latency_ms"] as? [String: Any])
            for p in ["p50", "p99"] {
                let value = try #require((latency[p] as? NSNumber)?.doubleValue, "\(model) \(p)")
                #expect(value >= expected.latencies.min()! * 0.99 && value <= expected.latencies.max()! * 1.01, "\(model) \(p) = \(value), spans \(expected.latencies)")
            }
        }
        for process in processes { #expect(try process.stop() == 0) }
    }
}
