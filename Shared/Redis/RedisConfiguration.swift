/// Where and how to reach Redis.
public struct RedisConfiguration: Sendable {
    public var host: String = "127.0.0.1"
    public var port: Int = 6379
    public var password: String?
    public var username: String?
    public var database: Int = 0
    /// Connect timeout. Default: 2 s.
    public var connectTimeout: Duration = .seconds(2)
    /// Per-command read/write timeout; a command that exceeds it fails and its connection is dropped. Default: 2 s.
    public var commandTimeout: Duration = .seconds(2)
    /// Pool size. Default: 8.
    public var maxConnections: Int = 8
    /// How long a caller waits for a free connection. Default: 5 s.
    public var leaseTimeout: Duration = .seconds(5)
    /// TLS, set by a `rediss://` URL. Default: nil (plain TCP).
    public var tls: RedisTLSConfiguration?

    public init() {}

    /// Parses `redis://[[user]:password@]host[:port][/db]`; `rediss://` is the same over TLS (see `tls`).
    public init(url: String) throws(RedisError) {
        self.init()
        var rest: Substring
        if url.hasPrefix("redis://") {
            rest = Substring(url.dropFirst("redis://".count))
        } else if url.hasPrefix("rediss://") {
            rest = Substring(url.dropFirst("rediss://".count))
            self.tls = RedisTLSConfiguration()
        } else {
            throw RedisError(.configuration, "URL must start with redis:// or rediss://")
        }
        if let at = rest.lastIndex(of: "@") {
            let credentials = rest[..<at]
            rest = rest[rest.index(after: at)...]
            if let colon = credentials.firstIndex(of: ":") {
                let user = credentials[..<colon]
                self.username = user.isEmpty ? nil : String(user)
                self.password = String(credentials[credentials.index(after: colon)...]).removingPercentEncodingIfPossible
            } else {
                self.password = String(credentials).removingPercentEncodingIfPossible
            }
        }
        if let slash = rest.firstIndex(of: "/") {
            let db = rest[rest.index(after: slash)...]
            if !db.isEmpty {
                guard let n = Int(db), n >= 0 else { throw RedisError(.configuration, "database in URL must be a number >= 0") }
                self.database = n
            }
            rest = rest[..<slash]
        }
        if let colon = rest.lastIndex(of: ":") {
            guard let port = Int(rest[rest.index(after: colon)...]), (1...65535).contains(port) else {
                throw RedisError(.configuration, "port in URL must be 1...65535")
            }
            self.port = port
            rest = rest[..<colon]
        }
        guard !rest.isEmpty else { throw RedisError(.configuration, "URL has no host") }
        self.host = String(rest)
    }
}

extension String {
    /// Percent-decodes a URL component (passwords may hold reserved characters); returns self when it is not encoded.
    var removingPercentEncodingIfPossible: String {
        guard self.contains("%") else { return self }
        var bytes: [UInt8] = []
        var it = Array(self.utf8)[...]
        while let b = it.popFirst() {
            if b == UInt8(ascii: "%"), it.count >= 2, let v = UInt8(String(decoding: it.prefix(2), as: UTF8.self), radix: 16) {
                bytes.append(v)
                it = it.dropFirst(2)
            } else {
                bytes.append(b)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
