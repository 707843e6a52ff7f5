import Foundation

/// Addresses of the servers `make test` starts (deploy/stack.sh writes them to the state folder's stack.env and
/// the Makefile exports them). Integration tests fail, rather than skip, when one is missing: a skipped integration
/// test would let a broken setup pass.
public enum TestEnvironment {
    public struct Missing: Error, CustomStringConvertible {
        public let key: String
        public var description: String { "\(self.key) is not set; run the tests through `make test`, which starts the local stack" }
    }

    public static func require(_ key: String) throws -> String {
        guard let value = ProcessInfo.processInfo.environment[key], !value.isEmpty else { throw Missing(key: key) }
        return value
    }

    public static func kafkaBrokers() throws -> String { try require("TW_KAFKA_BROKERS") }
    public static func postgresURL() throws -> String { try require("TW_POSTGRES_URL") }
    public static func redisURL() throws -> String { try require("TW_REDIS_URL") }

    /// A name no other test (or earlier run) uses.
    public static func unique(_ prefix: String) -> String {
        "\(prefix)-\(UUID().uuidString.prefix(8).lowercased())"
    }
}
