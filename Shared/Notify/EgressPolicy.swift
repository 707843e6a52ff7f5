import Foundation
#if canImport(Glibc)
import Glibc
#endif
import NIOCore

/// Where a tenant's webhook may point. Its URL is attacker-controlled input to a server inside the cluster, so:
/// `https` only unless the operator allows `http`; no credentials in the URL; and every address the host resolves
/// to must be public: loopback, private (RFC 1918), carrier-grade NAT, link-local (the cloud metadata address
/// 169.254.169.254 among them), unique-local, multicast and unspecified addresses are refused unless an operator
/// allowlists their network. Delivery connects to the address that was checked (no second lookup an attacker's DNS
/// could answer differently), follows no redirects, and bounds time and response size (`WebhookClient`).
public struct EgressPolicy: Sendable {
    public typealias Address = SocketAddress
    public var allowHTTP: Bool
    public var allowedNetworks: [Network]
    /// How long a lookup may take.
    public var resolveTimeout: Duration

    public init(allowHTTP: Bool = false, allowedNetworks: [Network] = [], resolveTimeout: Duration = .seconds(3)) {
        self.allowHTTP = allowHTTP
        self.allowedNetworks = allowedNetworks
        self.resolveTimeout = resolveTimeout
    }

    public struct Refused: Error, CustomStringConvertible, Equatable {
        public var reason: String
        public var description: String { self.reason }
    }

    /// A URL split into what delivery needs.
    public struct Target: Sendable, Equatable {
        public var tls: Bool
        public var host: String
        public var port: Int
        /// Path and query, at least "/".
        public var path: String

        public init(tls: Bool, host: String, port: Int, path: String) {
            self.tls = tls
            self.host = host
            self.port = port
            self.path = path
        }
    }

    /// From `TW_WEBHOOK_ALLOW_HTTP` (true/false) and `TW_WEBHOOK_ALLOWED_NETWORKS` (CIDRs, comma-separated).
    public init(environment: [String: String]) throws(Refused) {
        let allowHTTP = ["1", "true", "yes"].contains((environment["TW_WEBHOOK_ALLOW_HTTP"] ?? "").lowercased())
        var networks: [Network] = []
        for text in (environment["TW_WEBHOOK_ALLOWED_NETWORKS"] ?? "").split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !text.isEmpty {
            guard let network = Network(text) else { throw Refused(reason: "TW_WEBHOOK_ALLOWED_NETWORKS: \(text) is not a CIDR network") }
            networks.append(network)
        }
        self.init(allowHTTP: allowHTTP, allowedNetworks: networks)
    }

