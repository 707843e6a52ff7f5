import Foundation
import TestSupport
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
#if canImport(Glibc)
import Glibc
#endif

/// One answer from a service over a real socket.
struct HTTPReply: Sendable {
    var status: Int
    var headers: [String: String]
    var body: String

    var json: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(self.body.utf8))) as? [String: Any] ?? [:] }
    /// The problem type's last segment.
    var type: String? { (self.json["type"] as? String)?.split(separator: "/").last.map(String.init) }
    func header(_ name: String) -> String? { self.headers.first { $0.key.lowercased() == name.lowercased() }?.value }
}

/// A plain HTTP client for tests against running services (URLSession, no shared cookies or caches).
struct HTTPClient: Sendable {
    let port: Int
    static let session: URLSession = {
        let configuration = URLSessionConfiguration.ephemeral
        configuration.httpMaximumConnectionsPerHost = 16
        return URLSession(configuration: configuration)
    }()

    func call(_ method: String, _ path: String, token: String? = nil, body: Data? = nil, contentType: String? = "application/json", headers: [String: String] = [:]) async throws -> HTTPReply {
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(self.port)\(path)")!)
        request.httpMethod = method
        request.httpBody = body
        request.timeoutInterval = 30
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        if let contentType, body != nil { request.setValue(contentType, forHTTPHeaderField: "Content-Type") }
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        let (data, response) = try await Self.session.data(for: request)
        let http = response as! HTTPURLResponse
        var fields: [String: String] = [:]
        for (name, value) in http.allHeaderFields { fields["\(name)"] = "\(value)" }
        return HTTPReply(status: http.statusCode, headers: fields, body: String(decoding: data, as: UTF8.self))
    }

    func call(_ method: String, _ path: String, token: String? = nil, body: String, contentType: String? = "application/json", headers: [String: String] = [:]) async throws -> HTTPReply {
        try await self.call(method, path, token: token, body: Data(body.utf8), contentType: contentType, headers: headers)
    }
}

/// A gateway process on the test stack (topics of the run's own, an admin token) and a tenant made through its admin
/// API: the process, a client for it, and the tenant's id.
func gatewayWithTenant(run: String, adminToken: String, topics: [String] = ["raw", "anomalies"]) async throws -> (ServiceProcess, HTTPClient, String) {
    let env = try TestEnvironment.pipelineEnvironment(run: run, topics: topics, extra: ["TW_ADMIN_TOKEN": adminToken])
    let gateway = try ServiceProcess("gateway", environment: env)
    try await gateway.waitUntilReady()
    let http = HTTPClient(port: gateway.port)
    let tenant = "\(run)-t"
    let created = try await http.call("POST", "/v1/admin/tenants", token: adminToken, body: "{\"tenant_id\":\"\(tenant)\"}")
    guard created.status == 201 else { throw Subprocess.Failed(description: "creating tenant \(tenant): \(created.status) \(created.body)") }
    return (gateway, http, tenant)
}

/// A raw TCP connection, for what an HTTP library will not send (trickled headers).
final class RawConnection: @unchecked Sendable {
    // @unchecked: used by one test task at a time.
    let fd: Int32

    init(port: Int) throws {
        self.fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = UInt16(port).bigEndian
        let ok = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(self.fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 } }
        guard ok else { throw Subprocess.Failed(description: "connect failed") }
    }

    private var closed = false

    deinit { if !self.closed { Glibc.close(self.fd) } }

    /// Closes the socket now (as a client that goes away does).
    func shutdown() {
        guard !self.closed else { return }
        self.closed = true
        Glibc.close(self.fd)
    }

    /// Reads (off the cooperative pool) until the text received so far contains `marker` or `timeout` passes; the
    /// text received.
    func read(until marker: String, timeout: Duration) async -> String {
        let fd = self.fd
        return await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                var tv = timeval(tv_sec: 0, tv_usec: 200_000)
                setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
                let deadline = ContinuousClock.now + timeout
                var received: [UInt8] = []
                var buffer = [UInt8](repeating: 0, count: 4096)
                while ContinuousClock.now < deadline {
                    let n = recv(fd, &buffer, buffer.count, 0)
                    if n > 0 { received += buffer[0..<n] }
                    if n == 0 { break }
                    if String(decoding: received, as: UTF8.self).contains(marker) { break }
                }
                continuation.resume(returning: String(decoding: received, as: UTF8.self))
            }
        }
    }

    @discardableResult
    func send(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        return bytes.withUnsafeBytes { Glibc.send(self.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } == bytes.count
    }

    /// Blocks (off the cooperative pool) until the peer closes the connection; true when it did within `timeout`.
    func waitForClose(timeout: Duration) async -> Bool {
        let fd = self.fd
        return await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                var tv = timeval(tv_sec: Int(timeout.components.seconds), tv_usec: 0)
                setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
                var buffer = [UInt8](repeating: 0, count: 4096)
                while true {
                    let n = recv(fd, &buffer, buffer.count, 0)
                    if n == 0 { continuation.resume(returning: true); return }
                    if n < 0 { continuation.resume(returning: errno == ECONNRESET); return }
                }
            }
        }
    }
}
