import Events
import Foundation
import Logging

/// swift-log handler writing one JSON object per line to stderr, for log collectors (Loki, Cloud Logging, ...).
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    private let label: String
    private static let lock = NSLock()

    public init(label: String) {
        self.label = label
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.metadata[key] }
        set { self.metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let out = self.line(event, timestamp: EventTimestamp.now())
        Self.lock.lock()
        defer { Self.lock.unlock() }
        // One write(2) per line, under a lock, so lines from concurrent tasks never interleave.
        _ = out.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
    }

    /// The JSON line for `event`.
    func line(_ event: LogEvent, timestamp: EventTimestamp) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        out.append(contentsOf: Array("{\"ts\":\"".utf8))
        out.append(contentsOf: timestamp.rfc3339.utf8)
        out.append(contentsOf: Array("\",\"level\":\"\(event.level.rawValue)\",\"logger\":".utf8))
        writeJSONString(self.label, into: &out)
        out.append(contentsOf: Array(",\"msg\":".utf8))
        writeJSONString(event.message.description, into: &out)
        var merged = self.metadata
        if let extra = event.metadata { merged.merge(extra) { _, new in new } }
        for (key, value) in merged.sorted(by: { $0.key < $1.key }) {
            out.append(UInt8(ascii: ","))
            writeJSONString(key, into: &out)
            out.append(UInt8(ascii: ":"))
            writeJSONString(value.description, into: &out)
        }
        out.append(contentsOf: Array("}\n".utf8))
        return out
    }
}