    /// Checks the URL's form (no lookup).
    public func parse(_ url: String) throws(Refused) -> Target {
        guard url.utf8.count <= 2048, !url.contains(where: { $0.isWhitespace || $0.asciiValue.map { $0 < 0x20 || $0 == 0x7F } ?? false }) else {
            throw Refused(reason: "must be a URL of at most 2048 characters without spaces or control characters")
        }
        let tls: Bool
        var rest: Substring
        if url.lowercased().hasPrefix("https://") {
            tls = true
            rest = url.dropFirst(8)
        } else if url.lowercased().hasPrefix("http://") {
            guard self.allowHTTP else { throw Refused(reason: "must be https (plain http is allowed only when the operator sets TW_WEBHOOK_ALLOW_HTTP)") }
            tls = false
            rest = url.dropFirst(7)
        } else {
            throw Refused(reason: "must be an https URL")
        }
        if let hash = rest.firstIndex(of: "#") { rest = rest[..<hash] }
        let slash = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) ?? rest.endIndex
        let authority = rest[..<slash]
        var path = String(rest[slash...])
        if path.isEmpty || path.hasPrefix("?") { path = "/" + path }
        guard !authority.contains("@") else { throw Refused(reason: "must not carry credentials (user@host)") }
        var host = Substring(authority)
        var port = tls ? 443 : 80
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { throw Refused(reason: "has an unterminated IPv6 address") }
            let after = host[host.index(after: close)...]
            host = host[host.index(after: host.startIndex)..<close]
            if !after.isEmpty {
                guard after.hasPrefix(":"), let p = Int(after.dropFirst()), (1...65535).contains(p) else { throw Refused(reason: "has an invalid port") }
                port = p
            }
        } else if let colon = host.lastIndex(of: ":") {
            guard let p = Int(host[host.index(after: colon)...]), (1...65535).contains(p) else { throw Refused(reason: "has an invalid port") }
            port = p
            host = host[..<colon]
        }
        guard !host.isEmpty, host.utf8.count <= 253,
              host.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" || $0 == ":" }), host.allSatisfy(\.isASCII)
        else { throw Refused(reason: "has an invalid host") }
        return Target(tls: tls, host: host.lowercased(), port: port, path: path)
    }

    /// Resolves the target's host and checks every address; returns them, to connect to in order.
    public func resolve(_ target: Target) async throws(Refused) -> [SocketAddress] {
        let addresses: [SocketAddress]
        do {
            addresses = try await Self.lookup(target.host, port: target.port, timeout: self.resolveTimeout)
        } catch {
            throw Refused(reason: "host \(target.host) does not resolve (\(error))")
        }
        guard !addresses.isEmpty else { throw Refused(reason: "host \(target.host) does not resolve") }
        // Every address, not just the first: a name answering with a public and a private address is refused.
        for address in addresses {
            if let why = Self.forbidden(address), !self.allowedNetworks.contains(where: { $0.contains(address) }) {
                throw Refused(reason: "host \(target.host) resolves to \(address.ipAddress ?? "?"), \(why); refused (an operator can allow a network with TW_WEBHOOK_ALLOWED_NETWORKS)")
            }
        }
        return addresses
    }

    /// Why an address may not be reached from inside the cluster, or nil when it is public.
    static func forbidden(_ address: SocketAddress) -> String? {
        switch address {
        case .v4(let a):
            let ip = UInt32(bigEndian: a.address.sin_addr.s_addr)
            return Self.forbiddenV4(ip)
        case .v6(let a):
            let bytes = withUnsafeBytes(of: a.address.sin6_addr) { Array($0) }
            // The IPv4 address carried in the last four bytes (IPv4-mapped and NAT64 forms).
            let embedded = bytes[12...].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
            if bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xFF && bytes[11] == 0xFF {
                return Self.forbiddenV4(embedded).map { "an IPv4-mapped " + $0 }
            }
            if bytes.allSatisfy({ $0 == 0 }) { return "the unspecified address" }
            if bytes[0..<15].allSatisfy({ $0 == 0 }) && bytes[15] == 1 { return "loopback" }
            if bytes[0] & 0xFE == 0xFC { return "a unique-local address" }
            if bytes[0] == 0xFE && bytes[1] & 0xC0 == 0x80 { return "link-local" }
            if bytes[0] == 0xFF { return "multicast" }
            if bytes[0..<12] == [0x00, 0x64, 0xFF, 0x9B, 0, 0, 0, 0, 0, 0, 0, 0] {
                return Self.forbiddenV4(embedded).map { "a NAT64 " + $0 }
            }
            // Beyond those, only global unicast (2000::/3) is public: this refuses every other form that reaches IPv4
            // or local space (IPv4-compatible ::a.b.c.d, IPv4-translated ::ffff:0:a.b.c.d, local-use NAT64
            // 64:ff9b:1::/48, site-local fec0::/10, discard-only 100::/64) without listing each.
            guard bytes[0] & 0xE0 == 0x20 else { return "not a global unicast address" }
            if bytes[0] == 0x20 && bytes[1] == 0x02 {
                // 6to4: the IPv4 address in bytes 2-5.
                let v4 = bytes[2..<6].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
                return Self.forbiddenV4(v4).map { "a 6to4 " + $0 }
            }
            if bytes[0..<4] == [0x20, 0x01, 0x00, 0x00] { return "a Teredo address" }
            if bytes[0..<4] == [0x20, 0x01, 0x0D, 0xB8] { return "a documentation address" }
            return nil
        case .unixDomainSocket:
            return "a local socket"
        }
    }

    static func forbiddenV4(_ ip: UInt32) -> String? {
        func within(_ base: UInt32, _ bits: UInt32) -> Bool { ip >> (32 - bits) == base >> (32 - bits) }
        if within(0x7F00_0000, 8) { return "loopback" }
        if within(0x0A00_0000, 8) || within(0xAC10_0000, 12) || within(0xC0A8_0000, 16) { return "a private address" }
        if within(0xA9FE_0000, 16) { return "link-local (cloud metadata lives there)" }
        if within(0x6440_0000, 10) { return "carrier-grade NAT" }
        if within(0x0000_0000, 8) { return "the unspecified network" }
        if within(0xE000_0000, 4) || within(0xF000_0000, 4) { return "multicast or reserved" }
        if within(0xC000_0000, 24) || within(0xC612_0000, 15) { return "a special-purpose address" }
        return nil
    }

    /// getaddrinfo on a thread of its own (it blocks), bounded by `timeout`.
    static func lookup(_ host: String, port: Int, timeout: Duration) async throws -> [SocketAddress] {
        try await withThrowingTaskGroup(of: [SocketAddress]?.self) { group in
            group.addTask {
                try await withCheckedThrowingContinuation { continuation in
                    Thread.detachNewThread {
                        continuation.resume(with: Result { try Self.getaddrinfo(host, port: port) })
                    }
                }
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let addresses = first else { throw Refused(reason: "lookup timed out") }
            return addresses
        }
    }

    static func getaddrinfo(_ host: String, port: Int) throws -> [SocketAddress] {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        let status = Glibc.getaddrinfo(host, String(port), &hints, &result)
        guard status == 0, let list = result else { throw Refused(reason: String(cString: gai_strerror(status))) }
        defer { freeaddrinfo(list) }
        var out: [SocketAddress] = []
        var node: UnsafeMutablePointer<addrinfo>? = list
        while let n = node {
            if let sa = n.pointee.ai_addr {
                switch Int32(sa.pointee.sa_family) {
                case AF_INET: out.append(sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { SocketAddress($0.pointee, host: host) })
                case AF_INET6: out.append(sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { SocketAddress($0.pointee, host: host) })
                default: break
                }
            }
            node = n.pointee.ai_next
        }
        return out
    }
}

