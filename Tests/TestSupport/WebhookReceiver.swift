import Foundation

/// A webhook receiver (Tests/Notify/webhook_receiver.py) that checks signatures on its own and logs deliveries.
public final class WebhookReceiver: Sendable {
    public let process: ChildProcess
    public let log: String
    public let port: Int

    public init(secret: String, extra: [String] = []) async throws {
        let dir = NSTemporaryDirectory() + TestEnvironment.unique("hook")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        self.log = dir + "/log.jsonl"
        FileManager.default.createFile(atPath: self.log, contents: nil)
        self.process = try ChildProcess(["python3", Subprocess.projectRoot + "/Tests/Notify/webhook_receiver.py", dir + "/port", self.log, secret] + extra, outputPath: dir + "/out")
        let portFile = dir + "/port"
        try await eventually(.seconds(10), "the receiver listens") { FileManager.default.fileExists(atPath: portFile) }
        self.port = Int(try String(contentsOfFile: portFile, encoding: .utf8))!
    }

    /// The deliveries logged so far: n, id, timestamp, valid (signature), status, host, path, body.
    public var deliveries: [[String: Any]] {
        ((try? String(contentsOfFile: self.log, encoding: .utf8)) ?? "").split(separator: "\n").compactMap {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any]
        }
    }
}

