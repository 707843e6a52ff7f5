import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// One HTTP/1.1 POST to an address `EgressPolicy` checked, with the URL's host as the Host header and the TLS
/// server name (certificates verified against the system's roots, plus `extraCA` when set). Redirects are not
/// followed (a 3xx is an answer like any other), the whole exchange has a deadline, and at most `maxResponseBytes`
/// of the answer are kept.
public struct WebhookClient: Sendable {
    public struct Response: Sendable, Equatable {
        public var status: Int
        public var retryAfter: String?
        public var body: [UInt8]

        /// The status and its standard reason phrase ("503 Service Unavailable").
        public var statusLine: String {
            let phrase = HTTPResponseStatus(statusCode: self.status).reasonPhrase
            return phrase.isEmpty ? "\(self.status)" : "\(self.status) \(phrase)"
        }
    }

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    let tls: NIOSSLContext
    public var timeout: Duration
    public var maxResponseBytes: Int

    /// `extraCA`: a PEM file of additional trusted roots (a private CA, a test receiver's).
    public init(extraCA: String? = nil, timeout: Duration = .seconds(10), maxResponseBytes: Int = 64 * 1024) throws {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = .tlsv12
        if let extraCA {
            configuration.trustRoots = .default
            configuration.additionalTrustRoots = [.file(extraCA)]
        }
        self.tls = try NIOSSLContext(configuration: configuration)
        self.timeout = timeout
        self.maxResponseBytes = maxResponseBytes
    }

    /// Posts to the first of `addresses` that accepts a connection (a name may resolve to IPv6 and IPv4).
    public func post(_ target: EgressPolicy.Target, addresses: [SocketAddress], headers extra: [(String, String)], body: [UInt8]) async throws -> Response {
        var lastError: any Error = Failure(description: "no address")
        for address in addresses {
            do {
                return try await self.post(target, address: address, headers: extra, body: body)
            } catch let error as Unconnected {
                lastError = error.failure
            }
        }
        throw lastError
    }

    struct Unconnected: Error { var failure: Failure }

    /// A failure after connecting, said without the error's internals: a TLS error names itself (the receiver's
    /// certificate is the tenant's to fix), anything else is the connection failing before an answer.
    static func failure(_ error: any Error) -> Failure {
        if error is NIOSSLError || error is BoringSSLError {
            return Failure(description: "TLS handshake failed: \(error)")
        }
        return Failure(description: "the connection closed before a complete answer")
    }

    func post(_ target: EgressPolicy.Target, address: SocketAddress, headers extra: [(String, String)], body: [UInt8]) async throws -> Response {
        let group = MultiThreadedEventLoopGroup.singleton
        let eventLoop = group.next()
        let promise = eventLoop.makePromise(of: Response.self)
        let collector = ResponseCollector(promise: promise, limit: self.maxResponseBytes)
        let tls = self.tls
        let serverName = target.host.contains(":") || target.host.allSatisfy({ $0.isNumber || $0 == "." }) ? nil : target.host
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(.seconds(5))
            .channelInitializer { channel in
                do {
                    if target.tls {
                        try channel.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: tls, serverHostname: serverName))
                    }
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(collector)
                    return channel.eventLoop.makeSucceededVoidFuture()
                } catch {
                    return channel.eventLoop.makeFailedFuture(error)
                }
            }
        let nanoseconds = self.timeout.components.seconds * 1_000_000_000 + self.timeout.components.attoseconds / 1_000_000_000
        let deadline = eventLoop.scheduleTask(in: .nanoseconds(nanoseconds)) { promise.fail(Failure(description: "no answer within \(self.timeout)")) }
        defer { deadline.cancel() }
        let channel: any Channel
        do {
            channel = try await bootstrap.connect(to: address).get()
        } catch {
            promise.fail(error)
            // One sentence whatever went wrong: the log must not tell a refused port from a silent one (a channel URL
            // would scan a network), nor show the error's source paths.
            throw Unconnected(failure: Failure(description: "cannot connect to \(target.host):\(target.port) (refused, unreachable or no answer)"))
        }
        var head = HTTPRequestHead(version: .http1_1, method: .POST, uri: target.path)
        let defaultPort = target.tls ? 443 : 80
        head.headers.add(name: "Host", value: target.port == defaultPort ? target.host : "\(target.host):\(target.port)")
        head.headers.add(name: "Content-Type", value: "application/json")
        head.headers.add(name: "Content-Length", value: String(body.count))
        head.headers.add(name: "User-Agent", value: "Tokenwatch-Webhooks/1")
        head.headers.add(name: "Connection", value: "close")
        for (name, value) in extra { head.headers.add(name: name, value: value) }
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        channel.write(HTTPClientRequestPart.body(.byteBuffer(ByteBuffer(bytes: body))), promise: nil)
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        do {
            let response = try await promise.futureResult.get()
            channel.close(promise: nil)
            return response
        } catch {
            channel.close(promise: nil)
            throw error as? Failure ?? Self.failure(error)
        }
    }
}

/// Collects one response (head and a bounded body) and completes the promise once.
final class ResponseCollector: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPClientResponsePart
    let promise: EventLoopPromise<WebhookClient.Response>
    let limit: Int
    var head: HTTPResponseHead?
    var body: [UInt8] = []

    init(promise: EventLoopPromise<WebhookClient.Response>, limit: Int) {
        self.promise = promise
        self.limit = limit
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
        case .body(var buffer):
            let take = min(buffer.readableBytes, self.limit - self.body.count)
            if take > 0, let bytes = buffer.readBytes(length: take) { self.body += bytes }
        case .end:
            if let head = self.head {
                self.promise.succeed(WebhookClient.Response(status: Int(head.status.code), retryAfter: head.headers.first(name: "Retry-After"), body: self.body))
            }
            context.close(promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.promise.fail(error)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.promise.fail(WebhookClient.Failure(description: "the connection closed before a complete answer"))
    }
}
