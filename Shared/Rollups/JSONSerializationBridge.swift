import Foundation

/// Reads a flat JSON object of integers (`{"rate_limit":3}`) as stored in jsonb columns.
enum JSONSerializationBridge {
    static func object(_ json: String) throws -> [String: Int64]? {
        guard let o = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any] else { return nil }
        return o.compactMapValues { ($0 as? NSNumber)?.int64Value }
    }
}
