import HTTPTypes
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import NIOCore
import NIOHTTPTypes
import NIOSSL

/// How a service's HTTP listener treats untrusted clients: TLS, header bounds and deadlines.
public struct HTTPServerOptions: Sendable {
    /// PEM certificate chain and private key; both set serves HTTPS only.
    public var tlsCertificateFile: String?
    public var tlsKeyFile: String?
    /// Time a client has to send a request's head (request line and headers), from connecting or from the end of
    /// the previous response: a client that trickles headers (slowloris) is disconnected.
    public var headerTimeout: Duration = .seconds(10)
    /// Time a client has to send a request's body once its head arrived.
    public var bodyTimeout: Duration = .seconds(60)
    /// Idle keep-alive connections are closed after this.
    public var idleTimeout: Duration = .seconds(75)
    /// Hard bounds in the HTTP parser: a request beyond them is refused before any handler runs. (The gateway's
    /// `RequestLimitsMiddleware` answers smaller excesses with a problem+json naming the limit.)
    public var maxHeaderListBytes = 64 * 1024
    public var maxHeaderFields = 200

    public init() {}

    public var tlsEnabled: Bool { self.tlsCertificateFile != nil }

    /// The Hummingbird server for these options.
    func serverBuilder() throws -> HTTPServerBuilder {
        let header = TimeAmount(self.headerTimeout), body = TimeAmount(self.bodyTimeout)
        let http1 = HTTPServerBuilder.http1(configuration: .init(
            additionalChannelHandlers: [RequestDeadlineHandler(headerTimeout: header, bodyTimeout: body, keepAliveTimeout: TimeAmount(self.idleTimeout))],
            idleTimeout: TimeAmount(self.idleTimeout),
            httpDecoderConfiguration: .init(maxHeaderFieldSize: self.maxHeaderListBytes, maxHeaderListSize: self.maxHeaderListBytes, maxHeaderFieldCount: self.maxHeaderFields)))
        guard let certificateFile = self.tlsCertificateFile, let keyFile = self.tlsKeyFile else { return http1 }
        let chain: [NIOSSLCertificateSource]
        let key: NIOSSLPrivateKey
        do {
            chain = try NIOSSLCertificate.fromPEMFile(certificateFile).map { NIOSSLCertificateSource.certificate($0) }
        } catch {
            throw ConfigurationError(key: "TW_TLS_CERT_FILE", reason: "cannot load a PEM certificate chain from \(certificateFile): \(error)")
        }
        do {
            key = try NIOSSLPrivateKey(file: keyFile, format: .pem)
        } catch {
            throw ConfigurationError(key: "TW_TLS_KEY_FILE", reason: "cannot load a PEM private key from \(keyFile): \(error)")
        }
        var tls = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key))
        tls.minimumTLSVersion = .tlsv12
        return try .tls(http1, tlsConfiguration: tls)
    }
}

extension TimeAmount {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}

/// Closes a connection whose client is too slow to send a request head or body. Sits after HTTP decoding, so a
/// head counts as arrived only once it is complete.
final class RequestDeadlineHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    let headerTimeout: TimeAmount
    let bodyTimeout: TimeAmount
    /// Between requests on a kept-alive connection the next head may take longer (clients pool connections and
    /// reuse them later); a new connection must send its first head within `headerTimeout`.
    let keepAliveTimeout: TimeAmount
    private var deadline: Scheduled<Void>?

    init(headerTimeout: TimeAmount, bodyTimeout: TimeAmount, keepAliveTimeout: TimeAmount) {
        self.headerTimeout = headerTimeout
        self.bodyTimeout = bodyTimeout
        self.keepAliveTimeout = max(keepAliveTimeout, headerTimeout)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { self.arm(context, self.headerTimeout) }
    }

    func channelActive(context: ChannelHandlerContext) {
        self.arm(context, self.headerTimeout)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head: self.arm(context, self.bodyTimeout)
        case .body: break
        case .end: self.disarm()
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = self.unwrapOutboundIn(data) { self.arm(context, self.keepAliveTimeout) }
        context.write(data, promise: promise)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.disarm()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) { self.disarm() }

    private func arm(_ context: ChannelHandlerContext, _ timeout: TimeAmount) {
        self.disarm()
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        self.deadline = context.eventLoop.scheduleTask(in: timeout) { loopBound.value.close(promise: nil) }
    }

    private func disarm() {
        self.deadline?.cancel()
        self.deadline = nil
    }
}
