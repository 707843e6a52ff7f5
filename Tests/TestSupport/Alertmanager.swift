import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A Prometheus Alertmanager (Debian's `prometheus-alertmanager`, installed by `deploy/stack.sh install`) of the
/// test's own on loopback: no cluster, one receiver that sends nowhere, its data in a temporary directory.
public final class Alertmanager: Sendable {
    public let process: ChildProcess
    public let port: Int
    public let directory: String

    public init() async throws {
        let binary = ["/usr/bin/prometheus-alertmanager", "/usr/bin/alertmanager"].first { FileManager.default.isExecutableFile(atPath: $0) }
        guard let binary else { throw Subprocess.Failed(description: "prometheus-alertmanager is not installed; run: deploy/stack.sh install") }
        self.directory = NSTemporaryDirectory() + TestEnvironment.unique("alertmanager")
        try FileManager.default.createDirectory(atPath: self.directory, withIntermediateDirectories: true)
        let config = """
            route:
              receiver: nowhere
              group_wait: 1s
            receivers:
              - name: nowhere
            """
        try config.write(toFile: self.directory + "/alertmanager.yml", atomically: true, encoding: .utf8)
        self.port = try ServiceProcess.freePort()
        self.process = try ChildProcess([binary, "--config.file=\(self.directory)/alertmanager.yml", "--storage.path=\(self.directory)/data",
                                         "--web.listen-address=127.0.0.1:\(self.port)", "--cluster.listen-address="],
                                        outputPath: self.directory + "/alertmanager.log")
        let port = self.port
        let process = self.process
        let log = self.directory + "/alertmanager.log"
        try await eventually(.seconds(30), "Alertmanager ready") {
            if let code = process.poll() { throw Subprocess.Failed(description: "alertmanager exited \(code): \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")") }
            return await Self.get(port: port, "/-/ready")?.status == 200
        }
    }

    /// The alerts Alertmanager holds as active (resolved ones are not listed), each as its JSON object.
    public func alerts() async -> [[String: Any]]? {
        guard let (status, body) = await Self.get(port: self.port, "/api/v2/alerts"), status == 200 else { return nil }
        return (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [[String: Any]]
    }

    static func get(port: Int, _ path: String) async -> (status: Int, body: String)? {
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)\(path)")!)
        request.timeoutInterval = 5
        guard let (data, response) = try? await URLSession.shared.data(for: request), let http = response as? HTTPURLResponse else { return nil }
        return (http.statusCode, String(decoding: data, as: UTF8.self))
    }

    public func stop() {
        _ = self.process.stop()
        try? FileManager.default.removeItem(atPath: self.directory)
    }
}
