import Foundation

/// A bad configuration value, named by its environment key.
public struct ConfigurationError: Error, CustomStringConvertible, Sendable {
    public let key: String
    public let reason: String

    public init(key: String, reason: String) {
        self.key = key
        self.reason = reason
    }

    public var description: String { "\(self.key): \(self.reason)" }
}

/// Typed, validated reads of environment variables.
///
/// swift-configuration's default-taking readers fall back to the default when a value is malformed; a service that
/// silently ignores `TW_HTTP_PORT=80a` is worse than one that refuses to start, so every read here either returns
/// a valid value or throws an error naming the key and the rule.
public struct Environment: Sendable {
    public let values: [String: String]

    public init(_ values: [String: String] = ProcessInfo.processInfo.environment) {
        self.values = values
    }

    /// The trimmed value, or nil when unset or blank.
    public func raw(_ key: String) -> String? {
        guard let value = self.values[key]?.trimmingCharacters(in: .whitespaces), !value.isEmpty else { return nil }
        return value
    }

    public func string(_ key: String, default value: String) -> String {
        self.raw(key) ?? value
    }

    public func requiredString(_ key: String) throws(ConfigurationError) -> String {
        guard let value = self.raw(key) else { throw ConfigurationError(key: key, reason: "is required") }
        return value
    }

    public func int(_ key: String, default value: Int, in range: ClosedRange<Int>) throws(ConfigurationError) -> Int {
        guard let text = self.raw(key) else { return value }
        guard let parsed = Int(text), range.contains(parsed) else {
            throw ConfigurationError(key: key, reason: "expected an integer in \(range.lowerBound)...\(range.upperBound), got '\(text)'")
        }
        return parsed
    }

    public func bool(_ key: String, default value: Bool) throws(ConfigurationError) -> Bool {
        guard let text = self.raw(key) else { return value }
        switch text.lowercased() {
        case "1", "true", "yes", "on": return true
        case "0", "false", "no", "off": return false
        default: throw ConfigurationError(key: key, reason: "expected true or false, got '\(text)'")
        }
    }

    /// One of `allowed` (case-insensitive); returned lowercased.
    public func choice(_ key: String, default value: String, allowed: [String]) throws(ConfigurationError) -> String {
        guard let text = self.raw(key)?.lowercased() else { return value }
        guard allowed.contains(text) else {
            throw ConfigurationError(key: key, reason: "expected one of \(allowed.joined(separator: ", ")), got '\(text)'")
        }
        return text
    }

    /// A duration written as `250ms`, `30s`, `5m` or `24h`; a bare number means seconds.
    public func duration(_ key: String, default value: Duration, in range: ClosedRange<Duration>) throws(ConfigurationError) -> Duration {
        guard let text = self.raw(key) else { return value }
        let parsed: Duration?
        if text.hasSuffix("ms"), let n = Int64(text.dropLast(2)) { parsed = .milliseconds(n) }
        else if text.hasSuffix("s"), let n = Int64(text.dropLast()) { parsed = .seconds(n) }
        else if text.hasSuffix("m"), let n = Int64(text.dropLast()) { parsed = .seconds(n * 60) }
        else if text.hasSuffix("h"), let n = Int64(text.dropLast()) { parsed = .seconds(n * 3600) }
        else if let n = Int64(text) { parsed = .seconds(n) }
        else { parsed = nil }
        guard let parsed, range.contains(parsed) else {
            throw ConfigurationError(key: key, reason: "expected a duration such as 500ms, 30s or 5m within \(range.lowerBound)...\(range.upperBound), got '\(text)'")
        }
        return parsed
    }

    /// A path to a file this process can read, or nil when the key is unset.
    public func readableFile(_ key: String) throws(ConfigurationError) -> String? {
        guard let path = self.raw(key) else { return nil }
        guard FileManager.default.isReadableFile(atPath: path) else { throw ConfigurationError(key: key, reason: "cannot read \(path)") }
        return path
    }

    /// `key=value` pairs separated by commas (extra librdkafka properties).
    public func properties(_ key: String) throws(ConfigurationError) -> [String: String] {
        guard let text = self.raw(key) else { return [:] }
        var out: [String: String] = [:]
        for pair in text.split(separator: ",") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            guard parts.count == 2, !parts[0].trimmingCharacters(in: .whitespaces).isEmpty else {
                throw ConfigurationError(key: key, reason: "expected key=value pairs separated by commas")
            }
            out[parts[0].trimmingCharacters(in: .whitespaces)] = parts[1].trimmingCharacters(in: .whitespaces)
        }
        return out
    }
}
