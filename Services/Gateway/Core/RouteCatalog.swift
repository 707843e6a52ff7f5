import Foundation
import HTTPTypes

/// Which methods each path of the gateway answers, read from the OpenAPI document (plus the dashboard's pages), so
/// a request the router cannot place is answered as HTTP says: 405 with `Allow` when the path exists under other
/// methods, 404 otherwise, both as problem+json. Using the document here also keeps it honest: a route missing
/// from it would answer 404 (a test checks every route).
enum RouteCatalog {
    struct Entry {
        let segments: [Substring]
        let methods: [String]
    }

    static let entries: [Entry] = {
        var out: [Entry] = []
        if let doc = try? JSONSerialization.jsonObject(with: Data(OpenAPIDocument.json.utf8)) as? [String: Any],
            let paths = doc["paths"] as? [String: Any]
        {
            for (path, item) in paths {
                let methods = ((item as? [String: Any]) ?? [:]).keys.map { $0.uppercased() }
                    .filter { ["GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS"].contains($0) }
                out.append(Entry(segments: path.split(separator: "/"), methods: methods))
            }
        }
        for page in DashboardRoutes.paths { out.append(Entry(segments: page.split(separator: "/"), methods: ["GET", "HEAD"])) }
        return out
    }()

    /// The methods `path` answers, sorted; empty when no route has that path. `{name}` segments match any segment.
    static func allowedMethods(_ path: String) -> [String] {
        let segments = path.split(separator: "/")
        var methods: Set<String> = []
        for entry in entries where entry.segments.count == segments.count {
            let matches = zip(entry.segments, segments).allSatisfy { pattern, segment in pattern.hasPrefix("{") || pattern == segment }
            if matches { methods.formUnion(entry.methods) }
        }
        return methods.sorted()
    }
}