/// A CIDR network, for the operator's allowlist (`TW_WEBHOOK_ALLOWED_NETWORKS=127.0.0.1/32,10.0.0.0/8`).
public struct Network: Sendable, Equatable {
    let bytes: [UInt8]
    let bits: Int

    public init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1)
        guard let address = try? SocketAddress(ipAddress: String(parts[0]), port: 0) else { return nil }
        self.bytes = Network.bytes(address)
        let bits = parts.count == 2 ? Int(parts[1]) : self.bytes.count * 8
        guard let bits, (0...(self.bytes.count * 8)).contains(bits) else { return nil }
        self.bits = bits
    }

    static func bytes(_ address: SocketAddress) -> [UInt8] {
        switch address {
        case .v4(let a): return withUnsafeBytes(of: a.address.sin_addr) { Array($0) }
        case .v6(let a): return withUnsafeBytes(of: a.address.sin6_addr) { Array($0) }
        case .unixDomainSocket: return []
        }
    }

    public func contains(_ address: SocketAddress) -> Bool {
        let other = Network.bytes(address)
        guard other.count == self.bytes.count else { return false }
        var remaining = self.bits
        for (a, b) in zip(self.bytes, other) where remaining > 0 {
            let take = min(8, remaining)
            let mask: UInt8 = take == 8 ? 0xFF : ~(0xFF >> UInt8(take))
            if a & mask != b & mask { return false }
            remaining -= take
        }
        return true
    }
}
