import Codecs
import Foundation

/// Signing per the Standard Webhooks specification (https://www.standardwebhooks.com): each delivery carries
/// `webhook-id` (the same for every retry of one message, so receivers deduplicate), `webhook-timestamp` (Unix
/// seconds) and `webhook-signature`: `v1,` + base64(HMAC-SHA256(secret, "<id>.<timestamp>.<body>")). The secret is
/// `whsec_` + base64 of 32 random bytes; the key is the decoded bytes.
public enum StandardWebhooks {
    public struct InvalidSecret: Error, CustomStringConvertible {
        public var description: String { "a webhook secret is whsec_ followed by base64" }
    }

    public static func newSecret() -> String { "whsec_" + Data(Digest.randomBytes(32)).base64EncodedString() }

    static func key(_ secret: String) throws -> [UInt8] {
        guard secret.hasPrefix("whsec_"), let data = Data(base64Encoded: String(secret.dropFirst(6))), !data.isEmpty else { throw InvalidSecret() }
        return Array(data)
    }

    /// The `webhook-signature` header value.
    public static func signature(id: String, timestamp: Int64, body: [UInt8], secret: String) throws -> String {
        let signed = Array("\(id).\(timestamp).".utf8) + body
        return "v1," + Data(Digest.hmacSHA256(key: try self.key(secret), message: signed)).base64EncodedString()
    }

    /// The three headers of a delivery.
    public static func headers(id: String, timestamp: Int64, body: [UInt8], secret: String) throws -> [(String, String)] {
        [("webhook-id", id), ("webhook-timestamp", String(timestamp)), ("webhook-signature", try self.signature(id: id, timestamp: timestamp, body: body, secret: secret))]
    }

    /// Whether `header` (space-separated `v1,<sig>` entries, as during a secret rotation) holds a valid signature.
    public static func verify(id: String, timestamp: Int64, body: [UInt8], secrets: [String], header: String) -> Bool {
        let offered = header.split(separator: " ").compactMap { entry -> [UInt8]? in
            guard entry.hasPrefix("v1,"), let data = Data(base64Encoded: String(entry.dropFirst(3))) else { return nil }
            return Array(data)
        }
        for secret in secrets {
            guard let expected = try? self.signature(id: id, timestamp: timestamp, body: body, secret: secret),
                  let bytes = Data(base64Encoded: String(expected.dropFirst(3))) else { continue }
            if offered.contains(where: { Digest.constantTimeEquals($0, Array(bytes)) }) { return true }
        }
        return false
    }
}
